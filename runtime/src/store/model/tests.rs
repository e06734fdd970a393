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
