//! The behaviour every store backend must have: one conformance suite,
//! run by each backend's tests on a fresh store. It is exported under the
//! `testing` feature, so a backend in another crate runs it too:
//!
//! ```ignore
//! journey_runtime::store::suite::run(&my_store);
//! ```
//!
//! It covers commits (atomic, once, stale and duplicate ones skipped),
//! indexes derived from domain facts (timers, waits, correlation, the
//! running and active sets), customers, the catalog, and concurrency
//! (commits and version numbering from several threads at once).

use serde_json::json;
use serde_json::value::RawValue;

use super::*;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("test JSON")
}

/// A running instance of the enquiry journey at `acknowledge`, history
/// slot 1 next (shared with the state machine's unit tests).
pub fn instance(id: u64, customer: &str) -> Instance {
    Instance {
        id: InstanceId(id),
        journey: "enquiry".into(),
        journey_version: 1,
        customer_id: customer.into(),
        correlation: format!("q-{id}"),
        trigger_event_id: format!("evt-{id}"),
        status: InstanceStatus::Running,
        current_step: Some("acknowledge".into()),
        terminal: None,
        failure: None,
        state: raw("{}"),
        history_len: 1,
        created_at_ms: 1,
        updated_at_ms: 1,
        wake_at_ms: None,
        waiting_for: None,
        last_event_id: None,
        indexed_by_customer: false,
        attempts: None,
    }
}

fn interaction(kind: &str, text: &str) -> Interaction {
    Interaction {
        at_ms: 1,
        channel: "email".into(),
        kind: kind.into(),
        text: text.into(),
        details: raw(r#"{"k":1}"#),
    }
}

fn ingest(id: u64, customer: &str) -> Commit {
    ingest_commit(id, customer).into()
}

fn ingest_commit(id: u64, customer: &str) -> EventCommit {
    let instance = instance(id, customer);
    let event = EventRecord {
        id: instance.trigger_event_id.clone(),
        kind: "enquiry.received".into(),
        customer_id: customer.into(),
        data: raw(r#"{"enquiry_id":"q"}"#),
        received_at_ms: 1,
        started: vec![instance.id],
    };
    EventCommit::new(
        event,
        vec![instance],
        interaction("enquiry.received", "hello"),
    )
}

/// The history entry of an `acknowledge` step.
fn acknowledged(
    idempotency_key: String,
    state: StateChanges,
    outcome: StepOutcome,
    messages: Vec<String>,
) -> HistoryEntry {
    HistoryEntry::StepRan(Box::new(StepRecord {
        at_ms: 2,
        step: "acknowledge".into(),
        plugin: "acknowledge".into(),
        plugin_version: 1,
        digest: "d".into(),
        attempt: 1,
        idempotency_key,
        state,
        outcome,
        duration_us: 5,
        messages,
        capped: vec![],
        logs: vec![],
        retry_at_ms: None,
    }))
}

/// The step that writes history slot `seq` of instance `id`: it goes
/// on to `classify`, or completes the instance when `last`.
fn step(id: u64, customer: &str, seq: u32, last: bool, notes: Vec<Interaction>) -> Commit {
    let mut next = instance(id, customer);
    next.history_len = seq;
    let key = next.idempotency_key();
    next.history_len = seq + 1;
    next.state = raw(&format!(r#"{{"seq":{seq}}}"#));
    let outcome = if last {
        next.status = InstanceStatus::Completed;
        next.current_step = None;
        StepOutcome::Complete
    } else {
        next.current_step = Some("classify".into());
        StepOutcome::Goto {
            transition: "sent".into(),
            target: "classify".into(),
        }
    };
    let state = StateChanges {
        set: json!({ "seq": seq })
            .as_object()
            .cloned()
            .expect("an object"),
        removed: vec![],
    };
    let entry = acknowledged(key, state, outcome, vec![format!("i-{id}/{seq}/m0")]);
    let message = OutboxMessage {
        id: format!("i-{id}/{seq}/m0"),
        instance_id: InstanceId(id),
        step: "acknowledge".into(),
        customer_id: customer.into(),
        channel: "email".into(),
        to: String::new(),
        subject: String::new(),
        body: "hi".into(),
        metadata: raw("{}"),
        queued_at_ms: 2,
    };
    InstanceCommit {
        messages: vec![message],
        interactions: notes,
        ..InstanceCommit::new(next, entry)
    }
    .into()
}

/// Run every check on `store`, which must be empty. Panics, naming the
/// broken behaviour, on the first failed check.
pub fn run(store: &dyn Store) {
    // First: it needs a store with nothing else running.
    settled_is_never_seen_between_a_timer_and_its_step(store);
    an_event_is_accepted_once(store);
    a_step_commits_once_with_its_effects(store);
    customer_views_follow_writes(store);
    plugin_and_journey_versions_count_up(store);
    tags_keep_their_changes_and_run_counts_are_saved(store);
    a_migration_replaces_the_one_from_the_same_version(store);
    a_sleeping_instance_has_a_timer_until_it_wakes(store);
    channels_engagement_and_counted_sends_are_kept(store);
    an_exit_ends_an_instance_indexed_by_customer(store);
    attempts_keep_their_idempotency_key_and_stale_timers_can_be_forgotten(store);
    versions_are_numbered_once_under_concurrency(store);
    outbox_messages_are_claimed_with_a_lease_and_marked(store);
    single_reentry_starts_one_instance_per_customer_under_concurrency(store);
    send_reservations_never_exceed_a_cap_under_concurrency(store);
    concurrent_claims_hand_each_message_to_one_claimant(store);
    concurrent_commits_take_each_history_slot_once(store);
}

fn outbox_messages_are_claimed_with_a_lease_and_marked(store: &dyn Store) {
    use std::time::Duration;
    const ID: &str = "i-500/1/m0";
    let lease = Duration::from_secs(60);
    let claimed = |now_ms| -> Vec<ClaimedMessage> {
        store
            .claim_outbox(now_ms, usize::MAX, lease)
            .expect("claim")
            .into_iter()
            .filter(|claimed| claimed.message.id == ID)
            .collect()
    };
    store.commit(&[ingest(500, "c-5")]).expect("commit");
    store
        .commit(&[step(500, "c-5", 1, false, vec![])])
        .expect("commit");
    assert_eq!(
        store.delivery(ID).expect("delivery"),
        Some(Delivery::queued(2))
    );
    assert!(claimed(1).is_empty(), "not due before it was queued");
    let first = claimed(2);
    assert_eq!(first.len(), 1, "due once queued");
    assert_eq!(first[0].delivery.attempts, 0);
    assert!(claimed(2).is_empty(), "claimed: nobody else gets it");

    // A failed attempt makes it due again later, unclaimed.
    let failed = DeliveryAttempt {
        at_ms: 3,
        outcome: AttemptOutcome::Failed {
            error: "503 from the provider".into(),
            retry_at_ms: 10,
        },
    };
    let after = store
        .mark_outbox(ID, &failed)
        .expect("mark")
        .expect("known");
    assert_eq!(
        (after.status, after.attempts, after.due_ms),
        (DeliveryStatus::Failed, 1, Some(10))
    );
    assert!(claimed(9).is_empty(), "not due before its retry");
    let again = claimed(10);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.status, DeliveryStatus::Failed);

    // Delivered is final: never claimed again, a late mark changes nothing.
    let delivered = DeliveryAttempt {
        at_ms: 11,
        outcome: AttemptOutcome::Delivered {
            provider_id: Some("p-1".into()),
        },
    };
    let done = store
        .mark_outbox(ID, &delivered)
        .expect("mark")
        .expect("known");
    assert_eq!(
        (done.status, done.attempts, done.provider_id.as_deref()),
        (DeliveryStatus::Delivered, 2, Some("p-1"))
    );
    assert!(
        claimed(u64::MAX).is_empty(),
        "delivered: never claimed again"
    );
    let late = DeliveryAttempt {
        at_ms: 12,
        outcome: AttemptOutcome::Dead {
            error: "late".into(),
        },
    };
    assert_eq!(store.mark_outbox(ID, &late).expect("mark"), Some(done));
    assert_eq!(store.mark_outbox("i-0/0/m9", &late).expect("mark"), None);
    assert_eq!(store.delivery("i-0/0/m9").expect("delivery"), None);
}

fn concurrent_claims_hand_each_message_to_one_claimant(store: &dyn Store) {
    use std::time::Duration;
    let ids = 600..640u64;
    for id in ids.clone() {
        store.commit(&[ingest(id, "c-6")]).expect("commit");
        store
            .commit(&[step(id, "c-6", 1, false, vec![])])
            .expect("commit");
    }
    let ours = |claimed: Vec<ClaimedMessage>| -> Vec<String> {
        claimed
            .into_iter()
            .map(|claimed| claimed.message.id)
            .filter(|id| id.strip_prefix("i-6").is_some() && id.len() == "i-600/1/m0".len())
            .collect()
    };
    let mut handed: Vec<String> = std::thread::scope(|scope| {
        let claimants: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    for _ in 0..20 {
                        mine.extend(ours(
                            store
                                .claim_outbox(2, 10, Duration::from_secs(60))
                                .expect("claim"),
                        ));
                    }
                    mine
                })
            })
            .collect();
        claimants
            .into_iter()
            .flat_map(|claimant| claimant.join().expect("a claimant"))
            .collect()
    });
    handed.sort();
    let expected: Vec<String> = ids.map(|id| format!("i-{id}/1/m0")).collect();
    assert_eq!(handed, expected, "every message claimed exactly once");
}

/// An event that starts instance `id` of the enquiry journey for
/// `customer`, exclusively (single re-entry).
fn exclusive_start(id: u64, customer: &str) -> Commit {
    let mut commit = ingest_commit(id, customer);
    for instance in &mut commit.started {
        instance.indexed_by_customer = true;
    }
    commit.exclusive = vec![InstanceId(id)];
    commit.into()
}

fn single_reentry_starts_one_instance_per_customer_under_concurrency(store: &dyn Store) {
    // In one batch: the second start is refused, naming the first.
    let applied = store
        .commit(&[exclusive_start(700, "c-7"), exclusive_start(701, "c-7")])
        .expect("commit");
    let refused = vec![RefusedStart {
        instance: InstanceId(701),
        active: InstanceId(700),
    }];
    assert_eq!(
        applied,
        [
            Applied::Done,
            Applied::PartlyStarted {
                refused: refused.clone()
            }
        ]
    );
    let event = store.event("evt-701").expect("read").expect("accepted");
    assert!(
        event.started.is_empty(),
        "the record lists no refused start"
    );
    assert!(store.instance(InstanceId(701)).expect("read").is_none());
    // Later, against what is stored.
    let applied = store
        .commit(&[exclusive_start(702, "c-7")])
        .expect("commit");
    assert_eq!(
        applied,
        [Applied::PartlyStarted {
            refused: vec![RefusedStart {
                instance: InstanceId(702),
                active: InstanceId(700),
            }]
        }]
    );
    // From many threads at once, per customer: exactly one starts.
    let started: usize = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4u64)
            .map(|thread| {
                scope.spawn(move || {
                    (0..10u64)
                        .filter(|customer| {
                            let id = 710 + customer * 10 + thread;
                            let applied = store
                                .commit(&[exclusive_start(id, &format!("c-7{customer}"))])
                                .expect("commit");
                            applied == [Applied::Done]
                        })
                        .count()
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|sender| sender.join().expect("a sender"))
            .sum()
    });
    assert_eq!(started, 10, "one instance per customer");
    for customer in 0..10 {
        assert_eq!(
            store
                .active_of("enquiry", &format!("c-7{customer}"))
                .expect("active")
                .len(),
            1
        );
    }
}

fn send_reservations_never_exceed_a_cap_under_concurrency(store: &dyn Store) {
    const LIMIT: u32 = 5;
    let reserve = |at_ms| {
        store
            .reserve_send("c-capped", "sms", at_ms, 1_000, LIMIT)
            .expect("reserve")
    };
    let reserved: Vec<u64> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4u64)
            .map(|thread| {
                scope.spawn(move || {
                    (0..10u64)
                        .map(|n| 1_000 + thread * 100 + n)
                        .filter(|at_ms| reserve(*at_ms) == SendReservation::Reserved)
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|sender| sender.join().expect("a sender"))
            .collect()
    });
    assert_eq!(reserved.len(), LIMIT as usize, "{reserved:?}");
    let SendReservation::Full { sent } = reserve(2_000) else {
        panic!("the cap is full");
    };
    let mut expected = reserved.clone();
    expected.sort_unstable();
    assert_eq!(sent, expected, "the full answer lists the reserved sends");
    // A released reservation frees its slot; one outside the period does
    // not count.
    store
        .release_send("c-capped", "sms", reserved[0])
        .expect("release");
    assert_eq!(reserve(2_000), SendReservation::Reserved);
    assert!(
        store
            .reserve_send("c-capped", "sms", 9_000, 5_000, LIMIT)
            .expect("reserve")
            == SendReservation::Reserved,
        "sends before the period do not count"
    );
}

fn versions_are_numbered_once_under_concurrency(store: &dyn Store) {
    const THREADS: u32 = 4;
    const EACH: u32 = 10;
    let mut versions: Vec<u32> = std::thread::scope(|scope| {
        let deployers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    (0..EACH)
                        .map(|_| {
                            store
                                .put_journey("contended", "name = \"contended\"", 1)
                                .expect("deploy")
                                .version
                        })
                        .collect::<Vec<u32>>()
                })
            })
            .collect();
        deployers
            .into_iter()
            .flat_map(|deployer| deployer.join().expect("a deployer"))
            .collect()
    });
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=THREADS * EACH).collect::<Vec<u32>>(),
        "every concurrent deploy gets its own version"
    );
}

fn concurrent_commits_take_each_history_slot_once(store: &dyn Store) {
    const INSTANCES: u64 = 50;
    let ids = 300..300 + INSTANCES;
    for id in ids.clone() {
        store.commit(&[ingest(id, "c-race")]).expect("commit");
    }
    // Two attempts of every instance's first step race, each committing
    // one at a time from its own thread: exactly one of each pair wins.
    let done: u64 = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let ids = ids.clone();
                scope.spawn(move || {
                    ids.filter(|&id| {
                        let applied = store
                            .commit(&[step(id, "c-race", 1, false, vec![])])
                            .expect("commit");
                        applied == [Applied::Done]
                    })
                    .count() as u64
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().expect("a racer"))
            .sum()
    });
    assert_eq!(done, INSTANCES, "each history slot is taken once");
    for id in ids {
        let history = store.history(InstanceId(id)).expect("history");
        assert_eq!(history.len(), 2, "i-{id}: the event and one step");
        assert_eq!(
            store
                .outbox(Some(InstanceId(id)), 10)
                .expect("outbox")
                .len(),
            1,
            "i-{id}: the winner's message only"
        );
    }
}

fn attempts_keep_their_idempotency_key_and_stale_timers_can_be_forgotten(store: &dyn Store) {
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
fn settled_is_never_seen_between_a_timer_and_its_step(store: &dyn Store) {
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

fn channels_engagement_and_counted_sends_are_kept(store: &dyn Store) {
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

fn an_exit_ends_an_instance_indexed_by_customer(store: &dyn Store) {
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

fn a_sleeping_instance_has_a_timer_until_it_wakes(store: &dyn Store) {
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

fn a_migration_replaces_the_one_from_the_same_version(store: &dyn Store) {
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

fn tags_keep_their_changes_and_run_counts_are_saved(store: &dyn Store) {
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

fn an_event_is_accepted_once(store: &dyn Store) {
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

fn a_step_commits_once_with_its_effects(store: &dyn Store) {
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

fn customer_views_follow_writes(store: &dyn Store) {
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

fn plugin_and_journey_versions_count_up(store: &dyn Store) {
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
