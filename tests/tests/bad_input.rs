//! Bad input gets a clear error naming what is wrong, and changes nothing;
//! hostile plugins fail their own step, never the runtime.

use std::time::Duration;

use journey_tests::{ENQUIRY_PLUGINS, Journeyd, enquiry, fixture, plugin, workspace};
use serde_json::{Value, json};

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("<no message>")
}

fn enquiry_source() -> String {
    std::fs::read_to_string(workspace().join("examples/enquiry/journey.toml"))
        .expect("example journey")
}

#[test]
fn malformed_journeys_are_rejected_with_file_step_and_field_and_nothing_is_deployed() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    for name in ENQUIRY_PLUGINS {
        assert_eq!(journeyd.push(name, plugin(name)).0, 201);
    }
    let valid = enquiry_source();
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "unknown plugin",
            valid.replacen("plugin = \"classify\"", "plugin = \"clasify\"", 1),
            "journey_unknown_plugin",
            vec!["bad.toml", "`classify`", "`clasify`"],
        ),
        (
            "dangling transition",
            valid.replacen("classified = \"handover\"", "classified = \"handoff\"", 1),
            "journey_dangling_transition",
            vec!["bad.toml", "`classify`", "`classified`", "`handoff`"],
        ),
        (
            "unreachable step",
            valid.replacen("sent = \"classify\"", "sent = \"handover\"", 1),
            "journey_unreachable_step",
            vec!["bad.toml", "`classify`"],
        ),
        (
            "missing field",
            valid.replacen("plugin = \"resolve\"\n", "", 1),
            "journey_syntax",
            vec!["bad.toml", "missing field `plugin`"],
        ),
        (
            "duplicate step name",
            valid.replacen("name = \"resolve\"", "name = \"classify\"", 1),
            "journey_duplicate_step",
            vec!["bad.toml", "`classify`"],
        ),
        (
            "exit rule on an event kind the journey does not declare",
            valid.replacen(
                "event = \"enquiry.withdrawn\"",
                "event = \"enquiry.withdrawm\"",
                1,
            ),
            "journey_unknown_exit_event",
            vec!["bad.toml", "`enquiry.withdrawm`", "enquiry.withdrawn"],
        ),
        (
            "entry condition with two tests",
            valid.replacen(
                "[trigger]",
                "[entry]\nsegment = [{ attribute = \"tier\", in = [\"gold\"], not_in = [\"free\"] }]\n\n[trigger]",
                1,
            ),
            "journey_invalid_condition",
            vec!["bad.toml", "entry.segment[0]", "exactly one of"],
        ),
        (
            "not TOML",
            "name = ".into(),
            "journey_syntax",
            vec!["bad.toml", "line 1"],
        ),
    ];
    for (case, source, code, mentions) in cases {
        let (status, body) = journeyd.deploy("bad.toml", &source);
        assert_eq!(status, 422, "{case}: {body}");
        assert_eq!(error_code(&body), code, "{case}: {body}");
        for mention in mentions {
            assert!(
                error_message(&body).contains(mention),
                "{case}: `{mention}` missing in {body}"
            );
        }
    }
    assert_eq!(
        journeyd.get("/v1/journeys")["journeys"],
        json!([]),
        "nothing was deployed"
    );
}

#[test]
fn malformed_events_are_rejected_and_start_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();

    let post = |body: Vec<u8>| journeyd.request("POST", "/v1/events", Some(body));
    let (status, body) = post(b"{\"id\": \"e1\", \"type\": ".to_vec());
    assert_eq!(
        (status, error_code(&body)),
        (400, "invalid_event"),
        "{body}"
    );

    let (status, body) = post(br#"{"id":"e2","type":"enquiry.received","data":{}}"#.to_vec());
    assert_eq!(
        (status, error_code(&body)),
        (400, "invalid_event"),
        "{body}"
    );
    assert!(
        error_message(&body).contains("missing field `customer`"),
        "{body}"
    );

    let mut no_key = enquiry("e3", "c-ada", "q", "text");
    no_key["data"]
        .as_object_mut()
        .expect("data")
        .remove("enquiry_id");
    let (status, body) = journeyd.send_event(&no_key);
    assert_eq!(
        (status, error_code(&body)),
        (422, "missing_correlation_key"),
        "{body}"
    );
    assert!(error_message(&body).contains("data.enquiry_id"), "{body}");

    let mut unknown = enquiry("e4", "c-ada", "q", "text");
    unknown["type"] = json!("enquiry.teleported");
    let (status, body) = journeyd.send_event(&unknown);
    assert_eq!(
        (status, error_code(&body)),
        (422, "unknown_event_type"),
        "{body}"
    );
    assert!(
        error_message(&body).contains("enquiry.teleported"),
        "{body}"
    );

    let huge = enquiry("e5", "c-ada", "q", &"x".repeat(100 * 1024));
    let (status, body) = journeyd.send_event(&huge);
    assert_eq!(
        (status, error_code(&body)),
        (413, "body_too_large"),
        "{body}"
    );

    let all = journeyd.get("/v1/instances");
    assert_eq!(all["instances"], json!([]), "no instance was started");
    // A rejected id was never recorded: it can be sent again, correctly.
    let (status, body) = journeyd.send_event(&enquiry("e3", "c-ada", "q-3", "refund please"));
    assert_eq!(status, 202, "{body}");
}

#[test]
fn files_that_are_not_step_components_are_refused_by_name() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());

    let (status, body) = journeyd.push("junk", b"#!/bin/sh\necho hi\n".to_vec());
    assert_eq!(
        (status, error_code(&body)),
        (422, "invalid_plugin"),
        "{body}"
    );
    assert!(
        error_message(&body).contains("not a WebAssembly binary"),
        "{body}"
    );

    // The smallest valid core module: header only.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let (status, body) = journeyd.push("core", core_module);
    assert_eq!(status, 422, "{body}");
    assert!(
        error_message(&body).contains("core WebAssembly module, not a component"),
        "{body}"
    );

    let (status, body) = journeyd.push("greeter", fixture("wrong-world"));
    assert_eq!(status, 422, "{body}");
    assert!(
        error_message(&body).contains("journey:plugin/step@0.2.0"),
        "{body}"
    );
    assert!(
        error_message(&body).contains("fixture:greeter/greet@0.1.0"),
        "{body}"
    );

    assert_eq!(
        journeyd.get("/v1/plugins")["plugins"],
        json!([]),
        "nothing was stored"
    );
}

const HOSTILE_JOURNEY: &str = r#"
name = "hostile"
[trigger]
event = "hostile.run"
correlation_key = "run"
[[steps]]
name = "misbehave"
plugin = "PLUGIN"
timeout_ms = 300
"#;

#[test]
fn a_plugin_that_traps_spins_or_hoards_memory_fails_only_its_own_step() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start_with(data.path(), &["--step-memory-mib", "16"]);
    journeyd.setup_enquiry();
    let cases = [
        ("trap", "plugin trapped"),
        ("spin", "ran past its 300 ms deadline"),
        ("memory-hog", "exceeded its memory limit of 16 MiB"),
    ];
    let mut started = Vec::new();
    for (fixture_name, _) in cases {
        let (status, body) = journeyd.push(fixture_name, fixture(fixture_name));
        assert_eq!(status, 201, "{body}");
        let journey = HOSTILE_JOURNEY
            .replace("hostile", &format!("hostile-{fixture_name}"))
            .replace("PLUGIN", fixture_name);
        let (status, body) = journeyd.deploy(&format!("{fixture_name}.toml"), &journey);
        assert_eq!(status, 201, "{body}");
        let (status, body) = journeyd.send_event(&json!({
            "id": format!("run-{fixture_name}"),
            "type": format!("hostile-{fixture_name}.run"),
            "customer": "c-ada",
            "data": { "run": fixture_name },
        }));
        assert_eq!(status, 202, "{body}");
        started.push(body["instances"][0].as_u64().expect("instance"));
    }
    // Healthy journeys run alongside the hostile ones.
    let (_, healthy) =
        journeyd.send_event(&enquiry("evt-ok", "c-grace", "q-ok", "where is my parcel"));
    let healthy = healthy["instances"][0].as_u64().expect("instance");

    for ((fixture_name, reason), id) in cases.iter().zip(started) {
        let view = journeyd.wait_instance(id, Duration::from_secs(30));
        assert_eq!(view["status"], "failed", "{fixture_name}: {view:#}");
        let failure = view["failure"].as_str().expect("failure reason");
        assert!(failure.contains(reason), "{fixture_name}: {failure}");
        let step = &view["history"][1];
        assert_eq!(step["outcome"]["kind"], "fail", "{fixture_name}: {step:#}");
        assert!(step["digest"].as_str().is_some_and(|d| d.len() == 64));
        assert_eq!(
            view["messages"],
            json!([]),
            "{fixture_name}: effects of a failed attempt are dropped"
        );
    }
    let view = journeyd.wait_instance(healthy, Duration::from_secs(30));
    assert_eq!(view["status"], "completed", "{view:#}");
    assert_eq!(journeyd.get("/healthz")["status"], "ok");
}
