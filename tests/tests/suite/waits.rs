//! Waiting for an event with a timeout, on a simulated clock: the event
//! ends the wait for the instance it is about and no other, a re-sent
//! event wakes nothing twice, and the timeout takes the other way.

use std::time::Duration;

use journey_tests::{Journeyd, fixture};
use serde_json::{Value, json};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// `invite` waits two days for `webinar.registered` about the same
/// customer: `registered` on arrival, `reminded` on timeout.
fn journey() -> String {
    format!(
        r#"
name = "webinar"
terminal = ["finished"]

[trigger]
event = "webinar.invited"
correlation_key = "webinar_id"

[[steps]]
name = "invite"
plugin = "slow"
on = {{ came = "registered", late = "reminded" }}
config = {{ wait_for = "webinar.registered", timeout_ms = {}, next = "came", timeout_next = "late" }}

[[steps]]
name = "registered"
plugin = "noop"

[[steps]]
name = "reminded"
plugin = "noop"
"#,
        2 * DAY_MS
    )
}

fn start(data: &std::path::Path) -> Journeyd {
    let journeyd = Journeyd::start_with(data, &["--simulated-clock"]);
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let (status, body) = journeyd.deploy("webinar.toml", &journey());
    assert_eq!(status, 201, "{body}");
    journeyd
}

fn send(journeyd: &Journeyd, id: &str, kind: &str, customer: &str) -> (u16, Value) {
    journeyd.send_event(&json!({
        "id": id, "type": kind, "customer": customer,
        "data": { "webinar_id": "w-1" },
    }))
}

fn invite(journeyd: &Journeyd, customer: &str) -> u64 {
    let (status, receipt) = send(
        journeyd,
        &format!("invite-{customer}"),
        "webinar.invited",
        customer,
    );
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("instance");
    assert!(
        journeyd.eventually(Duration::from_secs(10), |journeyd| {
            journeyd.get(&format!("/v1/instances/i-{id}"))["status"] == "waiting"
        }),
        "i-{id} waits"
    );
    id
}

fn steps(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|entry| match entry["type"].as_str() {
            Some("step_ran") => entry["step"].as_str().expect("step").to_owned(),
            other => other.expect("type").to_owned(),
        })
        .collect()
}

#[test]
fn the_awaited_event_ends_the_wait_of_its_customer_only_and_only_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = start(data.path());
    let ada = invite(&journeyd, "c-ada");
    let grace = invite(&journeyd, "c-grace");
    let waiting = journeyd.get(&format!("/v1/instances/i-{ada}"));
    assert_eq!(
        waiting["waiting_for"]["kind"], "webinar.registered",
        "{waiting:#}"
    );
    assert_eq!(waiting["waiting_for"]["correlation"], "customer=c-ada");

    let (status, receipt) = send(&journeyd, "reg-1", "webinar.registered", "c-ada");
    assert_eq!(status, 202, "an awaited event type is accepted: {receipt}");
    assert_eq!(receipt["instances"], json!([]), "it starts nothing");
    let view = journeyd.wait_instance(ada, Duration::from_secs(10));
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(
        steps(&view),
        ["event_received", "invite", "event_arrived", "registered"]
    );
    assert_eq!(view["history"][2]["event_id"], "reg-1");
    assert_eq!(
        view["last_event_id"], "reg-1",
        "later steps see the new event"
    );

    let (status, again) = send(&journeyd, "reg-1", "webinar.registered", "c-ada");
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    assert_eq!(
        journeyd.get(&format!("/v1/instances/i-{grace}"))["status"],
        "waiting",
        "another customer's event did not end Grace's wait"
    );
    assert_eq!(
        steps(&journeyd.get(&format!("/v1/instances/i-{ada}"))).len(),
        4,
        "the re-sent event changed nothing"
    );

    let funnel = journeyd.get("/v1/journeys/webinar/funnel");
    let lines = &funnel["variants"]["-"];
    assert_eq!(lines[0]["step"], "invite", "{funnel:#}");
    assert_eq!(
        (lines[0]["reached"].as_u64(), lines[0]["waiting"].as_u64()),
        (Some(2), Some(1)),
        "both were invited, Grace still waits: {funnel:#}"
    );
    assert_eq!(
        (
            lines[1]["reached"].as_u64(),
            lines[1]["completed_here"].as_u64()
        ),
        (Some(1), Some(1)),
        "Ada registered: {funnel:#}"
    );

    let (status, answer) = send(&journeyd, "other-1", "webinar.attended", "c-grace");
    assert_eq!(status, 422, "nobody waits for this type: {answer}");
    assert_eq!(answer["error"]["code"], "unknown_event_type");
}

#[test]
fn the_timeout_takes_the_other_transition_and_a_late_event_is_not_waited_for() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = start(data.path());
    let ada = invite(&journeyd, "c-ada");
    let (status, answer) = journeyd.request(
        "POST",
        "/v1/clock/advance",
        Some(json!({ "ms": 2 * DAY_MS }).to_string().into_bytes()),
    );
    assert_eq!(status, 200, "{answer}");
    let view = journeyd.wait_instance(ada, Duration::from_secs(10));
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(
        steps(&view),
        ["event_received", "invite", "woke", "reminded"]
    );

    let (status, answer) = send(&journeyd, "reg-late", "webinar.registered", "c-ada");
    assert_eq!(status, 422, "nobody waits any more: {answer}");
}

#[test]
fn a_wait_survives_a_crash() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = start(data.path());
    let ada = invite(&journeyd, "c-ada");
    journeyd.kill();
    let journeyd = Journeyd::start_with(data.path(), &["--simulated-clock"]);
    let (status, receipt) = send(&journeyd, "reg-1", "webinar.registered", "c-ada");
    assert_eq!(status, 202, "{receipt}");
    let view = journeyd.wait_instance(ada, Duration::from_secs(10));
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(
        steps(&view),
        ["event_received", "invite", "event_arrived", "registered"]
    );
}

#[test]
fn a_wait_without_a_timeout_fails_its_step_with_the_reason() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_with(data.path(), &["--simulated-clock"]);
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let forever = journey().replace(&format!("timeout_ms = {}", 2 * DAY_MS), "timeout_ms = 0");
    let (status, body) = journeyd.deploy("webinar.toml", &forever);
    assert_eq!(status, 201, "{body}");
    let (status, receipt) = send(&journeyd, "invite-1", "webinar.invited", "c-ada");
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("instance");
    // The default retry policy tries it three times, 1 s and 2 s apart.
    journeyd.advance_clock_by(0);
    journeyd.advance_clock_by(3_000);
    let view = journeyd.wait_instance(id, Duration::from_secs(10));
    assert_eq!(view["status"], "failed", "{view:#}");
    let failure = view["failure"].as_str().expect("a reason");
    assert!(failure.contains("without a timeout"), "{failure}");
    assert!(failure.contains("attempt 3"), "{failure}");
}
