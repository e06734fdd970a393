//! Claims, leases and the invariants that must hold under concurrency.

use super::*;

pub(super) fn outbox_messages_are_claimed_with_a_lease_and_marked(store: &dyn Store) {
    use std::time::Duration;
    const ID: &str = "i-500/1/m0";
    let claimed_for = |now_ms, lease| -> Vec<ClaimedMessage> {
        store
            .claim_outbox(now_ms, usize::MAX, lease)
            .expect("claim")
            .into_iter()
            .filter(|claimed| claimed.message.id == ID)
            .collect()
    };
    let claimed = |now_ms| claimed_for(now_ms, Duration::from_millis(60_000));
    let recorded = |marked: Marked| match marked {
        Marked::Recorded(delivery) => delivery,
        other => panic!("the mark was not recorded: {other:?}"),
    };
    let attempt = |at_ms, outcome| DeliveryAttempt {
        at_ms,
        integration: "email".into(),
        outcome,
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
    // The attempt is on record before anything is sent.
    assert_eq!(
        (first[0].delivery.status, first[0].delivery.attempts),
        (DeliveryStatus::Sending, 1)
    );
    assert_eq!(
        store.delivery(ID).expect("delivery"),
        Some(first[0].delivery.clone())
    );
    assert!(claimed(2).is_empty(), "claimed: nobody else gets it");

    // A failed attempt makes it due again later, unclaimed.
    let failed = attempt(
        3,
        AttemptOutcome::Retry {
            error: "503 from the provider".into(),
            retry_at_ms: 10,
        },
    );
    let after = recorded(
        store
            .mark_outbox(ID, first[0].claim, &failed)
            .expect("mark"),
    );
    assert_eq!(
        (after.status, after.attempts, after.due_ms),
        (DeliveryStatus::Retrying, 1, Some(10))
    );
    assert!(claimed(9).is_empty(), "not due before its retry");
    // A claim whose lease ran out, taken over by another, marks nothing;
    // the lapsed attempt is on record as of unknown outcome.
    let lapsed = claimed_for(10, Duration::ZERO);
    assert_eq!(lapsed.len(), 1);
    assert_eq!(lapsed[0].delivery.attempts, 2);
    let again = claimed(10);
    assert_eq!(
        again.len(),
        1,
        "the lapsed claim's message is claimed again"
    );
    assert_eq!(again[0].delivery.attempts, 3);
    assert!(
        again[0]
            .delivery
            .log
            .iter()
            .any(|line| line.note.contains("attempt 2: outcome unknown")),
        "{:?}",
        again[0].delivery.log
    );
    assert_eq!(
        store
            .mark_outbox(ID, lapsed[0].claim, &failed)
            .expect("mark"),
        Marked::ClaimLost
    );

    // Accepted is recorded whoever reports it (the provider took it) and
    // is never claimed again; a late mark changes nothing.
    let accepted = attempt(
        11,
        AttemptOutcome::Accepted {
            provider_id: Some("p-1".into()),
        },
    );
    let done = recorded(
        store
            .mark_outbox(ID, lapsed[0].claim, &accepted)
            .expect("mark"),
    );
    assert_eq!(
        (done.status, done.attempts, done.provider_id.as_deref()),
        (DeliveryStatus::Accepted, 3, Some("p-1"))
    );
    assert!(
        claimed(u64::MAX).is_empty(),
        "accepted: never claimed again"
    );
    let late = attempt(
        12,
        AttemptOutcome::Dead {
            error: "late".into(),
        },
    );
    assert_eq!(
        store.mark_outbox(ID, again[0].claim, &late).expect("mark"),
        Marked::Recorded(done)
    );
    assert_eq!(
        store.mark_outbox("i-0/0/m9", 0, &late).expect("mark"),
        Marked::Unknown
    );
    assert_eq!(store.delivery("i-0/0/m9").expect("delivery"), None);

    // Reports move it forward by the provider's id, never back.
    let report = |at_ms, status| StatusReport {
        at_ms,
        status,
        note: format!("{status:?}"),
    };
    let by_provider = MessageRef::Provider {
        integration: "email",
        provider_id: "p-1",
    };
    let (message, opened, changed) = store
        .report_delivery(by_provider, &report(13, DeliveryStatus::Opened))
        .expect("report")
        .expect("known by its provider id");
    assert_eq!(
        (message.id.as_str(), opened.status, changed),
        (ID, DeliveryStatus::Opened, true)
    );
    let (_, still, changed) = store
        .report_delivery(MessageRef::Id(ID), &report(14, DeliveryStatus::Delivered))
        .expect("report")
        .expect("known");
    assert_eq!(
        (still.status, changed),
        (DeliveryStatus::Opened, false),
        "late: no change"
    );
    assert!(
        store
            .report_delivery(
                MessageRef::Provider {
                    integration: "sms",
                    provider_id: "p-1"
                },
                &report(15, DeliveryStatus::Clicked)
            )
            .expect("report")
            .is_none(),
        "provider ids are per integration"
    );
    // Only undelivered messages are replayed.
    assert_eq!(store.replay_message(ID, 16).expect("replay"), Some(still));
    assert_eq!(store.replay_message("i-0/0/m9", 16).expect("replay"), None);
}

pub(super) fn deliveries_are_listed_by_condition_a_page_at_a_time(store: &dyn Store) {
    // Five messages on a channel of their own, after whatever is queued.
    let on_channel = |id: u64| {
        let mut commit = step(id, "c-7", 1, false, vec![]);
        if let Commit::Instance(change) = &mut commit {
            change.messages[0].channel = "pager".into();
        }
        commit
    };
    for id in 520..525 {
        store.commit(&[ingest(id, "c-7")]).expect("commit");
        store.commit(&[on_channel(id)]).expect("commit");
    }
    let ids = |page: &DeliveryPage| -> Vec<String> {
        page.found
            .iter()
            .map(|(message, _)| message.id.clone())
            .collect()
    };
    let pager = |after: Option<&str>, limit, budget| DeliveryFilter {
        channel: Some("pager".into()),
        after: after.map(str::to_owned),
        limit,
        budget,
        ..DeliveryFilter::default()
    };
    let first = store.deliveries(&pager(None, 2, 0)).expect("list");
    assert_eq!(ids(&first), ["i-520/1/m0", "i-521/1/m0"]);
    assert_eq!(first.more_after.as_deref(), Some("i-521/1/m0"));
    let rest = store
        .deliveries(&pager(Some("i-521/1/m0"), 10, 0))
        .expect("list");
    assert_eq!(
        (ids(&rest), rest.more_after),
        (
            vec![
                "i-522/1/m0".into(),
                "i-523/1/m0".into(),
                "i-524/1/m0".into()
            ],
            None
        ),
        "the last page says there is no more"
    );
    // A budget stops the walk and says where it stopped.
    let bounded = store
        .deliveries(&pager(Some("i-520/1/m0"), 10, 2))
        .expect("list");
    assert_eq!(ids(&bounded), ["i-521/1/m0", "i-522/1/m0"]);
    assert_eq!(bounded.more_after.as_deref(), Some("i-522/1/m0"));
    let none = store
        .deliveries(&DeliveryFilter {
            statuses: vec![DeliveryStatus::Dead],
            ..pager(None, 10, 0)
        })
        .expect("list");
    assert!(none.found.is_empty() && none.more_after.is_none());
    let other = store
        .deliveries(&DeliveryFilter {
            integration: Some("no-such-integration".into()),
            ..pager(None, 10, 0)
        })
        .expect("list");
    assert!(other.found.is_empty(), "no message went through it");
}

pub(super) fn dead_messages_are_listed_and_replayed_under_the_same_id(store: &dyn Store) {
    use std::time::Duration;
    const ID: &str = "i-510/1/m0";
    store.commit(&[ingest(510, "c-5")]).expect("commit");
    store
        .commit(&[step(510, "c-5", 1, false, vec![])])
        .expect("commit");
    let claim = store
        .claim_outbox(2, usize::MAX, Duration::from_millis(60_000))
        .expect("claim")
        .into_iter()
        .find(|claimed| claimed.message.id == ID)
        .expect("due")
        .claim;
    let dead = DeliveryAttempt {
        at_ms: 3,
        integration: "email".into(),
        outcome: AttemptOutcome::Dead {
            error: "400: bad address".into(),
        },
    };
    store.mark_outbox(ID, claim, &dead).expect("mark");
    let listed = store
        .deliveries(&DeliveryFilter::with_statuses(
            &[DeliveryStatus::Dead],
            usize::MAX,
        ))
        .expect("list")
        .found;
    assert!(listed.iter().any(|(message, delivery)| message.id == ID
        && delivery.error.as_deref() == Some("400: bad address")));
    let replayed = store
        .replay_message(ID, 20)
        .expect("replay")
        .expect("known");
    assert_eq!(
        (replayed.status, replayed.due_ms, replayed.attempts),
        (DeliveryStatus::Queued, Some(20), 1)
    );
    let again = store
        .claim_outbox(20, usize::MAX, Duration::from_millis(60_000))
        .expect("claim");
    assert!(
        again
            .iter()
            .any(|claimed| claimed.message.id == ID && claimed.delivery.attempts == 2),
        "claimed again under the same id"
    );
}

pub(super) fn concurrent_claims_hand_each_message_to_one_claimant(store: &dyn Store) {
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

pub(super) fn single_reentry_starts_one_instance_per_customer_under_concurrency(store: &dyn Store) {
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

pub(super) fn send_reservations_never_exceed_a_cap_under_concurrency(store: &dyn Store) {
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

pub(super) fn versions_are_numbered_once_under_concurrency(store: &dyn Catalog) {
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

pub(super) fn concurrent_commits_take_each_history_slot_once(store: &dyn Store) {
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
