//! Durable timers on a simulated clock: an instance sleeps for days that
//! pass in milliseconds, and a timer survives a crash and fires at once if
//! it fell due while journeyd was down.

use std::time::Duration;

use journey_tests::{Journeyd, fixture};
use serde_json::{Value, json};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// `nap` sleeps three days, then `done` completes the instance.
fn journey() -> String {
    format!(
        r#"
name = "reminder"
terminal = ["finished"]

[trigger]
event = "signup"
correlation_key = "signup_id"

[[steps]]
name = "nap"
plugin = "slow"
on = {{ wake = "done" }}
config = {{ sleep_ms = {}, next = "wake" }}

[[steps]]
name = "done"
plugin = "noop"
"#,
        3 * DAY_MS
    )
}

fn setup(journeyd: &Journeyd) -> u64 {
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let (status, body) = journeyd.deploy("reminder.toml", &journey());
    assert_eq!(status, 201, "{body}");
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "signup-1", "type": "signup", "customer": "c-1",
        "data": { "signup_id": "s-1" },
    }));
    assert_eq!(status, 202, "{receipt}");
    receipt["instances"][0].as_u64().expect("instance")
}

fn instance(journeyd: &Journeyd, id: u64) -> Value {
    journeyd.get(&format!("/v1/instances/i-{id}"))
}

fn advance(journeyd: &Journeyd, body: Value) -> u64 {
    let (status, answer) = journeyd.request(
        "POST",
        "/v1/clock/advance",
        Some(body.to_string().into_bytes()),
    );
    assert_eq!(status, 200, "{answer}");
    answer["now_ms"].as_u64().expect("now")
}

fn wait_until_waiting(journeyd: &Journeyd, id: u64) -> Value {
    assert!(
        journeyd.eventually(Duration::from_secs(10), |journeyd| {
            instance(journeyd, id)["status"] == "waiting"
        }),
        "the instance went to sleep"
    );
    instance(journeyd, id)
}

#[test]
fn an_instance_sleeps_three_simulated_days_and_wakes_when_they_have_passed() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_with(data.path(), &["--simulated-clock"]);
    let start = journeyd.get("/v1/clock")["now_ms"].as_u64().expect("now");
    assert_eq!(journeyd.get("/v1/clock")["simulated"], true);
    let id = setup(&journeyd);
    let waiting = wait_until_waiting(&journeyd, id);
    let wake_at = waiting["wake_at_ms"].as_u64().expect("a wake time");
    assert_eq!(wake_at, start + 3 * DAY_MS, "{waiting:#}");
    assert_eq!(waiting["current_step"], "done");

    advance(&journeyd, json!({ "ms": 2 * DAY_MS }));
    // The timer loop has been told the clock moved; give it the same
    // chance to (wrongly) fire that it gets below to fire rightly.
    assert!(
        !journeyd.eventually(Duration::from_millis(500), |journeyd| {
            instance(journeyd, id)["status"] != "waiting"
        })
    );

    let now = advance(&journeyd, json!({ "to_ms": wake_at }));
    assert_eq!(now, wake_at);
    let view = journeyd.wait_instance(id, Duration::from_secs(10));
    assert_eq!(view["status"], "completed", "{view:#}");
    let kinds: Vec<&str> = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|entry| entry["type"].as_str())
        .collect();
    assert_eq!(kinds, ["event_received", "step_ran", "woke", "step_ran"]);
    let woke = &view["history"][2];
    assert_eq!(woke["due_ms"], wake_at);
    assert_eq!(
        woke["at_ms"], wake_at,
        "on a simulated clock it is never late"
    );
    assert_eq!(view["history"][1]["outcome"]["kind"], "sleep");

    let (status, answer) = journeyd.request(
        "POST",
        "/v1/clock/advance",
        Some(json!({ "to_ms": start }).to_string().into_bytes()),
    );
    assert_eq!(status, 422, "the clock never goes back: {answer}");
    assert_eq!(answer["error"]["code"], "clock_backwards");
}

#[test]
fn a_timer_that_fell_due_while_journeyd_was_down_fires_on_start() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start_with(data.path(), &["--simulated-clock"]);
    let id = setup(&journeyd);
    let wake_at = wait_until_waiting(&journeyd, id)["wake_at_ms"]
        .as_u64()
        .expect("a wake time");
    journeyd.kill();

    // Four days pass while it is down.
    let later = (wake_at + DAY_MS).to_string();
    let journeyd = Journeyd::start_with(
        data.path(),
        &["--simulated-clock", "--simulated-clock-start", &later],
    );
    let view = journeyd.wait_instance(id, Duration::from_secs(10));
    assert_eq!(view["status"], "completed", "{view:#}");
    let woke = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|entry| entry["type"] == "woke")
        .expect("it woke");
    assert_eq!(woke["due_ms"], wake_at);
    assert_eq!(
        woke["at_ms"].as_u64(),
        Some(wake_at + DAY_MS),
        "one day late, at start"
    );
}

#[test]
fn the_system_clock_cannot_be_moved() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    assert_eq!(journeyd.get("/v1/clock")["simulated"], false);
    let (status, answer) = journeyd.request(
        "POST",
        "/v1/clock/advance",
        Some(json!({ "ms": 1000 }).to_string().into_bytes()),
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "clock_not_simulated");
}

#[test]
fn a_sleep_until_now_or_earlier_wakes_at_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_with(data.path(), &["--simulated-clock"]);
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let now = journey().replace(&format!("sleep_ms = {}", 3 * DAY_MS), "sleep_ms = 0");
    let (status, body) = journeyd.deploy("reminder.toml", &now);
    assert_eq!(status, 201, "{body}");
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "signup-1", "type": "signup", "customer": "c-1",
        "data": { "signup_id": "s-1" },
    }));
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("instance");
    // The clock never moves, yet the timer is already due.
    let view = journeyd.wait_instance(id, Duration::from_secs(10));
    assert_eq!(view["status"], "completed", "{view:#}");
    let woke = &view["history"][2];
    assert_eq!(woke["type"], "woke", "{view:#}");
    assert_eq!(woke["due_ms"], woke["at_ms"]);
}
