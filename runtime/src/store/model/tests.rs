//! The instance state machine, outcome by outcome.

use serde_json::json;

use super::*;

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().expect("an object")
}

fn running(history_len: u32) -> Instance {
    let mut instance = crate::store::suite::instance(7, "c-1");
    instance.current_step = Some("classify".into());
    instance.history_len = history_len;
    instance
}

fn ran(attempt: u32, outcome: StepOutcome) -> StepRecord {
    StepRecord {
        at_ms: 10,
        step: "classify".into(),
        plugin: "classify".into(),
        plugin_version: 1,
        digest: "d".into(),
        attempt,
        idempotency_key: "i-7/1".into(),
        state: StateChanges::default(),
        outcome,
        duration_us: 2_000,
        messages: vec![],
        capped: vec![],
        logs: vec![],
        retry_at_ms: None,
    }
}

/// `goto` leads to a step or completes at a terminal state; `sleep`
/// and `wait` make it wait with its timer; `complete` and `fail` end it.
#[test]
fn each_outcome_moves_a_running_instance_where_it_says() {
    let is_step = |name: &str| name != "resolved";
    let after = |outcome| {
        let mut instance = running(1);
        instance.advance(&ran(1, outcome), is_step);
        instance
    };
    let goto = |target: &str| StepOutcome::Goto {
        transition: "next".into(),
        target: target.into(),
    };
    let next = after(goto("handover"));
    assert_eq!(
        (next.status, next.current_step.as_deref(), next.history_len),
        (InstanceStatus::Running, Some("handover"), 2)
    );
    assert_eq!(next.updated_at_ms, 12, "the step's start plus its run time");
    let done = after(goto("resolved"));
    assert_eq!(
        (done.status, done.current_step, done.terminal.as_deref()),
        (InstanceStatus::Completed, None, Some("resolved"))
    );
    let asleep = after(StepOutcome::Sleep {
        until_ms: 500,
        transition: "later".into(),
        target: "remind".into(),
        requested_ms: None,
        window: None,
    });
    assert_eq!(
        (
            asleep.status,
            asleep.current_step.as_deref(),
            asleep.wake_at_ms
        ),
        (InstanceStatus::Waiting, Some("remind"), Some(500))
    );
    assert_eq!(
        asleep.waiting_at.as_deref(),
        Some("classify"),
        "the step that sleeps"
    );
    let waiting = after(StepOutcome::WaitForEvent {
        event: "enquiry.resolved".into(),
        correlation: "enquiry_id=q-1".into(),
        until_ms: 900,
        on_event: "resolved".into(),
        event_target: "resolve".into(),
        on_timeout: "breached".into(),
        timeout_target: "escalate".into(),
    });
    assert_eq!(
        (waiting.status, waiting.wake_at_ms),
        (InstanceStatus::Waiting, Some(900))
    );
    assert_eq!(
        waiting
            .waiting_for
            .map(|wait| (wait.on_event, wait.on_timeout)),
        Some(("resolve".to_owned(), "escalate".to_owned()))
    );
    assert_eq!(
        waiting.waiting_at.as_deref(),
        Some("classify"),
        "the step that waits"
    );
    assert_eq!(
        after(StepOutcome::Complete).status,
        InstanceStatus::Completed
    );
    let failed = after(StepOutcome::Fail {
        reason: "boom".into(),
    });
    assert_eq!(
        (failed.status, failed.failure.as_deref()),
        (InstanceStatus::Failed, Some("step `classify`: boom"))
    );
}

/// A failed attempt waits for its retry at the same step with the same
/// key; a restart counts on; the step that finally runs starts the next
/// step afresh.
#[test]
fn retries_and_restarts_keep_the_key_and_count_attempts() {
    let mut instance = running(1);
    assert_eq!(
        (instance.next_attempt(), instance.idempotency_key()),
        (1, "i-7/1".to_owned())
    );
    let mut failed = ran(1, StepOutcome::Fail { reason: "x".into() });
    failed.retry_at_ms = Some(1_000);
    instance.retry_later(&failed, 1_000);
    assert_eq!(
        (
            instance.status,
            instance.current_step.as_deref(),
            instance.wake_at_ms
        ),
        (InstanceStatus::Waiting, Some("classify"), Some(1_000))
    );
    assert_eq!((instance.next_attempt(), instance.history_len), (2, 2));
    // Woken, it is interrupted by a restart at attempt 2.
    instance.status = InstanceStatus::Running;
    instance.history_len += 1;
    instance.restarted(2, 1_500);
    assert_eq!(
        (instance.next_attempt(), instance.idempotency_key()),
        (3, "i-7/1".to_owned()),
        "the first attempt's key"
    );
    assert_eq!(
        instance.attempts.as_ref().map(|attempts| attempts.failed),
        Some(1)
    );
    let finally = ran(
        3,
        StepOutcome::Fail {
            reason: "still".into(),
        },
    );
    instance.advance(&finally, |_| true);
    assert_eq!(
        instance.failure.as_deref(),
        Some("step `classify`, attempt 3: still")
    );
    assert_eq!(instance.attempts, None, "the next step starts afresh");
    let mut split = running(4);
    split.attempts = instance.attempts.clone();
    split.follow_split("plain", true, 20);
    assert_eq!(
        (split.current_step.as_deref(), split.next_attempt()),
        (Some("plain"), 1)
    );
}

#[test]
fn run_counts_give_failure_rate_and_percentiles() {
    let mut stats = VersionStats::default();
    assert_eq!(stats.percentile_us(50.0), None);
    for duration_us in 1..=100 {
        stats.record(duration_us % 10 == 0, duration_us);
    }
    assert_eq!((stats.runs, stats.failures), (100, 10));
    assert!((stats.failure_rate() - 0.1).abs() < 1e-9);
    let p50 = stats.percentile_us(50.0).expect("runs");
    let p99 = stats.percentile_us(99.0).expect("runs");
    assert!((50..=60).contains(&p50), "{p50}");
    assert!((99..=120).contains(&p99), "{p99}");
    stats.record(false, u64::MAX);
    assert_eq!(
        stats.latency_buckets.len(),
        96,
        "very long runs share the last bucket"
    );
}

#[test]
fn state_changes_record_only_what_a_step_changed_and_replay_to_its_state() {
    let before = object(json!({ "kept": 1, "changed": "a", "dropped": true }));
    let after = object(json!({ "kept": 1, "changed": "b", "added": [1, 2] }));
    let changes = StateChanges::between(&before, after.clone());
    assert_eq!(
        changes.set,
        object(json!({ "changed": "b", "added": [1, 2] }))
    );
    assert_eq!(changes.removed, ["dropped"]);
    let mut replayed = before.clone();
    changes.apply_to(&mut replayed);
    assert_eq!(replayed, after);
    assert!(StateChanges::between(&after, after.clone()).is_empty());
}

/// A waiting instance: asleep until 5 000, or waiting for a reply.
fn waiting(for_event: bool) -> Instance {
    let mut instance = running(3);
    instance.status = InstanceStatus::Waiting;
    instance.current_step = (!for_event).then(|| "classify".into());
    instance.wake_at_ms = Some(5_000);
    instance.waiting_for = for_event.then(|| EventWait {
        kind: "customer.replied".into(),
        correlation: "customer=c-1".into(),
        on_event: "resolve".into(),
        on_timeout: "chase".into(),
    });
    instance
}

/// Every move takes the next history slot and leaves any wait.
fn took_the_next_slot(before: &Instance, after: &Instance, at_ms: u64) {
    assert_eq!(after.history_len, before.history_len + 1);
    assert_eq!(after.updated_at_ms, at_ms);
    assert_eq!(
        (
            after.wake_at_ms,
            after.waiting_for.is_none(),
            &after.waiting_at
        ),
        (None, true, &None)
    );
}

#[test]
fn a_wake_up_runs_the_instance_again_where_its_wait_leads() {
    let asleep = waiting(false);
    let woke = asleep.woken("classify".into(), true, None, 5_001);
    took_the_next_slot(&asleep, &woke, 5_001);
    assert_eq!(woke.status, InstanceStatus::Running);
    assert_eq!(woke.current_step.as_deref(), Some("classify"));
    assert_eq!(woke.last_event_id, None, "a timer carries no event");

    let replied = waiting(true).woken("resolved".into(), false, Some("evt-9"), 6_000);
    assert_eq!(
        replied.status,
        InstanceStatus::Completed,
        "a terminal state"
    );
    assert_eq!(replied.terminal.as_deref(), Some("resolved"));
    assert_eq!(replied.current_step, None);
    assert_eq!(replied.current_event_id(), "evt-9");
}

#[test]
fn an_exit_ends_a_running_or_waiting_instance() {
    for before in [running(2), waiting(true)] {
        let exited = before.exited("evt-out", 7_000);
        took_the_next_slot(&before, &exited, 7_000);
        assert_eq!(exited.status, InstanceStatus::Exited);
        assert_eq!(exited.current_step, None);
        assert_eq!(exited.last_event_id.as_deref(), Some("evt-out"));
    }
}

#[test]
fn a_migration_moves_a_running_instance_to_another_version_and_step() {
    let before = running(4);
    let moved = before.migrated(3, "triage".into(), 8_000);
    took_the_next_slot(&before, &moved, 8_000);
    assert_eq!(moved.status, InstanceStatus::Running);
    assert_eq!(
        (moved.journey_version, moved.current_step.as_deref()),
        (3, Some("triage"))
    );
}

#[test]
fn operator_actions_retry_skip_and_cancel_whatever_the_instance_was_doing() {
    let mut failed = running(5);
    failed.status = InstanceStatus::Failed;
    failed.current_step = None;
    failed.failure = Some("step `classify`: boom".into());

    let retried = failed.retried("classify".into(), Some("classify@2".into()), 9_000);
    took_the_next_slot(&failed, &retried, 9_000);
    assert_eq!(retried.status, InstanceStatus::Running);
    assert_eq!(retried.failure, None);
    assert_eq!(retried.current_step.as_deref(), Some("classify"));
    let attempts = retried.attempts.clone().expect("pinned to a plugin");
    assert_eq!(attempts.plugin.as_deref(), Some("classify@2"));
    assert_eq!(
        attempts.idempotency_key, "i-7/6",
        "a fresh key: a new execution"
    );
    assert_eq!(retried.next_attempt(), 1);
    assert_eq!(
        failed.retried("classify".into(), None, 9_000).attempts,
        None
    );

    let asleep = waiting(false);
    let skipped = asleep.skipped_to("resolve".into(), true, 9_500);
    took_the_next_slot(&asleep, &skipped, 9_500);
    assert_eq!(
        (skipped.status, skipped.current_step.as_deref()),
        (InstanceStatus::Running, Some("resolve"))
    );
    let finished = asleep.skipped_to("resolved".into(), false, 9_500);
    assert_eq!(finished.status, InstanceStatus::Completed);
    assert_eq!(finished.terminal.as_deref(), Some("resolved"));

    let cancelled = asleep.cancelled(9_900);
    took_the_next_slot(&asleep, &cancelled, 9_900);
    assert_eq!(
        (cancelled.status, cancelled.current_step.as_deref()),
        (InstanceStatus::Cancelled, None)
    );
}

/// A funnel mark moved on entry by entry is the mark counted from the
/// whole history, and taking one instance's tally away leaves the others'.
#[test]
fn a_funnel_mark_moved_on_by_each_entry_equals_one_counted_from_the_history() {
    let step = |name: &str| {
        HistoryEntry::StepRan(Box::new(StepRecord {
            step: name.into(),
            ..ran(1, StepOutcome::Complete)
        }))
    };
    let entries = [
        step("acknowledge"),
        HistoryEntry::Split {
            at_ms: 11,
            step: "offer".into(),
            variant: "b".into(),
            target: "classify".into(),
        },
        step("classify"),
        HistoryEntry::Woke {
            at_ms: 12,
            due_ms: 12,
        },
        step("acknowledge"),
    ];
    let mut instance = running(1);
    let mut mark = FunnelMark::started(&instance);
    let beside = FunnelMark::started(&running(1)).took(&entries[0], &running(2));
    // Kept the way a backend keeps it: counted in, then moved change by
    // change, beside another instance.
    let mut kept = FunnelTally::default();
    kept.count(&beside, true);
    kept.count(&mark, true);
    let mut history = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        history.push(entry.clone());
        instance.history_len += 1;
        instance.status = match index {
            4 => InstanceStatus::Completed,
            3 => InstanceStatus::Running,
            _ => InstanceStatus::Waiting,
        };
        let next = mark.took(entry, &instance);
        assert_eq!(
            next,
            FunnelMark::of_instance(&instance, &history),
            "entry {index}"
        );
        kept.recount(&mark, &next);
        mark = next;
        let mut expected = beside.tally();
        expected.add(&mark.tally());
        assert_eq!(
            kept.clone().pruned(),
            expected.pruned(),
            "counts after entry {index}"
        );
    }
    assert_eq!(mark.variant, "b");
    assert_eq!(mark.reached, ["acknowledge", "offer", "classify"]);
    assert_eq!(mark.standing, None, "a finished instance stands nowhere");
    let tally = mark.tally();
    let steps = &tally.variants["b"];
    assert_eq!(
        steps["acknowledge"].reached, 1,
        "reached once, also in a loop"
    );
    assert_eq!(steps["acknowledge"].completed_here, 1);
    assert_eq!(steps["classify"].completed_here, 0);

    let other = FunnelMark::started(&running(1));
    let mut both = tally.clone();
    both.add(&other.tally());
    assert_eq!(both.instances, 2);
    both.count(&mark, false);
    assert_eq!(both.pruned(), other.tally().pruned());
    assert_eq!(
        FunnelMark::started(&running(1)).standing.as_deref(),
        Some("classify")
    );
}
