//! Hot-swapping a step's plugin through a real journeyd while enquiries
//! keep flowing: retags, a canary that fails and is rolled back on its own,
//! and a history that names the digest that ran at every step.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use journey_tests::{Journeyd, enquiry, fixture, plugin, with_custom_section};
use serde_json::{Value, json};

/// Sends enquiries until stopped; returns the instances they started.
fn keep_sending(
    journeyd: Arc<Journeyd>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut started = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let (status, receipt) = journeyd.send_event(&enquiry(
                &format!("evt-{n}"),
                if n % 2 == 0 { "c-ada" } else { "c-grace" },
                &format!("q-{n}"),
                "I was charged twice, please refund the duplicate payment",
            ));
            assert_eq!(status, 202, "{receipt}");
            started.push(receipt["instances"][0].as_u64().expect("an instance"));
            std::thread::sleep(Duration::from_millis(5));
        }
        started
    })
}

/// Longest a tag change's flush may take between its timestamp and the
/// moment steps see it.
const FLUSH_GRACE_MS: u64 = 50;

fn tag(journeyd: &Journeyd, body: Value) -> Value {
    let (status, answer) = journeyd.set_tag("classify", "stable", &body);
    assert_eq!(status, 200, "{answer}");
    answer
}

fn push(journeyd: &Journeyd, bytes: Vec<u8>) -> (u64, String) {
    let (status, pushed) = journeyd.push("classify", bytes);
    assert_eq!(status, 201, "{pushed}");
    (
        pushed["version"].as_u64().expect("version"),
        pushed["digest"].as_str().expect("digest").to_owned(),
    )
}

#[test]
fn swapping_a_step_under_load_loses_no_journey_and_history_names_every_digest() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Arc::new(Journeyd::start(data.path()));
    journeyd.setup_enquiry_with(
        |journeyd| {
            tag(journeyd, json!({ "version": 1 }));
        },
        // No retries: an instance whose classify ran the trapping canary
        // fails, so the failures the rollback rule counts are visible.
        |source| {
            source.replace(
                r#"plugin = "classify""#,
                "plugin = \"classify:stable\"\nretry = { attempts = 1 }",
            )
        },
    );
    let (v2, _) = push(
        &journeyd,
        with_custom_section(plugin("classify"), "build", b"2"),
    );
    // The canary: a classify that traps on every run.
    let (v3, trap_digest) = push(&journeyd, fixture("trap"));

    let stop = Arc::new(AtomicBool::new(false));
    let sender = keep_sending(journeyd.clone(), stop.clone());
    let pause = || std::thread::sleep(Duration::from_millis(300));

    pause();
    for version in [v2, 1, v2] {
        tag(&journeyd, json!({ "version": version }));
        pause();
    }
    tag(
        &journeyd,
        json!({
            "version": v2,
            "canary": {
                "version": v3,
                "percent": 50,
                "rollback": { "max_error_rate": 0.5, "min_runs": 5 },
            },
        }),
    );
    let rolled_back = journeyd.eventually(Duration::from_secs(20), |journeyd| {
        let plugin = journeyd.get("/v1/plugins/classify");
        plugin["tags"][0]["canary"].is_null()
    });
    assert!(rolled_back, "the failing canary was rolled back on its own");
    pause();
    stop.store(true, Ordering::Relaxed);
    let started = sender.join().expect("the sender finished");
    assert!(
        started.len() > 100,
        "only {} enquiries were sent",
        started.len()
    );

    let plugin_view = journeyd.get("/v1/plugins/classify");
    let changes = plugin_view["tag_changes"].as_array().expect("tag changes");
    let last = changes.last().expect("the rollback is recorded");
    let reason = last["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("automatic rollback"), "{reason}");
    assert_eq!(last["version"], v2);
    let trap_version = plugin_view["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|version| version["version"] == v3)
        .expect("the canary version");
    assert!(trap_version["runs"].as_u64().expect("runs") >= 5);
    assert_eq!(trap_version["runs"], trap_version["failures"]);

    // Which digest each plugin version has, and where the tag pointed when.
    let digests: HashMap<(String, u64), String> = journeyd.get("/v1/plugins")["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|version| {
            (
                (
                    version["name"].as_str().expect("name").to_owned(),
                    version["version"].as_u64().expect("version"),
                ),
                version["digest"].as_str().expect("digest").to_owned(),
            )
        })
        .collect();
    let (mut completed, mut failed) = (0, 0);
    for id in started {
        let view = journeyd.wait_instance(id, Duration::from_secs(30));
        match view["status"].as_str() {
            Some("completed") => completed += 1,
            Some("failed") => {
                failed += 1;
                let failure = view["failure"].as_str().expect("a reason");
                assert!(failure.starts_with("step `classify`"), "{failure}");
            }
            _ => panic!("instance i-{id} is stuck: {view:#}"),
        }
        for entry in view["history"].as_array().expect("history") {
            if entry["type"] != "step_ran" {
                continue;
            }
            let name = entry["plugin"].as_str().expect("plugin").to_owned();
            let version = entry["plugin_version"].as_u64().expect("version");
            assert_eq!(
                entry["digest"].as_str(),
                digests.get(&(name, version)).map(String::as_str),
                "i-{id}: the history names the digest of the version that ran"
            );
            if entry["step"] == "classify" {
                let at = entry["at_ms"].as_u64().expect("start time");
                // What the tag allowed when the step started. A change is
                // stamped, then flushed, then takes effect, so a step that
                // started within the flush after a change may still run
                // what the tag allowed just before it.
                let mut allowed = Vec::new();
                for (index, change) in changes.iter().enumerate() {
                    let from = change["changed_at_ms"].as_u64().expect("time");
                    let until = changes
                        .get(index + 1)
                        .and_then(|next| next["changed_at_ms"].as_u64())
                        .map_or(u64::MAX, |next| next + FLUSH_GRACE_MS);
                    if (from..=until).contains(&at) {
                        allowed.push(change["version"].as_u64().expect("version"));
                        allowed.extend(change["canary"]["version"].as_u64());
                    }
                }
                assert!(
                    allowed.contains(&version),
                    "i-{id}: classify ran v{version} at {at} while the tag allowed {allowed:?}"
                );
                if version == v3 {
                    assert_eq!(entry["digest"].as_str(), Some(trap_digest.as_str()));
                }
            }
        }
    }
    assert!(
        completed > 0 && failed >= 5,
        "{completed} completed, {failed} failed"
    );
}

#[test]
fn bad_tag_changes_are_refused_and_change_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    for name in ["acknowledge", "classify", "handover", "resolve"] {
        let (status, body) = journeyd.push(name, plugin(name));
        assert_eq!(status, 201, "{body}");
    }
    push(
        &journeyd,
        with_custom_section(plugin("classify"), "build", b"2"),
    );
    assert_eq!(tag(&journeyd, json!({ "version": 1 }))["version"], 1);

    let cases = [
        (
            "classify",
            json!({ "version": 7 }),
            422,
            "unknown_plugin_version",
            "no version 7",
        ),
        (
            "classify",
            json!({ "version": 1, "canary": { "version": 9, "percent": 10 } }),
            422,
            "unknown_plugin_version",
            "no version 9",
        ),
        (
            "classify",
            json!({ "version": 1, "canary": { "version": 2, "percent": 101 } }),
            422,
            "invalid_tag",
            "0 to 100",
        ),
        (
            "classify",
            json!({ "version": 1, "canary": { "version": 1, "percent": 10 } }),
            422,
            "invalid_tag",
            "already points at",
        ),
        (
            "classify",
            json!({ "version": 1, "canary": { "version": 2, "percent": 5,
                    "rollback": { "max_error_rate": 2.0, "min_runs": 5 } } }),
            422,
            "invalid_tag",
            "max_error_rate",
        ),
        (
            "nothing",
            json!({ "version": 1 }),
            404,
            "unknown_plugin",
            "nothing",
        ),
        (
            "classify",
            json!({ "versoin": 1 }),
            400,
            "bad_body",
            "versoin",
        ),
    ];
    for (plugin_name, body, status, code, says) in cases {
        let (got, answer) = journeyd.set_tag(plugin_name, "stable", &body);
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{message}");
    }
    let (status, answer) =
        journeyd.request("POST", "/v1/plugins/classify/tags/stable/rollback", None);
    assert_eq!(status, 422, "no rollout to roll back: {answer}");

    let view = journeyd.get("/v1/plugins/classify");
    assert_eq!(view["tags"][0]["version"], 1, "nothing changed: {view:#}");
    assert!(view["tags"][0]["canary"].is_null());
    assert_eq!(view["tag_changes"].as_array().map(Vec::len), Some(1));

    let missing_tag = include_str!("../../../examples/enquiry/journey.toml")
        .replace(r#"plugin = "classify""#, r#"plugin = "classify:canary""#);
    let (status, answer) = journeyd.deploy("journey.toml", &missing_tag);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "journey_unknown_plugin");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(message.contains("classify:canary"), "{message}");
}

fn gauge(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

#[test]
fn a_restart_loads_every_plugin_version_from_the_compiled_code_cache() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start_with_own_cache(data.path());
    for name in ["acknowledge", "classify"] {
        let (status, body) = journeyd.push(name, plugin(name));
        assert_eq!(status, 201, "{body}");
    }
    push(
        &journeyd,
        with_custom_section(plugin("classify"), "build", b"2"),
    );
    journeyd.kill();

    let journeyd = Journeyd::start_with_own_cache(data.path());
    let (status, metrics) = journeyd.request("GET", "/metrics", None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("Prometheus text");
    assert_eq!(
        gauge(metrics, "journeyd_start_plugins_from_cache"),
        Some(3),
        "{metrics}"
    );
    assert_eq!(gauge(metrics, "journeyd_start_plugins_compiled"), Some(0));
}
