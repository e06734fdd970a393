//! A failing plugin is retried on its step's policy, on durable timers;
//! once its attempts are used up the instance is failed with every
//! attempt in its history, and operators retry, skip or cancel instances
//! one at a time or in bulk, with a dry-run count.

use journey_tests::{Journeyd, fixture};
use serde_json::{Value, json};

const START_MS: u64 = 1_796_112_000_000;

/// `score` runs the plugin `score` (pinned by the test), retried on the
/// policy given, then `finish` completes.
fn journey(plugin: &str, config: &str, retry: &str) -> String {
    format!(
        r#"
name = "scoring"
terminal = ["done"]
[trigger]
event = "lead.created"
correlation_key = "lead"
[[steps]]
name = "score"
plugin = "{plugin}"
config = {config}
retry = {retry}
on = {{ scored = "finish" }}
[[steps]]
name = "finish"
plugin = "noop"
[[steps]]
name = "later"
plugin = "slow"
config = {{ sleep_ms = 3600000, next = "again" }}
on = {{ again = "finish" }}
"#
    )
    .replace(
        "on = { scored = \"finish\" }",
        "on = { scored = \"finish\", nap = \"later\" }",
    )
}

fn start(plugin: &str, config: &str, retry: &str) -> (tempfile::TempDir, Journeyd) {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), START_MS);
    for (name, fixture_name) in [
        ("score", "flaky"),
        ("score", "noop"),
        ("noop", "noop"),
        ("slow", "slow"),
    ] {
        let (status, body) = journeyd.push(name, fixture(fixture_name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let (status, body) = journeyd.deploy("scoring.toml", &journey(plugin, config, retry));
    assert_eq!(status, 201, "{body}");
    (data, journeyd)
}

fn send(journeyd: &Journeyd, n: usize) -> u64 {
    let (status, receipt) = journeyd.send_event(&json!({
        "id": format!("lead-{n}"), "type": "lead.created", "customer": format!("c-{n}"),
        "data": { "lead": format!("l-{n}") },
    }));
    assert_eq!(status, 202, "{receipt}");
    receipt["instances"][0].as_u64().expect("an instance")
}

fn view(journeyd: &Journeyd, id: u64) -> Value {
    journeyd.get(&format!("/v1/instances/i-{id}"))
}

/// The history entries of one type.
fn entries<'a>(view: &'a Value, kind: &str) -> Vec<&'a Value> {
    view["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|entry| entry["type"] == kind)
        .collect()
}

fn act(journeyd: &Journeyd, path: &str, body: Value) -> (u16, Value) {
    journeyd.request("POST", path, Some(body.to_string().into_bytes()))
}

#[test]
fn a_plugin_that_fails_twice_completes_on_its_third_attempt_on_the_policy_backoff() {
    let (_data, journeyd) = start(
        "score@1",
        r#"{ fail_attempts = 2, next = "scored" }"#,
        r#"{ attempts = 3, backoff = "exponential", initial = "10s", max = "1m" }"#,
    );
    let id = send(&journeyd, 1);
    journeyd.advance_clock_by(0);
    let first = view(&journeyd, id);
    assert_eq!(first["status"], "waiting", "{first:#}");
    let failed = entries(&first, "step_failed");
    assert_eq!(failed.len(), 1, "{first:#}");
    assert_eq!(failed[0]["attempt"], 1);
    assert_eq!(failed[0]["retry_at_ms"], START_MS + 10_000);
    assert!(
        failed[0]["outcome"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("attempt 1 failed"),
        "{first:#}"
    );
    assert_eq!(
        failed[0]["logs"][0]["message"], "attempt 1 fails on purpose",
        "a failed attempt keeps its log lines"
    );

    // Not a moment early: the retry waits on its timer.
    journeyd.advance_clock_by(9_999);
    assert_eq!(entries(&view(&journeyd, id), "step_failed").len(), 1);
    journeyd.advance_clock_by(1);
    let second = view(&journeyd, id);
    let failed = entries(&second, "step_failed");
    assert_eq!(failed.len(), 2, "{second:#}");
    assert_eq!(failed[1]["attempt"], 2);
    assert_eq!(
        failed[1]["retry_at_ms"],
        START_MS + 10_000 + 20_000,
        "the wait doubles"
    );

    journeyd.advance_clock_by(20_000);
    let done = view(&journeyd, id);
    assert_eq!(done["status"], "completed", "{done:#}");
    let ran = entries(&done, "step_ran");
    assert_eq!(ran[0]["step"], "score");
    assert_eq!(ran[0]["attempt"], 3, "{done:#}");
    let keys: Vec<&Value> = entries(&done, "step_failed")
        .into_iter()
        .chain([ran[0]])
        .map(|entry| &entry["idempotency_key"])
        .collect();
    assert!(
        keys.iter().all(|key| *key == keys[0]),
        "every attempt has the first one's idempotency key: {keys:?}"
    );
}

#[test]
fn a_plugin_that_always_fails_ends_failed_and_a_retry_onto_a_fixed_version_completes_it() {
    let (_data, journeyd) = start(
        "score@1",
        r#"{ fail_attempts = 1000, next = "scored" }"#,
        r#"{ attempts = 3, initial = "1s" }"#,
    );
    let ids: Vec<u64> = (0..2).map(|n| send(&journeyd, n)).collect();
    journeyd.advance_clock_by(0);
    journeyd.advance_clock_by(1_000);
    journeyd.advance_clock_by(2_000);
    for id in &ids {
        let failed = view(&journeyd, *id);
        assert_eq!(failed["status"], "failed", "{failed:#}");
        let attempts: Vec<&Value> = entries(&failed, "step_failed")
            .into_iter()
            .chain(entries(&failed, "step_ran"))
            .map(|entry| &entry["attempt"])
            .collect();
        assert_eq!(
            attempts,
            [1, 2, 3],
            "every attempt is in history: {failed:#}"
        );
        let failure = failed["failure"].as_str().expect("a reason");
        assert!(
            failure.contains("step `score`, attempt 3") && failure.contains("attempt 3 failed"),
            "{failure}"
        );
    }

    // The CLI counts what a bulk retry would touch, and changes nothing.
    let output = journeyd
        .cli()
        .args(["instance", "retry", "--journey"])
        .args(["scoring", "--step", "score", "--dry-run"])
        .output()
        .expect("journeyd runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("would apply to 2 instances"), "{printed}");
    assert_eq!(view(&journeyd, ids[0])["status"], "failed");

    // One retried by hand onto version 2 (the fixed plugin) ...
    let (status, body) = act(
        &journeyd,
        &format!("/v1/instances/i-{}/retry", ids[0]),
        json!({ "plugin": "score@2", "reason": "fixed in v2" }),
    );
    assert_eq!(status, 200, "{body}");
    journeyd.advance_clock_by(0);
    let retried = view(&journeyd, ids[0]);
    assert_eq!(retried["status"], "completed", "{retried:#}");
    let operator = entries(&retried, "retried");
    assert_eq!(operator[0]["plugin"], "score@2");
    assert_eq!(operator[0]["reason"], "fixed in v2");
    let last_score = entries(&retried, "step_ran")
        .into_iter()
        .rfind(|entry| entry["step"] == "score")
        .expect("score ran again");
    assert_eq!(
        (&last_score["plugin_version"], &last_score["attempt"]),
        (&json!(2), &json!(1)),
        "a retry is a new step execution: {retried:#}"
    );

    // ... the other in bulk, with the CLI.
    let output = journeyd
        .cli()
        .args(["instance", "retry", "--journey"])
        .args(["scoring", "--plugin", "score@2"])
        .output()
        .expect("journeyd runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("1 of 1 instances of scoring: i-{}", ids[1])),
        "{printed}"
    );
    journeyd.advance_clock_by(0);
    assert_eq!(view(&journeyd, ids[1])["status"], "completed");
}

#[test]
fn operators_skip_and_cancel_instances_and_refuse_what_does_not_apply() {
    let (_data, journeyd) = start("score@1", r#"{ fail_attempts = 1000 }"#, "{ attempts = 1 }");
    let ids: Vec<u64> = (0..3).map(|n| send(&journeyd, n)).collect();
    journeyd.advance_clock_by(0);
    for id in &ids {
        assert_eq!(view(&journeyd, *id)["status"], "failed");
    }
    let (status, dry) = act(
        &journeyd,
        "/v1/journeys/scoring/instances/cancel",
        json!({ "step": "score", "dry_run": true }),
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (
            dry["matched"].as_u64(),
            dry["changed"].as_array().map(Vec::len)
        ),
        (Some(3), Some(0))
    );
    assert_eq!(
        view(&journeyd, ids[0])["status"],
        "failed",
        "a dry run changes nothing"
    );

    // Skip one to a later step: it continues there.
    let (status, body) = act(
        &journeyd,
        &format!("/v1/instances/i-{}/skip", ids[0]),
        json!({ "to": "later" }),
    );
    assert_eq!(status, 200, "{body}");
    journeyd.advance_clock_by(0);
    let skipped = view(&journeyd, ids[0]);
    assert_eq!(skipped["status"], "waiting", "{skipped:#}");
    assert_eq!(entries(&skipped, "skipped")[0]["to_step"], "later");
    // Cancel it while it sleeps: its timer never wakes it.
    let (status, body) = act(
        &journeyd,
        &format!("/v1/instances/i-{}/cancel", ids[0]),
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    journeyd.advance_clock_by(2 * 3_600_000);
    let cancelled = view(&journeyd, ids[0]);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert!(entries(&cancelled, "woke").is_empty(), "{cancelled:#}");

    // Skip another straight to a terminal state: it completes.
    let (status, body) = act(
        &journeyd,
        &format!("/v1/instances/i-{}/skip", ids[1]),
        json!({ "to": "done", "reason": "scored by hand" }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["status"], "completed", "{body}");

    // Bulk cancel takes what is left at the step.
    let (status, bulk) = act(
        &journeyd,
        "/v1/journeys/scoring/instances/cancel",
        json!({ "step": "score" }),
    );
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(bulk["changed"], json!([ids[2]]), "{bulk}");
    assert_eq!(view(&journeyd, ids[2])["status"], "cancelled");

    // What does not apply is refused, by name, and changes nothing.
    for (path, body, code) in [
        (
            format!("/v1/instances/i-{}/retry", ids[1]),
            json!({}),
            "invalid_action",
        ),
        (
            format!("/v1/instances/i-{}/cancel", ids[2]),
            json!({}),
            "invalid_action",
        ),
        (
            format!("/v1/instances/i-{}/skip", ids[2]),
            json!({ "to": "nowhere" }),
            "invalid_action",
        ),
        (
            "/v1/journeys/scoring/instances/skip".into(),
            json!({ "to": "nowhere" }),
            "unknown_step",
        ),
        (
            format!("/v1/instances/i-{}/explode", ids[2]),
            json!({}),
            "not_found",
        ),
        (
            format!("/v1/instances/i-{}/retry", ids[2]),
            json!({ "plugin": "nothing@9" }),
            "unknown_plugin",
        ),
    ] {
        let (status, answer) = act(&journeyd, &path, body);
        assert!(status >= 400, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{path}: {answer}");
    }
    assert_eq!(view(&journeyd, ids[1])["status"], "completed");
    assert_eq!(view(&journeyd, ids[2])["status"], "cancelled");
}

#[test]
fn a_retried_instance_is_active_again_for_single_reentry() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_simulated(data.path(), START_MS);
    for (name, fixture_name) in [
        ("score", "flaky"),
        ("score", "noop"),
        ("noop", "noop"),
        ("slow", "slow"),
    ] {
        let (status, body) = journeyd.push(name, fixture(fixture_name));
        assert_eq!(status, 201, "push {name}: {body}");
    }
    let single = journey("score@1", r#"{ fail_attempts = 1000 }"#, "{ attempts = 1 }")
        .replace("[trigger]", "[entry]\nreentry = \"single\"\n\n[trigger]");
    let (status, body) = journeyd.deploy("scoring.toml", &single);
    assert_eq!(status, 201, "{body}");
    let first = send(&journeyd, 1);
    journeyd.advance_clock_by(0);
    assert_eq!(view(&journeyd, first)["status"], "failed");
    // Retried onto a plugin that sleeps, it is active again ...
    let (status, body) = act(
        &journeyd,
        &format!("/v1/instances/i-{first}/skip"),
        json!({ "to": "later" }),
    );
    assert_eq!(status, 200, "{body}");
    journeyd.advance_clock_by(0);
    assert_eq!(view(&journeyd, first)["status"], "waiting");
    // ... so the same customer does not enter a second time.
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "lead-again", "type": "lead.created", "customer": "c-1",
        "data": { "lead": "l-again" },
    }));
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["instances"], json!([]), "{receipt}");
    assert!(
        receipt["skipped"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("instance i-{first} is still active")),
        "{receipt}"
    );
}
