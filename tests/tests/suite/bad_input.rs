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

#[test]
fn every_malformed_request_is_refused_in_one_json_shape_and_changes_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();
    let (status, body) = journeyd.set_tag("classify", "stable", &json!({ "version": 1 }));
    assert_eq!(status, 200, "{body}");
    let event = |data: &str| {
        format!(r#"{{"id":"bad-1","type":"enquiry.received","customer":"c-ada","data":{data}}}"#)
            .into_bytes()
    };
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let wrapping = enquiry_source()
        .replacen("[[steps]]", "[[steps]]\nname = \"pick\"\nsplit = { a = 4294967295, b = 101 }\non = { a = \"acknowledge\", b = \"acknowledge\" }\n\n[[steps]]", 1);
    let big_profile = format!(r#"{{"name": "{}"}}"#, "x".repeat(100 * 1024));
    // method, path, body, status, error code, what the message names.
    type Case<'a> = (&'a str, &'a str, Option<Vec<u8>>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "PUT",
            "/v1/plugins/classify/tags/stable",
            Some(b"[1]".to_vec()),
            400,
            "bad_body",
            "found an array",
        ),
        (
            "PUT",
            "/v1/plugins/classify/tags/stable",
            Some(br#"{"version": 2, "version": 1}"#.to_vec()),
            400,
            "bad_body",
            "`version` is given twice",
        ),
        (
            "POST",
            "/v1/events",
            Some(event(r#"{"enquiry_id": "q-1", "enquiry_id": "q-2"}"#)),
            400,
            "invalid_event",
            "`enquiry_id` is given twice",
        ),
        (
            "POST",
            "/v1/events",
            Some(event(&deep)),
            400,
            "invalid_event",
            "nested deeper than 64 levels",
        ),
        (
            "POST",
            "/v1/events",
            Some(event(r#"{"enquiry_id": 1e400}"#)),
            400,
            "invalid_event",
            "number out of range",
        ),
        (
            "POST",
            "/v1/events",
            Some(event(r#"{"enquiry_id": "\ud800"}"#)),
            400,
            "invalid_event",
            "escape",
        ),
        (
            "GET",
            "/v1/customers/c-ada%00",
            None,
            400,
            "invalid_id",
            "customer id",
        ),
        (
            "GET",
            "/v1/customers/c-nobody",
            None,
            404,
            "unknown_customer",
            "`c-nobody`",
        ),
        (
            "GET",
            "/v1/plugins/bad%20name",
            None,
            400,
            "invalid_id",
            "plugin name",
        ),
        (
            "GET",
            "/v1/plugins/nothing",
            None,
            404,
            "unknown_plugin",
            "`nothing`",
        ),
        (
            "GET",
            "/v1/journeys/bad%20name/funnel",
            None,
            400,
            "invalid_id",
            "journey",
        ),
        (
            "GET",
            "/v1/journeys/nothing/migrations",
            None,
            404,
            "unknown_journey",
            "`nothing`",
        ),
        (
            "GET",
            "/v1/instances?journey=nothing",
            None,
            404,
            "unknown_journey",
            "`nothing`",
        ),
        (
            "DELETE",
            "/v1/events",
            None,
            405,
            "method_not_allowed",
            "does not take DELETE",
        ),
        (
            "GET",
            "/v1/instances?status=bogus",
            None,
            400,
            "bad_query",
            "unknown variant `bogus`",
        ),
        (
            "GET",
            "/v1/instances/%FF",
            None,
            400,
            "bad_path",
            "Invalid UTF-8",
        ),
        (
            "PUT",
            "/v1/customers/c-big",
            Some(big_profile.into_bytes()),
            413,
            "body_too_large",
            "limit of 65536 bytes",
        ),
        (
            "POST",
            "/v1/journeys?file=split.toml",
            Some(wrapping.into_bytes()),
            422,
            "journey_invalid_split",
            "add up to 4294967396",
        ),
        (
            "GET",
            "/v1/no/such/route",
            None,
            404,
            "not_found",
            "no such route",
        ),
    ];
    for (method, path, body, status, code, mention) in cases {
        let (got, answer) = journeyd.request(method, path, body);
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{method} {path}: {answer}"
        );
        assert!(
            error_message(&answer).contains(mention),
            "{method} {path}: `{mention}` missing in {answer}"
        );
    }
    // Nothing changed: the tag, the instances, the customers, the journeys.
    let tags = journeyd.get("/v1/plugins/classify")["tags"].clone();
    assert_eq!(tags[0]["version"], 1, "{tags}");
    assert_eq!(journeyd.get("/v1/instances")["instances"], json!([]));
    let (status, _) = journeyd.request("GET", "/v1/customers/c-big", None);
    assert_eq!(status, 404);
    assert_eq!(
        journeyd.get("/v1/journeys")["journeys"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn the_cli_keeps_every_id_and_name_one_path_segment() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();
    let file = data.path().join("customers.json");
    std::fs::write(
        &file,
        json!({ "c-victim?note=1": { "name": "Mallory" }, "c-a/b": { "name": "Slash" } })
            .to_string(),
    )
    .expect("write customers");
    let (status, body) = journeyd.put_customer("c-victim", &json!({ "name": "Victim" }));
    assert_eq!(status, 200, "{body}");
    let cli = |args: &[&str]| journeyd.cli().args(args).output().expect("journeyd runs");
    let imported = cli(&["customer", "import", file.to_str().expect("a path")]);
    assert!(imported.status.success(), "{imported:?}");
    assert_eq!(
        journeyd.get("/v1/customers/c-victim")["profile"]["name"],
        "Victim"
    );
    assert_eq!(
        journeyd.get("/v1/customers/c-victim%3Fnote%3D1")["profile"]["name"],
        "Mallory"
    );
    assert_eq!(
        journeyd.get("/v1/customers/c-a%2Fb")["profile"]["name"],
        "Slash"
    );

    let component = data.path().join("other.wasm");
    std::fs::write(&component, plugin("classify")).expect("write component");
    let pushed = cli(&[
        "plugin",
        "push",
        "classify?v=2",
        component.to_str().expect("a path"),
    ]);
    assert!(!pushed.status.success(), "{pushed:?}");
    let said = String::from_utf8_lossy(&pushed.stderr);
    assert!(
        said.contains("plugin name `classify?v=2` is invalid"),
        "{said}"
    );
    let versions = journeyd.get("/v1/plugins/classify")["versions"].clone();
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
}
