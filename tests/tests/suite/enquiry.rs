//! The enquiry journey end to end through a real journeyd and the real
//! first-party plugins.

use std::time::Duration;

use journey_tests::{Journeyd, enquiry, steps_of};
use serde_json::Value;

#[test]
fn an_enquiry_runs_every_step_in_the_sandbox_and_is_visible_in_the_api() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();

    let (status, receipt) = journeyd.send_event(&enquiry(
        "evt-1",
        "c-ada",
        "q-1",
        "I was charged twice for my order, please refund the duplicate payment",
    ));
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["duplicate"], false);
    let id = receipt["instances"][0]
        .as_u64()
        .expect("one instance started");

    let view = journeyd.wait_instance(id, Duration::from_secs(30));
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(view["terminal"], "resolved");
    assert_eq!(
        steps_of(&view),
        ["acknowledge", "classify", "handover", "resolve"]
    );

    // Every step records the digest of the component that ran.
    let plugins = journeyd.get("/v1/plugins");
    for entry in view["history"].as_array().expect("history").iter().skip(1) {
        let digest = entry["digest"].as_str().expect("digest recorded");
        let pushed = plugins["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .find(|plugin| plugin["name"] == entry["plugin"])
            .expect("the plugin that ran was pushed");
        assert_eq!(pushed["digest"], digest);
        assert_eq!(entry["attempt"], 1);
    }

    // Classification came from the scorer, the hand-over from the playbook.
    let state = &view["state"];
    assert_eq!(state["classification"]["category"], "billing", "{state:#}");
    assert_eq!(
        state["handover"]["team"], "escalations",
        "gold + refund → high priority: {state:#}"
    );
    assert!(
        state["handover"]["suggested_reply"]
            .as_str()
            .expect("reply")
            .contains("refunded"),
        "{state:#}"
    );

    // Acknowledgement, team hand-over and resolution sit in the outbox.
    let messages = view["messages"].as_array().expect("messages");
    let channels: Vec<&str> = messages
        .iter()
        .map(|m| m["channel"].as_str().expect("channel"))
        .collect();
    assert_eq!(channels, ["email", "team", "email"], "{messages:#?}");
    assert!(
        messages[0]["body"]
            .as_str()
            .expect("body")
            .contains("Hi Ada")
    );
    assert_eq!(messages[1]["to"], "escalations");

    // The resolved enquiry is now part of the customer's single view.
    let customer = journeyd.get("/v1/customers/c-ada");
    let kinds: Vec<&str> = customer["interactions"]
        .as_array()
        .expect("interactions")
        .iter()
        .map(|i| i["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["enquiry.received", "enquiry.resolved"]);
}

#[test]
fn a_resent_event_id_is_a_no_op() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();
    let event = enquiry("evt-dup", "c-grace", "q-9", "my parcel has not arrived");

    let (first_status, first) = journeyd.send_event(&event);
    assert_eq!(first_status, 202, "{first}");
    let (second_status, second) = journeyd.send_event(&event);
    assert_eq!(second_status, 200, "{second}");
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["instances"], first["instances"]);

    let id = first["instances"][0].as_u64().expect("instance");
    let view = journeyd.wait_instance(id, Duration::from_secs(30));
    assert_eq!(view["status"], "completed", "{view:#}");
    let all = journeyd.get("/v1/instances?journey=enquiry");
    assert_eq!(all["instances"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_later_enquiry_gets_the_reply_that_resolved_a_similar_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();
    let (_, first) = journeyd.send_event(&enquiry(
        "evt-a",
        "c-linus",
        "q-a",
        "the invoices page of the app shows the wrong payment date",
    ));
    let first_id = first["instances"][0].as_u64().expect("instance");
    let first_view = journeyd.wait_instance(first_id, Duration::from_secs(30));
    let first_reply = first_view["state"]["handover"]["suggested_reply"].clone();

    let (_, second) = journeyd.send_event(&enquiry(
        "evt-b",
        "c-linus",
        "q-b",
        "the invoices page of the app shows the wrong payment date again",
    ));
    let second_id = second["instances"][0].as_u64().expect("instance");
    let second_view = journeyd.wait_instance(second_id, Duration::from_secs(30));
    let handover = &second_view["state"]["handover"];
    assert_eq!(
        handover["similar_to"], "the invoices page of the app shows the wrong payment date",
        "the customer's own resolved enquiry is the closest match: {handover:#}"
    );
    assert_eq!(handover["suggested_reply"], first_reply);
    assert_ne!(handover["suggested_reply"], Value::String(String::new()));
}

/// 2026-12-01T08:00:00Z.
const DEC_1_MS: u64 = 1_796_112_000_000;
const HOUR_MS: u64 = 60 * 60 * 1000;

fn resolution(id: &str, customer: &str, enquiry_id: &str) -> Value {
    serde_json::json!({
        "id": id, "type": "enquiry.resolved", "customer": customer,
        "data": { "enquiry_id": enquiry_id, "agent": "Sam", "resolution": "Refunded today." },
    })
}

#[test]
fn the_shipped_enquiry_waits_for_its_team_and_escalates_when_the_sla_passes() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), DEC_1_MS);
    journeyd.setup_enquiry_as_shipped();
    let start = |id: &str, customer: &str, enquiry_id: &str, text: &str| {
        let (status, receipt) = journeyd.send_event(&enquiry(id, customer, enquiry_id, text));
        assert_eq!(status, 202, "{receipt}");
        receipt["instances"][0].as_u64().expect("an instance")
    };
    // Gold + refund: high priority, a one-hour SLA.
    let urgent = start(
        "e-1",
        "c-ada",
        "q-1",
        "I was charged twice, refund the duplicate payment",
    );
    let answered = start("e-2", "c-grace", "q-2", "my parcel has not arrived");
    let withdrawn = start("e-3", "c-linus", "q-3", "the app crashes when I open it");
    journeyd.advance_clock_to(DEC_1_MS + 1_000);
    for id in [urgent, answered, withdrawn] {
        let view = journeyd.wait_instance(id, Duration::ZERO);
        assert_eq!(
            view["status"], "waiting",
            "no enquiry resolves by itself: {view:#}"
        );
        assert_eq!(
            steps_of(&view),
            ["acknowledge", "classify", "handover", "await_resolution"]
        );
    }

    // The team answers q-2 in time; a resolution for an enquiry nobody
    // waits for is accepted and changes nothing.
    assert_eq!(
        journeyd.send_event(&resolution("r-2", "c-grace", "q-2")).0,
        202
    );
    assert_eq!(
        journeyd
            .send_event(&resolution("r-x", "c-grace", "q-404"))
            .0,
        202
    );
    // The customer withdraws q-3: it ends where it waits.
    let (status, receipt) = journeyd.send_event(&serde_json::json!({
        "id": "w-3", "type": "enquiry.withdrawn", "customer": "c-linus",
        "data": { "enquiry_id": "q-3" },
    }));
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["exited"], serde_json::json!([withdrawn]));
    journeyd.advance_clock_to(DEC_1_MS + 2_000);
    let view = journeyd.wait_instance(answered, Duration::ZERO);
    assert_eq!(view["terminal"], "resolved", "{view:#}");
    let confirmation = view["messages"]
        .as_array()
        .expect("messages")
        .last()
        .cloned();
    let body = confirmation
        .as_ref()
        .and_then(|m| m["body"].as_str())
        .unwrap_or("");
    assert!(
        body.contains("Refunded today.") && body.contains("Sam"),
        "{body}"
    );
    assert_eq!(
        journeyd.wait_instance(withdrawn, Duration::ZERO)["status"],
        "exited"
    );

    // Nobody answers q-1: after its hour it escalates, and again after the
    // escalated SLA of two hours, each time telling a lead and the customer.
    journeyd.advance_clock_to(DEC_1_MS + HOUR_MS + 1_000);
    let view = journeyd.wait_instance(urgent, Duration::ZERO);
    assert_eq!(view["status"], "waiting");
    let escalations = |view: &Value| {
        steps_of(view)
            .iter()
            .filter(|step| *step == "escalate")
            .count()
    };
    assert_eq!(escalations(&view), 1);
    // The hand-over gave it to `escalations`: the chain moves it on.
    assert_eq!(
        view["state"]["handover"]["team"], "head-of-care",
        "{view:#}"
    );
    let messages = view["messages"].as_array().expect("messages");
    assert!(
        messages.iter().any(|m| m["subject"]
            .as_str()
            .unwrap_or("")
            .starts_with("SLA breached")),
        "a lead is told: {messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["to"] == "" && m["body"].as_str().unwrap_or("").contains("taking longer")),
        "the customer is told: {messages:#?}"
    );
    journeyd.advance_clock_to(DEC_1_MS + 3 * HOUR_MS + 2_000);
    let view = journeyd.wait_instance(urgent, Duration::ZERO);
    assert_eq!(escalations(&view), 2);
    // The end of the chain keeps it: it is never dropped.
    assert_eq!(
        view["state"]["handover"]["team"], "head-of-care",
        "{view:#}"
    );
    assert_eq!(view["state"]["escalation"]["level"], 2, "{view:#}");

    // The resolution finally arrives and the customer hears about it.
    assert_eq!(
        journeyd.send_event(&resolution("r-1", "c-ada", "q-1")).0,
        202
    );
    journeyd.advance_clock_to(DEC_1_MS + 3 * HOUR_MS + 3_000);
    let view = journeyd.wait_instance(urgent, Duration::ZERO);
    assert_eq!(view["terminal"], "resolved", "{view:#}");
}
