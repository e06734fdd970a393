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
//! running and active sets), the funnel and standing counts kept as
//! commits land, customers, the catalog, and concurrency (commits and
//! version numbering from several threads at once).

use serde_json::json;
use serde_json::value::RawValue;

use super::*;

mod catalog;
mod concurrency;
mod counts;
mod forget;
mod journal;
mod retention;

use self::catalog::*;
use self::concurrency::*;
use self::counts::*;
use self::forget::*;
use self::journal::*;
use self::retention::*;

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
        waiting_at: None,
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

pub(crate) fn ingest(id: u64, customer: &str) -> Commit {
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
pub(crate) fn step(
    id: u64,
    customer: &str,
    seq: u32,
    last: bool,
    notes: Vec<Interaction>,
) -> Commit {
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
        journey: "enquiry".into(),
        step: "acknowledge".into(),
        customer_id: customer.into(),
        channel: "email".into(),
        to: String::new(),
        subject: String::new(),
        body: "hi".into(),
        metadata: raw("{}"),
        queued_at_ms: 2,
        trace: None,
    };
    InstanceCommit {
        messages: vec![message],
        interactions: notes,
        ..InstanceCommit::new(next, entry)
    }
    .into()
}

/// The catalog's checks (part of [`run`]), on a store whose catalog is
/// empty.
pub fn run_catalog(store: &dyn Catalog) {
    plugin_and_journey_versions_count_up(store);
    tags_keep_their_changes_and_run_counts_are_saved(store);
    a_migration_replaces_the_one_from_the_same_version(store);
    every_catalog_change_moves_the_catalog_version(store);
    canary_runs_add_up_per_rollout(store);
    versions_are_numbered_once_under_concurrency(store);
    the_audit_log_lists_entries_in_order_from_the_first(store);
}

/// Run every check on `store`, which must be empty. Panics, naming the
/// broken behaviour, on the first failed check.
pub fn run(store: &dyn Store) {
    run_journal(store);
    run_retention(store);
}

/// Every check but those of [`run_retention`], on an empty store.
pub fn run_journal(store: &dyn Store) {
    // First: it needs a store with nothing else running.
    settled_is_never_seen_between_a_timer_and_its_step(store);
    an_event_is_accepted_once(store);
    a_step_commits_once_with_its_effects(store);
    a_finished_instance_keeps_its_history_and_its_slots(store);
    instances_are_searched_a_page_at_a_time_within_a_budget(store);
    customer_views_follow_writes(store);
    run_catalog(store);
    a_sleeping_instance_has_a_timer_until_it_wakes(store);
    channels_engagement_and_counted_sends_are_kept(store);
    an_exit_ends_an_instance_indexed_by_customer(store);
    attempts_keep_their_idempotency_key_and_stale_timers_can_be_forgotten(store);
    outbox_messages_are_claimed_with_a_lease_and_marked(store);
    dead_messages_are_listed_and_replayed_under_the_same_id(store);
    deliveries_are_listed_by_condition_a_page_at_a_time(store);
    single_reentry_starts_one_instance_per_customer_under_concurrency(store);
    send_reservations_never_exceed_a_cap_under_concurrency(store);
    concurrent_claims_hand_each_message_to_one_claimant(store);
    concurrent_commits_take_each_history_slot_once(store);
    counts_equal_their_recomputation(store, "after commits of every kind");
}

/// The checks of retention and forgetting (the end of [`run`]), on a
/// store [`run_journal`] ran on: they claim every due message, remove
/// events and add funnel counts of purged instances.
pub fn run_retention(store: &dyn Store) {
    finished_instances_are_purged_with_everything_kept_for_them(store);
    old_events_interactions_and_engagement_are_swept(store);
    a_customer_is_forgotten_and_an_anonymised_instance_scrubbed(store);
    counts_equal_their_recomputation(store, "after purges and scrubs");
}
