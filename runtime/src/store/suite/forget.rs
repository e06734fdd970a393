//! Forgetting a customer: their events are found by customer, an
//! anonymised instance's records are scrubbed and re-indexed under the
//! pseudonym, and what is kept about the customer goes.

use std::sync::Arc;

use super::*;

pub(super) fn a_customer_is_forgotten_and_an_anonymised_instance_scrubbed(store: &dyn Store) {
    let email = "x950@example.com";
    let Commit::Instance(mut first_step) = step(950, "c-950", 1, false, vec![]) else {
        unreachable!("a step is an instance commit");
    };
    if let HistoryEntry::StepRan(record) = &mut first_step.entry {
        record.state.set.insert("reply_to".into(), json!(email));
    }
    // The instance as the entry leaves it: a backend may keep the record
    // it is given rather than fold the entry onto the one it had.
    first_step.instance.state = raw(&json!({ "seq": 1, "reply_to": email }).to_string());
    first_step.messages[0].to = email.into();
    store
        .commit(&[ingest(950, "c-950"), Commit::Instance(first_step)])
        .expect("commit");
    store
        .commit(&[
            ingest(951, "c-950"),
            step(951, "c-950", 1, false, vec![]),
            step(951, "c-950", 2, true, vec![]),
        ])
        .expect("commit");
    store
        .put_customer("c-950", &json!({ "email": email }))
        .expect("profile");
    let ids = |events: Vec<EventRecord>| -> Vec<String> {
        events.into_iter().map(|event| event.id).collect()
    };
    assert_eq!(
        ids(store.customer_events("c-950").expect("events")),
        ["evt-950", "evt-951"],
        "events are found by customer"
    );

    let before = store
        .instance(InstanceId(950))
        .expect("read")
        .expect("exists");
    let scrub = Arc::new(Scrub::new("c-950", "anon-950", [email.to_owned()]));
    let next = before.anonymised(&scrub, 5).expect("scrub");
    let entry = HistoryEntry::Anonymised {
        at_ms: 5,
        reason: "customer forgotten".into(),
    };
    let mut change = InstanceCommit::leaving(next, entry, &before);
    change.scrub = Some(scrub);
    assert_eq!(
        store.commit(&[change.into()]).expect("commit"),
        [Applied::Done]
    );
    let after = store
        .instance(InstanceId(950))
        .expect("read")
        .expect("exists");
    assert_eq!(after.customer_id, "anon-950");
    let state: serde_json::Value = serde_json::from_str(after.state.get()).expect("JSON");
    assert_eq!(
        state,
        json!({ "seq": 1, "reply_to": FORGOTTEN }),
        "the state is scrubbed"
    );
    let history =
        serde_json::to_string(&store.history(InstanceId(950)).expect("history")).expect("JSON");
    assert!(
        !history.contains("c-950") && !history.contains(email),
        "the history is scrubbed: {history}"
    );
    assert!(
        store
            .outbox(Some(InstanceId(950)), 10)
            .expect("outbox")
            .is_empty(),
        "a message not yet sent to a forgotten customer is dropped"
    );
    let event = store.event("evt-950").expect("read").expect("kept");
    assert_eq!(
        event.customer_id, "anon-950",
        "the event it ran on is scrubbed"
    );
    assert_eq!(
        ids(store.customer_events("anon-950").expect("events")),
        ["evt-950"]
    );
    assert_eq!(
        ids(store.customer_events("c-950").expect("events")),
        ["evt-951"]
    );

    let finished = store
        .instance(InstanceId(951))
        .expect("read")
        .expect("exists");
    let purge = Purge {
        instance: finished.id,
        finished_at_ms: finished.updated_at_ms,
    };
    assert_eq!(store.purge(&[purge]).expect("purge"), 1);
    let forgotten = store.forget_customer("c-950").expect("forget");
    assert!(forgotten.profile, "{forgotten:?}");
    assert_eq!(forgotten.interactions, 2, "{forgotten:?}");
    assert_eq!(forgotten.events_kept, 0, "{forgotten:?}");
    let view = store.customer_view("c-950", 10, &[]).expect("view");
    assert!(!view.is_known(), "nothing is known any more: {view:?}");
    assert!(store.customer_events("c-950").expect("events").is_empty());
}

pub(super) fn the_audit_log_lists_entries_in_order_from_the_first(store: &dyn Catalog) {
    let entry = |request: &str| AuditEntry {
        seq: 0,
        at_ms: 9,
        action: "customer.forget".into(),
        request_id: request.into(),
        token: None,
        details: json!({ "purged": 1 }),
    };
    let first = store.append_audit(entry("r-1")).expect("append");
    let second = store.append_audit(entry("r-2")).expect("append");
    assert!(
        first.seq >= 1 && second.seq > first.seq,
        "{first:?} {second:?}"
    );
    let all = store.audit_log(0, 10).expect("log");
    assert_eq!(
        all,
        [first.clone(), second.clone()],
        "`after = 0` lists every entry"
    );
    assert_eq!(store.audit_log(first.seq, 10).expect("log"), [second]);
    assert_eq!(store.audit_log(0, 1).expect("log"), [first]);
}
