//! The catalog and customers.

use serde_json::json;

use super::*;

pub(super) fn plugin_and_journey_versions_count_up(store: &dyn Catalog) {
    let first = store.put_plugin("ack", "aa", b"one", 1).expect("push");
    let same = store.put_plugin("ack", "aa", b"one", 2).expect("push");
    let second = store.put_plugin("ack", "bb", b"two", 3).expect("push");
    assert_eq!((first.version, same.version, second.version), (1, 1, 2));
    assert_eq!(
        store.plugin_bytes("bb").expect("read").as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(store.plugins().expect("list").len(), 2);
    let v1 = store.put_journey("enquiry", "a", 1).expect("deploy");
    let v2 = store.put_journey("enquiry", "b", 2).expect("deploy");
    assert_eq!((v1.version, v2.version), (1, 2));
}

pub(super) fn tags_keep_their_changes_and_run_counts_are_saved(store: &dyn Catalog) {
    let stable = TagRecord {
        plugin: "classify".into(),
        tag: "stable".into(),
        version: 1,
        canary: None,
        changed_at_ms: 1,
        reason: "first".into(),
    };
    let rollout = TagRecord {
        version: 1,
        canary: Some(Canary {
            version: 2,
            percent: 10,
            rollback: Some(RollbackRule {
                max_error_rate: 0.2,
                min_runs: 20,
            }),
        }),
        changed_at_ms: 2,
        reason: "rollout".into(),
        ..stable.clone()
    };
    store.put_tag(&stable).expect("tag");
    store.put_tag(&rollout).expect("tag");
    assert_eq!(store.tags().expect("tags"), std::slice::from_ref(&rollout));
    assert_eq!(
        store.tag_changes("classify").expect("changes"),
        [stable, rollout],
        "oldest first"
    );
    assert!(store.tag_changes("class").expect("changes").is_empty());

    let mut counts = VersionStats {
        plugin: "classify".into(),
        version: 2,
        ..VersionStats::default()
    };
    counts.record(false, 40);
    store.add_version_stats(&[counts.clone()]).expect("save");
    // Another runtime's counts add to these.
    let mut more = VersionStats {
        plugin: "classify".into(),
        version: 2,
        ..VersionStats::default()
    };
    more.record(true, 900);
    store.add_version_stats(&[more.clone()]).expect("save");
    counts.add(&more);
    assert_eq!(counts.runs, 2);
    assert_eq!(store.version_stats().expect("read"), [counts]);
}

pub(super) fn a_migration_replaces_the_one_from_the_same_version(store: &dyn Catalog) {
    let first = MigrationRecord {
        journey: "enquiry".into(),
        from_version: 1,
        to_version: 2,
        steps: [("classify".to_owned(), "classify".to_owned())].into(),
        created_at_ms: 1,
    };
    let again = MigrationRecord {
        to_version: 3,
        created_at_ms: 2,
        ..first.clone()
    };
    store.put_migration(&first).expect("store");
    store.put_migration(&again).expect("store");
    assert_eq!(store.migrations().expect("read"), [again]);
}

pub(super) fn customer_views_follow_writes(store: &dyn Store) {
    store
        .put_customer("c-2", &json!({"name": "Ada"}))
        .expect("put");
    // Read once so a caching backend holds the view, then write more.
    let first = store.customer_view("c-2", 10, &[]).expect("view");
    assert!(first.interactions.is_empty());
    store.commit(&[ingest(2, "c-2")]).expect("commit");
    store
        .commit(&[step(
            2,
            "c-2",
            1,
            true,
            vec![interaction("enquiry.resolved", "fixed")],
        )])
        .expect("commit");
    store
        .put_customer("c-2", &json!({"name": "Ada L."}))
        .expect("put");
    let view = store.customer_view("c-2", 10, &[]).expect("view");
    assert_eq!(view.profile.get(), r#"{"name":"Ada L."}"#);
    let kinds: Vec<&str> = view.interactions.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["enquiry.received", "enquiry.resolved"],
        "oldest first"
    );
    let last = store.customer_view("c-2", 1, &[]).expect("view");
    assert_eq!(last.interactions.len(), 1);
    assert_eq!(
        last.interactions[0].kind, "enquiry.resolved",
        "the most recent"
    );
    let resolved = store
        .customer_view("c-2", 10, &["enquiry.resolved".to_owned()])
        .expect("view");
    assert_eq!(resolved.interactions.len(), 1, "only the kinds asked for");
    assert_eq!(resolved.interactions[0].text, "fixed");
    let none = store.customer_view("c-2", 0, &[]).expect("view");
    assert!(none.interactions.is_empty());
    let unknown = store.customer_view("nobody", 10, &[]).expect("view");
    assert_eq!(unknown.profile.get(), "{}");
}

pub(super) fn channels_engagement_and_counted_sends_are_kept(store: &dyn Store) {
    let customer = "c-engaged";
    // Read once so a cached view exists and must be refreshed.
    assert!(
        store
            .customer_view(customer, 0, &[])
            .expect("view")
            .channels
            .is_empty()
    );
    let mut opt_in = ingest_commit(60, customer);
    let preference = ChannelPreference {
        channel: "sms".into(),
        opted_in: true,
        changed_at_ms: 7,
    };
    opt_in.preference = Some(preference.clone());
    let engagement = Engagement {
        at_ms: 8,
        action: "opened".into(),
        channel: "email".into(),
        event_kind: "email.opened".into(),
        details: raw(r#"{"webinar_id":"w-1"}"#),
    };
    opt_in.engagement = Some(engagement);
    store.commit(&[opt_in.into()]).expect("commit");
    let view = store.customer_view(customer, 0, &[]).expect("view");
    assert_eq!(view.channels, vec![preference]);
    assert_eq!(view.engagement.len(), 1);
    assert_eq!(view.engagement[0].action, "opened");
    assert_eq!(view.engagement[0].details.get(), r#"{"webinar_id":"w-1"}"#);

    let mut next = instance(60, customer);
    next.history_len = 2;
    next.current_step = Some("classify".into());
    let entry = acknowledged(
        "i-60/1".into(),
        StateChanges::default(),
        StepOutcome::Goto {
            transition: "sent".into(),
            target: "classify".into(),
        },
        vec![],
    );
    let mut step = InstanceCommit::new(next, entry.clone());
    step.counted = [1_000, 2_000]
        .map(|at_ms| CountedSend {
            channel: "sms".into(),
            at_ms,
        })
        .to_vec();
    store.commit(&[step.into()]).expect("commit");
    assert_eq!(
        store.sent_since(customer, "sms", 0).expect("sent"),
        vec![1_000, 2_000]
    );
    assert_eq!(
        store.sent_since(customer, "sms", 1_001).expect("sent"),
        vec![2_000]
    );
    assert!(
        store
            .sent_since(customer, "email", 0)
            .expect("sent")
            .is_empty()
    );
}

pub(super) fn every_catalog_change_moves_the_catalog_version(store: &dyn Catalog) {
    let mut seen = store.catalog_version().expect("version");
    let mut moved = |what: &str| {
        let now = store.catalog_version().expect("version");
        assert!(
            now > seen,
            "{what} moves the catalog version ({seen} -> {now})"
        );
        seen = now;
    };
    store.put_plugin("versioned", "v-1", b"x", 1).expect("push");
    moved("a push");
    store
        .put_tag(&TagRecord {
            plugin: "versioned".into(),
            tag: "stable".into(),
            version: 1,
            canary: None,
            changed_at_ms: 1,
            reason: "first".into(),
        })
        .expect("tag");
    moved("a tag");
    store
        .put_journey("versioned", "name = \"versioned\"", 1)
        .expect("deploy");
    moved("a deploy");
    store
        .put_migration(&MigrationRecord {
            journey: "versioned".into(),
            from_version: 1,
            to_version: 2,
            steps: Default::default(),
            created_at_ms: 1,
        })
        .expect("migration");
    moved("a migration");
    store.put_meta("setting", &json!(1)).expect("meta");
    moved("a setting");
    assert_eq!(
        store.catalog_version().expect("version"),
        seen,
        "reading does not move it"
    );
}

pub(super) fn canary_runs_add_up_per_rollout(store: &dyn Catalog) {
    let rollout = TagRecord {
        plugin: "classify".into(),
        tag: "stable".into(),
        version: 1,
        canary: Some(Canary {
            version: 2,
            percent: 10,
            rollback: None,
        }),
        changed_at_ms: 50,
        reason: "rollout".into(),
    };
    let count = |rollout: &TagRecord, runs, failures| {
        store
            .count_canary_runs(rollout, runs, failures)
            .expect("count")
    };
    assert_eq!(
        count(&rollout, 1, 0),
        CanaryCounts {
            runs: 1,
            failures: 0
        }
    );
    // Another runtime's runs of the same rollout add up.
    assert_eq!(
        count(&rollout, 3, 2),
        CanaryCounts {
            runs: 4,
            failures: 2
        }
    );
    // A new rollout of the same tag starts from nothing.
    let next = TagRecord {
        changed_at_ms: 60,
        ..rollout.clone()
    };
    assert_eq!(
        count(&next, 1, 1),
        CanaryCounts {
            runs: 1,
            failures: 1
        }
    );
    assert_eq!(
        count(&rollout, 0, 0),
        CanaryCounts {
            runs: 4,
            failures: 2
        }
    );
}
