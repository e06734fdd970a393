//! Commits: once, atomically, with the indexes their facts imply.

use serde_json::json;

use super::*;

pub(super) fn an_event_is_accepted_once(store: &dyn Store) {
    let applied = store
        .commit(&[ingest(1, "c-1"), ingest(1, "c-1")])
        .expect("commit");
    assert_eq!(
        applied,
        [
            Applied::Done,
            Applied::DuplicateEvent {
                started: vec![InstanceId(1)]
            }
        ],
        "a duplicate in the same batch is skipped"
    );
    let again = store.commit(&[ingest(1, "c-1")]).expect("commit");
    assert_eq!(
        again,
        [Applied::DuplicateEvent {
            started: vec![InstanceId(1)]
        }]
    );
    assert_eq!(store.history(InstanceId(1)).expect("history").len(), 1);
    let running: Vec<InstanceId> = store
        .running_instances()
        .expect("running")
        .iter()
        .map(|instance| instance.id)
        .collect();
    assert_eq!(running, [InstanceId(1)]);
    assert_eq!(
        store.correlated("enquiry", "q-1").expect("index"),
        [InstanceId(1)]
    );
}

pub(super) fn a_step_commits_once_with_its_effects(store: &dyn Store) {
    let applied = store
        .commit(&[step(1, "c-1", 1, false, vec![])])
        .expect("commit");
    assert_eq!(applied, [Applied::Done]);
    let stale = store
        .commit(&[step(1, "c-1", 1, false, vec![])])
        .expect("commit");
    assert_eq!(stale, [Applied::StaleStep], "the history slot is taken");
    let running = store
        .instance(InstanceId(1))
        .expect("read")
        .expect("exists");
    assert_eq!(
        (running.status, running.current_step.as_deref()),
        (InstanceStatus::Running, Some("classify")),
        "a running instance reads as of its last step"
    );
    assert_eq!(
        (running.history_len, running.state.get()),
        (2, r#"{"seq":1}"#)
    );
    assert_eq!(
        store.running_instances().expect("running")[0]
            .current_step
            .as_deref(),
        Some("classify"),
        "a resumed instance continues where it was"
    );

    store
        .commit(&[step(1, "c-1", 2, true, vec![])])
        .expect("commit");
    let instance = store
        .instance(InstanceId(1))
        .expect("read")
        .expect("exists");
    assert_eq!(instance.status, InstanceStatus::Completed);
    assert_eq!(instance.state.get(), r#"{"seq":2}"#);
    let history = store.history(InstanceId(1)).expect("history");
    assert_eq!(history.len(), 3);
    assert!(
        matches!(&history[0], HistoryEntry::EventReceived { event_id, kind, .. }
            if event_id == "evt-1" && kind == "enquiry.received"),
        "history starts with the event: {history:?}"
    );
    assert_eq!(
        store.outbox(Some(InstanceId(1)), 10).expect("outbox").len(),
        2
    );
    assert!(
        store.running_instances().expect("running").is_empty(),
        "a finished instance is no longer running"
    );
}

pub(super) fn a_finished_instance_keeps_its_history_and_its_slots(store: &dyn Store) {
    let id = InstanceId(41);
    store.commit(&[ingest(41, "c-41")]).expect("commit");
    store
        .commit(&[step(41, "c-41", 1, false, vec![])])
        .expect("commit");
    store
        .commit(&[step(41, "c-41", 2, true, vec![])])
        .expect("commit");
    for (seq, last) in [(1, false), (2, true)] {
        assert_eq!(
            store
                .commit(&[step(41, "c-41", seq, last, vec![])])
                .expect("commit"),
            [Applied::StaleStep],
            "slot {seq} of a finished instance stays taken"
        );
    }
    let finished = store.history(id).expect("history");
    assert_eq!(finished.len(), 3, "{finished:?}");

    // An operator brings it back (slot 3), and it finishes again (slot 4).
    let mut back = store.instance(id).expect("read").expect("exists");
    back.status = InstanceStatus::Running;
    back.current_step = Some("classify".into());
    back.history_len = 4;
    let retried = HistoryEntry::Retried {
        at_ms: 3,
        step: "classify".into(),
        plugin: None,
        reason: "try again".into(),
    };
    let applied = store
        .commit(&[InstanceCommit::new(back.clone(), retried.clone()).into()])
        .expect("commit");
    assert_eq!(applied, [Applied::Done], "slot 3 follows the finished ones");
    let mut done = back.clone();
    done.status = InstanceStatus::Completed;
    done.current_step = None;
    done.history_len = 5;
    let last = acknowledged(
        "i-41/4".into(),
        StateChanges::default(),
        StepOutcome::Complete,
        vec![],
    );
    store
        .commit(&[InstanceCommit::new(done.clone(), last.clone()).into()])
        .expect("commit");
    assert_eq!(
        store
            .commit(&[InstanceCommit::new(back, retried.clone()).into()])
            .expect("commit"),
        [Applied::StaleStep],
        "slot 3 stays taken once it finished again"
    );
    let history = store.history(id).expect("history");
    assert_eq!(history.len(), 5, "{history:?}");
    let json = |entries: &[HistoryEntry]| serde_json::to_value(entries).expect("JSON");
    assert_eq!(
        json(&history[..3]),
        json(&finished),
        "the first run's entries stay first"
    );
    assert_eq!(json(&history[3..]), json(&[retried, last]));
    let instance = store.instance(id).expect("read").expect("exists");
    assert_eq!(
        (instance.status, instance.history_len),
        (InstanceStatus::Completed, 5)
    );
}

pub(super) fn a_sleeping_instance_has_a_timer_until_it_wakes(store: &dyn Store) {
    store.commit(&[ingest(30, "c-3")]).expect("commit");
    let mut asleep = instance(30, "c-3");
    asleep.history_len = 2;
    asleep.status = InstanceStatus::Waiting;
    asleep.current_step = Some("classify".into());
    asleep.wake_at_ms = Some(5_000);
    let sleep = StepOutcome::Sleep {
        until_ms: 5_000,
        transition: "later".into(),
        target: "classify".into(),
        requested_ms: None,
        window: None,
    };
    let entry = acknowledged("i-30/1".into(), StateChanges::default(), sleep, vec![]);
    let sleep = InstanceCommit::new(asleep.clone(), entry.clone());
    store.commit(&[sleep.into()]).expect("commit");
    assert!(store.due_timers(4_999, 10).expect("timers").is_empty());
    assert_eq!(
        store.due_timers(5_000, 10).expect("timers"),
        [(5_000, InstanceId(30))]
    );
    assert_eq!(store.next_timer().expect("timers"), Some(5_000));
    assert!(
        store
            .running_instances()
            .expect("running")
            .iter()
            .all(|running| running.id != InstanceId(30)),
        "a waiting instance is not resumed as running"
    );
    let read = store
        .instance(InstanceId(30))
        .expect("read")
        .expect("exists");
    assert_eq!(
        (read.status, read.wake_at_ms),
        (InstanceStatus::Waiting, Some(5_000))
    );

    let mut awake = asleep;
    awake.status = InstanceStatus::Running;
    awake.wake_at_ms = None;
    awake.history_len = 3;
    let woke = HistoryEntry::Woke {
        at_ms: 5_001,
        due_ms: 5_000,
    };
    // A due timer is claimed by one claimant at a time.
    let lease = std::time::Duration::from_secs(60);
    let claim = |lease| store.claim_due_timers(5_000, 10, lease).expect("claim");
    assert_eq!(claim(lease), [(5_000, InstanceId(30))]);
    assert!(claim(lease).is_empty(), "claimed: nobody else gets it");
    store.release_timer(5_000, InstanceId(30)).expect("release");
    assert_eq!(claim(std::time::Duration::ZERO), [(5_000, InstanceId(30))]);
    assert_eq!(
        claim(lease),
        [(5_000, InstanceId(30))],
        "a lease that ended frees the timer"
    );
    let wake = InstanceCommit::leaving(awake, woke.clone(), &read);
    store.commit(&[wake.into()]).expect("commit");
    assert_eq!(store.next_timer().expect("timers"), None);
    assert!(claim(lease).is_empty(), "the wake-up cleared it");
    assert!(
        store
            .running_instances()
            .expect("running")
            .iter()
            .any(|running| running.id == InstanceId(30)),
        "a woken instance is running again"
    );
    store.put_meta("clock", &json!(5_001)).expect("meta");
    assert_eq!(store.meta("clock").expect("meta"), Some(json!(5_001)));
    assert_eq!(store.meta("other").expect("meta"), None);
}

pub(super) fn an_exit_ends_an_instance_indexed_by_customer(store: &dyn Store) {
    let customer = "c-leaving";
    let mut started = instance(70, customer);
    started.indexed_by_customer = true;
    let event = EventRecord {
        id: "evt-70".into(),
        kind: "enquiry.received".into(),
        customer_id: customer.into(),
        data: raw(r#"{"enquiry_id":"q"}"#),
        received_at_ms: 1,
        started: vec![started.id],
    };
    let commit = EventCommit::new(event.clone(), vec![started.clone()], interaction("x", "y"));
    store.commit(&[commit.into()]).expect("commit");
    assert_eq!(
        store.active_of("enquiry", customer).expect("active"),
        vec![InstanceId(70)]
    );
    let mut exited = started.clone();
    exited.status = InstanceStatus::Exited;
    exited.current_step = None;
    exited.history_len = 2;
    let entry = HistoryEntry::Exited {
        at_ms: 3,
        event_id: "evt-71".into(),
        kind: "enquiry.withdrawn".into(),
        step: Some("acknowledge".into()),
    };
    let exit = InstanceCommit::leaving(exited, entry.clone(), &started);
    // A step that commits first takes the slot: the exit is stale.
    let mut stepped = started.clone();
    stepped.history_len = 2;
    let step = acknowledged(
        "i-70/1".into(),
        StateChanges::default(),
        StepOutcome::Goto {
            transition: "sent".into(),
            target: "classify".into(),
        },
        vec![],
    );
    let step = InstanceCommit::new(stepped, step.clone());
    let withdrawn = EventRecord {
        id: "evt-71".into(),
        kind: "enquiry.withdrawn".into(),
        customer_id: customer.into(),
        data: raw("{}"),
        received_at_ms: 3,
        started: vec![],
    };
    let mut ingest = EventCommit::new(withdrawn.clone(), vec![], interaction("x", "y"));
    ingest.exits = vec![exit];
    let applied = store.commit(&[step.into(), ingest.into()]).expect("commit");
    assert_eq!(applied, vec![Applied::Done, Applied::Done]);
    // The exit lost to the step: it stays owed until it applies.
    assert_eq!(
        store.pending_exits().expect("pending"),
        vec![(InstanceId(70), "evt-71".to_owned())]
    );
    // Tried again from its new position, it ends the instance.
    let current = store
        .instance(InstanceId(70))
        .expect("read")
        .expect("exists");
    let mut exited = current.clone();
    exited.status = InstanceStatus::Exited;
    exited.current_step = None;
    exited.history_len = current.history_len + 1;
    let exit = InstanceCommit::leaving(exited, entry.clone(), &current);
    let applied = store.commit(&[exit.into()]).expect("commit");
    assert_eq!(applied, vec![Applied::Done]);
    let ended = store
        .instance(InstanceId(70))
        .expect("read")
        .expect("exists");
    assert!(store.pending_exits().expect("pending").is_empty());
    assert_eq!(ended.status, InstanceStatus::Exited);
    assert!(
        store
            .active_of("enquiry", customer)
            .expect("active")
            .is_empty()
    );
    assert!(
        store
            .running_instances()
            .expect("running")
            .iter()
            .all(|i| i.id != ended.id)
    );
    let history = store.history(InstanceId(70)).expect("history");
    assert!(
        matches!(history.last(), Some(HistoryEntry::Exited { kind, .. }) if kind == "enquiry.withdrawn")
    );
}

pub(super) fn attempts_keep_their_idempotency_key_and_stale_timers_can_be_forgotten(
    store: &dyn Store,
) {
    // A restart interrupts a running instance's first step: read back,
    // its next attempt is the second, with the first one's key.
    store.commit(&[ingest(91, "c-9")]).expect("commit");
    let mut restarted = instance(91, "c-9");
    restarted.restarted(1, 3);
    let entry = HistoryEntry::Restarted {
        at_ms: 3,
        step: "acknowledge".into(),
        attempt: 1,
    };
    let commit = InstanceCommit::new(restarted, entry.clone());
    store.commit(&[commit.into()]).expect("commit");
    let read = store
        .instance(InstanceId(91))
        .expect("read")
        .expect("exists");
    assert_eq!(
        (
            read.history_len,
            read.next_attempt(),
            read.idempotency_key()
        ),
        (2, 2, "i-91/1".to_owned())
    );

    // That attempt fails and is retried on a timer, still with the key.
    let mut retrying = read.clone();
    let failed = StepRecord {
        attempt: 2,
        idempotency_key: read.idempotency_key(),
        retry_at_ms: Some(9_000),
        ..match acknowledged(
            read.idempotency_key(),
            StateChanges::default(),
            StepOutcome::Fail {
                reason: "boom".into(),
            },
            vec![],
        ) {
            HistoryEntry::StepRan(step) => *step,
            _ => unreachable!("acknowledged makes a step entry"),
        }
    };
    retrying.retry_later(&failed, 9_000);
    let entry = HistoryEntry::StepFailed(Box::new(failed));
    let commit = InstanceCommit::new(retrying, entry.clone());
    store.commit(&[commit.into()]).expect("commit");
    let read = store
        .instance(InstanceId(91))
        .expect("read")
        .expect("exists");
    assert_eq!(read.status, InstanceStatus::Waiting);
    assert_eq!(
        read.attempts,
        Some(StepAttempts {
            made: 2,
            failed: 1,
            idempotency_key: "i-91/1".into(),
            plugin: None,
        })
    );
    assert!(
        store
            .due_timers(9_000, 10)
            .expect("timers")
            .contains(&(9_000, InstanceId(91)))
    );
    store.forget_timer(9_000, InstanceId(91)).expect("forget");
    assert!(
        !store
            .due_timers(9_000, 10)
            .expect("timers")
            .contains(&(9_000, InstanceId(91)))
    );
}

/// While one thread wakes an instance from a due timer and puts it back
/// to sleep on one, over and over, the store is never at rest; another
/// thread asking [`Journal::settled`] must never be told it is.
pub(super) fn settled_is_never_seen_between_a_timer_and_its_step(store: &dyn Store) {
    const NOW: u64 = 5_000;
    store.commit(&[ingest(80, "c-8")]).expect("commit");
    assert!(!store.settled(NOW).expect("settled"), "a running instance");
    let mut running = store
        .instance(InstanceId(80))
        .expect("read")
        .expect("exists");
    let rounds = 2_000;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut looks = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                assert!(
                    !store.settled(NOW).expect("settled"),
                    "a busy store looked settled after {looks} looks"
                );
                looks += 1;
            }
            looks
        });
        for _ in 0..rounds {
            let mut asleep = running.clone();
            asleep.history_len += 1;
            asleep.status = InstanceStatus::Waiting;
            asleep.wake_at_ms = Some(NOW);
            let outcome = StepOutcome::Sleep {
                until_ms: NOW,
                transition: "later".into(),
                target: "acknowledge".into(),
                requested_ms: None,
                window: None,
            };
            let key = running.idempotency_key();
            let entry = acknowledged(key, StateChanges::default(), outcome, vec![]);
            let sleep = InstanceCommit::new(asleep.clone(), entry.clone());
            let mut awake = asleep.clone();
            awake.status = InstanceStatus::Running;
            awake.wake_at_ms = None;
            awake.history_len += 1;
            let woke = HistoryEntry::Woke {
                at_ms: NOW,
                due_ms: NOW,
            };
            let wake = InstanceCommit::leaving(awake.clone(), woke.clone(), &asleep);
            for commit in [sleep, wake] {
                let applied = store.commit(&[commit.into()]).expect("commit");
                assert_eq!(applied, [Applied::Done]);
            }
            running = awake;
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        let looks = watcher
            .join()
            .expect("the watcher saw a busy store as busy");
        assert!(looks > 0, "the watcher looked at least once");
    });
    let mut finished = running.clone();
    finished.history_len += 1;
    finished.status = InstanceStatus::Completed;
    finished.current_step = None;
    let entry = acknowledged(
        running.idempotency_key(),
        StateChanges::default(),
        StepOutcome::Complete,
        vec![],
    );
    let last = InstanceCommit::new(finished, entry.clone());
    store.commit(&[last.into()]).expect("commit");
    assert!(store.settled(NOW).expect("settled"), "nothing left to do");
}

pub(super) fn instances_are_searched_a_page_at_a_time_within_a_budget(store: &dyn Store) {
    for id in 530..535 {
        store.commit(&[ingest(id, "c-searched")]).expect("commit");
    }
    let ids =
        |page: &InstancePage| -> Vec<u64> { page.found.iter().map(|found| found.id.0).collect() };
    let searched = |after: Option<u64>, limit, budget| InstanceFilter {
        customer: Some("c-searched".into()),
        after: after.map(InstanceId),
        limit,
        budget,
        ..InstanceFilter::default()
    };
    let first = store
        .search_instances(&searched(None, 2, 0))
        .expect("search");
    assert_eq!(ids(&first), [530, 531]);
    assert_eq!(first.more_after, Some(InstanceId(531)));
    let rest = store
        .search_instances(&searched(Some(531), 10, 0))
        .expect("search");
    assert_eq!((ids(&rest), rest.more_after), (vec![532, 533, 534], None));
    let bounded = store
        .search_instances(&searched(Some(530), 10, 2))
        .expect("search");
    assert_eq!(ids(&bounded), [531, 532]);
    assert_eq!(
        bounded.more_after,
        Some(InstanceId(532)),
        "where the budget ran out"
    );
    assert_eq!(
        store.instances(&searched(None, 10, 0)).expect("list").len(),
        5,
        "instances() is the search without its cursor"
    );
}
