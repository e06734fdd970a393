//! Retention: finished instances go with everything kept for them, and
//! leave their funnel counts behind.

use std::time::Duration;

use super::*;

/// Finish instance `id` (two steps, each queueing a message) and return it.
fn finished(store: &dyn Store, id: u64, customer: &str) -> Instance {
    store
        .commit(&[
            ingest(id, customer),
            step(id, customer, 1, false, vec![]),
            step(id, customer, 2, true, vec![]),
        ])
        .expect("commit");
    store
        .instance(InstanceId(id))
        .expect("read")
        .expect("exists")
}

fn purge_of(instance: &Instance) -> Purge {
    Purge {
        instance: instance.id,
        finished_at_ms: instance.updated_at_ms,
    }
}

/// What `instance` adds to its journey's funnel.
fn tally_of(store: &dyn Store, instance: &Instance) -> FunnelTally {
    FunnelTally::of_instance(instance, &store.history(instance.id).expect("history"))
}

pub(super) fn finished_instances_are_purged_with_everything_kept_for_them(store: &dyn Store) {
    let done = finished(store, 900, "c-900");
    assert_eq!(done.status, InstanceStatus::Completed);
    // One of its messages was delivered (with a provider id), one waits.
    // (The claim takes every due message of the suite, with a lease that
    // ends at once: this check runs last.)
    let claimed = store
        .claim_outbox(10, usize::MAX, Duration::ZERO)
        .expect("claim");
    let first = claimed
        .iter()
        .find(|claimed| claimed.message.id == "i-900/1/m0")
        .expect("the message of step 1 is due");
    let accepted = DeliveryAttempt {
        at_ms: 3,
        integration: "mail".into(),
        outcome: AttemptOutcome::Accepted {
            provider_id: Some("p-900".into()),
        },
    };
    store
        .mark_outbox("i-900/1/m0", first.claim, &accepted)
        .expect("mark");
    store
        .commit(&[ingest(901, "c-901"), step(901, "c-901", 1, false, vec![])])
        .expect("commit");

    // Other checks finished instances of this journey too.
    let due = store.finished_before("enquiry", 2, 100).expect("finished");
    assert!(
        due.contains(&(InstanceId(900), 1)) && !due.iter().any(|(id, _)| id.0 == 901),
        "the finished instance is due, the running one is not: {due:?}"
    );
    assert!(
        store
            .finished_before("enquiry", 1, 100)
            .expect("finished")
            .is_empty(),
        "`before` is exclusive"
    );

    let running = store
        .instance(InstanceId(901))
        .expect("read")
        .expect("exists");
    let mut changed = purge_of(&done);
    changed.finished_at_ms += 1;
    assert_eq!(
        store.purge(&[purge_of(&running), changed]).expect("purge"),
        0,
        "an unfinished instance, or one changed since it was read, stays"
    );
    assert!(store.instance(InstanceId(900)).expect("read").is_some());

    let tally = tally_of(store, &done);
    assert_eq!(store.purge(&[purge_of(&done)]).expect("purge"), 1);
    assert!(store.instance(InstanceId(900)).expect("read").is_none());
    assert!(store.history(InstanceId(900)).expect("history").is_empty());
    assert!(
        store
            .outbox(Some(InstanceId(900)), 10)
            .expect("outbox")
            .is_empty()
    );
    assert!(store.delivery("i-900/1/m0").expect("delivery").is_none());
    assert!(
        store.event("evt-900").expect("event").is_none(),
        "its trigger event went with it"
    );
    assert!(
        store
            .correlated("enquiry", "q-900")
            .expect("index")
            .is_empty()
    );
    assert!(
        !store
            .finished_before("enquiry", u64::MAX, 100)
            .expect("finished")
            .iter()
            .any(|(id, _)| id.0 == 900)
    );
    let due: Vec<String> = store
        .claim_outbox(10, usize::MAX, Duration::ZERO)
        .expect("claim")
        .into_iter()
        .map(|claimed| claimed.message.id)
        .collect();
    assert!(
        !due.iter().any(|id| id.starts_with("i-900/")),
        "its waiting message left the delivery queue: {due:?}"
    );
    let report = StatusReport {
        at_ms: 4,
        status: DeliveryStatus::Delivered,
        note: String::new(),
    };
    let by_provider = MessageRef::Provider {
        integration: "mail",
        provider_id: "p-900",
    };
    assert!(
        store
            .report_delivery(by_provider, &report)
            .expect("report")
            .is_none(),
        "a late status report for a purged message finds nothing"
    );
    assert_eq!(
        store.purged_tallies("enquiry").expect("tallies"),
        [DayTally {
            version: 1,
            day_ms: 0,
            tally,
        }],
        "its funnel counts stay"
    );
    assert_eq!(
        store.purge(&[purge_of_gone(900)]).expect("purge"),
        0,
        "purging twice removes nothing more"
    );
    assert!(store.instance(InstanceId(901)).expect("read").is_some());
    assert!(store.event("evt-901").expect("event").is_some());
}

fn purge_of_gone(id: u64) -> Purge {
    Purge {
        instance: InstanceId(id),
        finished_at_ms: 1,
    }
}

pub(super) fn old_events_interactions_and_engagement_are_swept(store: &dyn Store) {
    let mut ignored = ingest_commit(902, "c-902");
    ignored.started.clear();
    ignored.event.started.clear();
    ignored.event.id = "evt-ignored".into();
    ignored.engagement = Some(Engagement {
        at_ms: 1,
        action: "opened".into(),
        channel: "email".into(),
        event_kind: "email.opened".into(),
        details: raw("{}"),
    });
    store.commit(&[ignored.into()]).expect("commit");
    let mut recent = ingest_commit(903, "c-902");
    recent.started.clear();
    recent.event.started.clear();
    recent.event.id = "evt-recent".into();
    recent.event.received_at_ms = 5;
    recent.interaction.at_ms = 5;
    store.commit(&[recent.into()]).expect("commit");
    assert_eq!(
        store
            .customer_view("c-902", 10, &[])
            .expect("view")
            .interactions
            .len(),
        2
    );
    // Small steps, round the whole store more than once.
    let mut removed = 0;
    for _ in 0..200 {
        removed += store.purge_old_records(2, 7).expect("sweep");
    }
    assert!(
        removed >= 3,
        "the old event, interaction and engagement: {removed}"
    );
    assert!(store.event("evt-ignored").expect("event").is_none());
    assert!(
        store.event("evt-recent").expect("event").is_some(),
        "a recent event stays"
    );
    assert!(
        store.event("evt-901").expect("event").is_some(),
        "an event whose instance remains stays"
    );
    let view = store.customer_view("c-902", 10, &[]).expect("view");
    assert_eq!(
        view.interactions.len(),
        1,
        "only the recent interaction is left"
    );
    assert_eq!(view.interactions[0].at_ms, 5);
    assert!(view.engagement.is_empty(), "{:?}", view.engagement);
}
