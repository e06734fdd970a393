//! Host faults are the host's: a store that cannot be read or written, a
//! host call that panics, a restart in the middle of everything. None of
//! them fails a customer's journey; the runtime keeps serving, `/readyz`
//! says what is wrong while it lasts, and everything moves on once it is
//! over. Faults are switched on through `PUT /v1/faults`, which only the
//! test build of journeyd has.

use std::time::Duration;

use journey_tests::{Journeyd, enquiry, fixture};
use serde_json::{Value, json};

fn set_faults(journeyd: &Journeyd, faults: &[&str]) {
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/faults",
        Some(json!({ "faults": faults }).to_string().into_bytes()),
    );
    assert_eq!(status, 200, "{body}");
}

fn readyz(journeyd: &Journeyd) -> (u16, Value) {
    journeyd.request("GET", "/readyz", None)
}

/// Wait until `/readyz` reports a problem that mentions `mention`.
fn wait_unready(journeyd: &Journeyd, mention: &str) -> Value {
    let mut last = Value::Null;
    let seen = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        let (status, body) = readyz(journeyd);
        last = body.clone();
        status == 503
            && body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(mention)
    });
    assert!(seen, "/readyz never reported `{mention}`: {last:#}");
    last
}

fn wait_ready(journeyd: &Journeyd) {
    let mut last = Value::Null;
    let ready = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        let (status, body) = readyz(journeyd);
        last = body;
        status == 200
    });
    assert!(ready, "/readyz stayed unready: {last:#}");
}

fn status_of(journeyd: &Journeyd, id: u64) -> Value {
    journeyd.get(&format!("/v1/instances/i-{id}"))["status"].clone()
}

#[test]
fn a_store_read_error_or_a_panicking_host_call_never_fails_the_customer() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();
    wait_ready(&journeyd);
    for (n, (fault, mention)) in [
        ("customer_view", "the customer view could not be read"),
        ("host_panic", "the step worker panicked"),
    ]
    .into_iter()
    .enumerate()
    {
        set_faults(&journeyd, &[fault]);
        let (status, receipt) = journeyd.send_event(&enquiry(
            &format!("evt-{fault}"),
            "c-ada",
            &format!("q-{n}"),
            "I was charged twice",
        ));
        assert_eq!(status, 202, "{receipt}");
        let id = receipt["instances"][0].as_u64().expect("an instance");
        let report = wait_unready(&journeyd, mention);
        assert_eq!(report["host_faults"][0]["instance"], id, "{report:#}");
        // The runtime keeps serving, and the customer is not failed: the
        // first step has not committed, so the instance is still running.
        assert_eq!(journeyd.get("/healthz")["status"], "ok");
        assert_eq!(status_of(&journeyd, id), "running", "{fault}");

        set_faults(&journeyd, &[]);
        let view = journeyd.wait_instance(id, Duration::from_secs(60));
        assert_eq!(view["status"], "completed", "{fault}: {view:#}");
        let acknowledge = &view["history"][1];
        assert_eq!(acknowledge["step"], "acknowledge", "{view:#}");
        assert!(
            acknowledge["attempt"].as_u64().expect("attempt") >= 2,
            "{fault}: the step ran again after the fault: {acknowledge:#}"
        );
        wait_ready(&journeyd);
    }
}

#[test]
fn a_failing_commit_is_retried_and_the_instances_it_held_move_on() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    push_slow_and_noop(&journeyd);
    let (status, body) = journeyd.deploy(
        "busy.toml",
        &slow_then_finish("busy", "work", r#"{ ms = 300, next = "finish" }"#),
    );
    assert_eq!(status, 201, "{body}");
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "busy-1", "type": "busy.started", "customer": "c-1", "data": { "run": "r-1" },
    }));
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("an instance");
    // The step is in the sandbox for 300 ms: its commit meets the fault.
    set_faults(&journeyd, &["commit"]);
    let report = wait_unready(&journeyd, "the committer is retrying");
    assert!(
        report["committer"]
            .as_str()
            .unwrap_or("")
            .contains("injected fault"),
        "{report:#}"
    );
    assert_eq!(journeyd.get("/healthz")["status"], "ok");
    assert_eq!(status_of(&journeyd, id), "running");

    set_faults(&journeyd, &[]);
    let view = journeyd.wait_instance(id, Duration::from_secs(60));
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(
        journey_tests::steps_of(&view),
        ["work", "finish"],
        "each step committed once"
    );
    wait_ready(&journeyd);
}

fn push_slow_and_noop(journeyd: &Journeyd) {
    for name in ["slow", "noop"] {
        let (status, body) = journeyd.push(name, fixture(name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
}

/// Journey `name` (started by `NAME.started`, correlated on `run`): step
/// `first` runs the `slow` fixture with `config`, which leads to `finish`.
fn slow_then_finish(name: &str, first: &str, config: &str) -> String {
    format!(
        r#"
name = "{name}"
terminal = ["done"]
[trigger]
event = "{name}.started"
correlation_key = "run"
[[steps]]
name = "{first}"
plugin = "slow"
config = {config}
on = {{ finish = "finish" }}
[[steps]]
name = "finish"
plugin = "noop"
"#
    )
}

#[test]
fn a_restart_after_sigkill_mid_step_with_overdue_timers_resumes_every_instance() {
    const START_MS: u64 = 1_796_112_000_000;
    const SLEEPERS: usize = 150;
    const BUSY_RUNS: usize = 30;
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start_simulated(data.path(), START_MS);
    push_slow_and_noop(&journeyd);
    let nap = slow_then_finish("nap", "sleep", r#"{ sleep_ms = 3600000, next = "finish" }"#);
    let busy = slow_then_finish("busy", "work", r#"{ ms = 150, next = "finish" }"#);
    for (file, source) in [("nap.toml", nap), ("busy.toml", busy)] {
        let (status, body) = journeyd.deploy(file, &source);
        assert_eq!(status, 201, "{body}");
    }
    let mut instances = Vec::new();
    for n in 0..SLEEPERS {
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("nap-{n}"), "type": "nap.started", "customer": format!("c-{}", n % 7),
            "data": { "run": format!("n-{n}") },
        }));
        assert_eq!(status, 202, "{receipt}");
        instances.push(receipt["instances"][0].as_u64().expect("an instance"));
    }
    // Every sleeper's timer is committed before the busy ones start.
    journeyd.advance_clock_by(0);
    for n in 0..BUSY_RUNS {
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("busy-{n}"), "type": "busy.started", "customer": "c-busy",
            "data": { "run": format!("b-{n}") },
        }));
        assert_eq!(status, 202, "{receipt}");
        instances.push(receipt["instances"][0].as_u64().expect("an instance"));
    }
    // Killed while busy instances are in their step: 30 steps of 150 ms
    // on two workers take over two seconds.
    journeyd.kill();

    // Two hours later every sleeper's timer is overdue at start.
    journeyd = Journeyd::start_simulated(data.path(), START_MS + 2 * 3_600_000);
    let (status, report) = readyz(&journeyd);
    assert_eq!(
        status, 200,
        "ready once it printed its readiness line: {report:#}"
    );
    assert_eq!(report["workers"]["alive"], report["workers"]["expected"]);
    journeyd.advance_clock_by(0);
    let mut restarted = 0;
    for id in &instances {
        let view = journeyd.wait_instance(*id, Duration::from_secs(60));
        assert_eq!(view["status"], "completed", "i-{id}: {view:#}");
        let steps = journey_tests::steps_of(&view);
        assert!(
            steps == ["sleep", "finish"] || steps == ["work", "finish"],
            "i-{id} committed a step twice or skipped one: {view:#}"
        );
        // A step the kill interrupted is recorded, and its next run
        // counts on from the interrupted attempt.
        let history = view["history"].as_array().expect("history");
        if let Some(at) = history
            .iter()
            .position(|entry| entry["type"] == "restarted")
        {
            restarted += 1;
            let interrupted = &history[at];
            let rerun = history[at..]
                .iter()
                .find(|entry| entry["type"] == "step_ran")
                .expect("the step ran after the restart");
            assert_eq!(rerun["step"], interrupted["step"], "i-{id}: {view:#}");
            assert_eq!(
                rerun["attempt"].as_u64(),
                interrupted["attempt"].as_u64().map(|attempt| attempt + 1),
                "i-{id}: {view:#}"
            );
        }
    }
    assert!(restarted > 0, "the kill interrupted no step");
    let (status, report) = readyz(&journeyd);
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(report["workers"]["alive"], report["workers"]["expected"]);
}

#[test]
fn more_steps_run_at_once_than_the_old_sixteen_slot_pool_held_and_none_fails() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_with(data.path(), &["--step-workers", "24"]);
    push_slow_and_noop(&journeyd);
    let (status, body) = journeyd.deploy(
        "busy.toml",
        &slow_then_finish("busy", "work", r#"{ ms = 400, next = "finish" }"#),
    );
    assert_eq!(status, 201, "{body}");
    let mut instances = Vec::new();
    for n in 0..96 {
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("busy-{n}"), "type": "busy.started", "customer": format!("c-{n}"),
            "data": { "run": format!("b-{n}") },
        }));
        assert_eq!(status, 202, "{receipt}");
        instances.push(receipt["instances"][0].as_u64().expect("an instance"));
    }
    for id in instances {
        let view = journeyd.wait_instance(id, Duration::from_secs(60));
        assert_eq!(view["status"], "completed", "i-{id}: {view:#}");
        assert_eq!(
            view["history"][1]["attempt"], 1,
            "no step ran twice: {view:#}"
        );
    }
    let (status, report) = readyz(&journeyd);
    assert_eq!(status, 200, "{report:#}");
    let peak = report["workers"]["steps_running_peak"]
        .as_u64()
        .expect("peak");
    assert!(peak > 16, "only {peak} steps ran at once: {report:#}");
    let (_, metrics) = journeyd.request("GET", "/metrics", None);
    assert!(
        !metrics
            .as_str()
            .unwrap_or("")
            .contains("journeyd_host_faults_total"),
        "no host fault: {metrics}"
    );
}

#[test]
fn a_time_zone_the_store_cannot_read_is_a_host_fault_not_utc() {
    const START_MS: u64 = 1_796_112_000_000; // 2026-12-01T08:00:00Z
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), START_MS);
    let (status, body) = journeyd.push("sleep", journey_tests::plugin("sleep"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.deploy(
        "nap.toml",
        r#"
name = "nap"
terminal = ["done"]
[trigger]
event = "nap.started"
correlation_key = "id"
[[steps]]
name = "nap"
plugin = "sleep"
on = { woke = "done" }
config = { for = "1h", window = "09:00-20:00" }
"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.put_customer("c-ny", &json!({ "time_zone": "America/New_York" }));
    assert_eq!(status, 200, "{body}");

    set_faults(&journeyd, &["customer_view"]);
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "nap-1", "type": "nap.started", "customer": "c-ny", "data": { "id": "n-1" },
    }));
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("an instance");
    wait_unready(&journeyd, "the customer's time zone could not be read");
    assert_eq!(status_of(&journeyd, id), "running");

    set_faults(&journeyd, &[]);
    wait_ready(&journeyd);
    journeyd.advance_clock_by(0);
    let view = journeyd.get(&format!("/v1/instances/i-{id}"));
    // 09:00 UTC is 04:00 in New York: the wake-up moves to 09:00 there,
    // 14:00 UTC, not to 09:00 UTC as a UTC fallback would have it.
    assert_eq!(view["status"], "waiting", "{view:#}");
    assert_eq!(view["wake_at_ms"], START_MS + 6 * 3_600_000, "{view:#}");
}
