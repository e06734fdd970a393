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
