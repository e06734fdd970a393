//! Plugins in Python and JavaScript: components built with the default
//! options of `componentize-py` and `componentize-js` push and run with
//! every effect committed, a Python step that reaches for a file, a socket
//! or the environment finds nothing there and fails its step (never the
//! runtime), and a refused push names every unmet import with its fix.

use std::time::Duration;

use journey_tests::{Journeyd, interpreted_fixture};
use serde_json::{Value, json};

/// How many `greeted` interactions `customer`'s history holds.
fn greetings_noted(journeyd: &Journeyd, customer: &str) -> usize {
    journeyd.get(&format!("/v1/customers/{customer}"))["interactions"]
        .as_array()
        .expect("interactions")
        .iter()
        .filter(|interaction| interaction["kind"] == "greeted")
        .count()
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("<no message>")
}

#[test]
fn python_and_javascript_steps_from_default_builds_run_with_every_effect_committed() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let mut digests = Vec::new();
    for (name, fixture) in [("greet-py", "py_greet"), ("greet-js", "js_greet")] {
        let (status, body) = journeyd.push(name, interpreted_fixture(fixture));
        assert_eq!(status, 201, "{name}: {body}");
        digests.push(body["digest"].as_str().expect("digest").to_owned());
    }
    let (status, body) = journeyd.deploy(
        "greetings.toml",
        r#"
name = "greetings"
terminal = ["done"]
[trigger]
event = "visit.started"
correlation_key = "visit"
[[steps]]
name = "python"
plugin = "greet-py"
config = { channel = "email", then = "next" }
on = { next = "javascript" }
[[steps]]
name = "javascript"
plugin = "greet-js"
config = { channel = "sms" }
"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.put_customer("c-ada", &json!({ "name": "Ada" }));
    assert!(status < 300, "{body}");
    let (status, receipt) = journeyd.send_event(&json!({
        "id": "visit-1", "type": "visit.started", "customer": "c-ada", "data": { "visit": "v1" },
    }));
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("an instance");
    let view = journeyd.wait_instance(id, Duration::from_secs(30));
    assert_eq!(view["status"], "completed", "{view:#}");

    // State: the JavaScript step read what the Python step returned.
    assert_eq!(view["state"]["visits"], 2, "{view:#}");
    assert_eq!(view["state"]["language"], "javascript", "{view:#}");
    // Messages: one per step, on the configured channels, ids as returned.
    let messages = view["messages"].as_array().expect("messages");
    let bodies: Vec<(&str, &str)> = messages
        .iter()
        .map(|message| {
            (
                message["channel"].as_str().unwrap_or_default(),
                message["body"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        bodies,
        [
            ("email", "Hello Ada from Python (visit 1)"),
            ("sms", "Hello Ada from JavaScript (visit 2)"),
        ],
        "{view:#}"
    );
    assert_eq!(view["state"]["message"], messages[1]["id"], "{view:#}");
    // The timeline names the digest that ran each step and keeps the logs.
    let steps: Vec<&Value> = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|entry| entry["digest"].is_string())
        .collect();
    assert_eq!(steps.len(), 2, "{view:#}");
    for (entry, digest) in steps.iter().zip(&digests) {
        assert_eq!(
            entry["digest"]
                .as_str()
                .map(|d| d.trim_start_matches("sha256:")),
            Some(digest.trim_start_matches("sha256:")),
            "{entry:#}"
        );
        let logs = entry["logs"].to_string();
        assert!(logs.contains("greeted c-ada with"), "{entry:#}");
    }
    // Notes reached the customer's history, one per step.
    assert_eq!(greetings_noted(&journeyd, "c-ada"), 2);
}

#[test]
fn a_python_step_reaching_for_a_file_a_socket_or_the_environment_finds_nothing_and_fails_alone() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let (status, body) = journeyd.push("hostile", interpreted_fixture("py_hostile"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.push("greet", interpreted_fixture("py_greet"));
    assert_eq!(status, 201, "{body}");
    for attempt in ["file", "socket", "env"] {
        let (status, body) = journeyd.deploy(
            &format!("{attempt}.toml"),
            &format!(
                r#"
name = "reach-{attempt}"
[trigger]
event = "reach-{attempt}.run"
correlation_key = "run"
[[steps]]
name = "reach"
plugin = "hostile"
config = {{ try = "{attempt}" }}
retry = {{ attempts = 1 }}
"#
            ),
        );
        assert_eq!(status, 201, "{attempt}: {body}");
    }
    let (status, body) = journeyd.deploy(
        "healthy.toml",
        r#"
name = "healthy"
[trigger]
event = "healthy.run"
correlation_key = "run"
[[steps]]
name = "greet"
plugin = "greet"
"#,
    );
    assert_eq!(status, 201, "{body}");
    let mut started = Vec::new();
    for kind in ["reach-file", "reach-socket", "reach-env", "healthy"] {
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("{kind}-1"), "type": format!("{kind}.run"),
            "customer": "c-1", "data": { "run": "1" },
        }));
        assert_eq!(status, 202, "{kind}: {receipt}");
        started.push((kind, receipt["instances"][0].as_u64().expect("instance")));
    }
    for (kind, id) in started {
        let view = journeyd.wait_instance(id, Duration::from_secs(30));
        match kind {
            "reach-file" | "reach-socket" => {
                assert_eq!(view["status"], "failed", "{kind}: {view:#}");
                assert_eq!(view["state"], json!({}), "{kind}: nothing leaked");
                // The plugin's own exception leads the reason.
                let failure = view["failure"].as_str().unwrap_or_default();
                let exception = if kind == "reach-file" {
                    "FileNotFoundError: [Errno 44] No such file or directory: '/etc/passwd'"
                } else {
                    "No module named 'socket'"
                };
                assert!(
                    failure.contains("plugin trapped: Traceback") && failure.contains(exception),
                    "{kind}: {failure}"
                );
            }
            // The environment is empty: nothing to leak.
            "reach-env" => {
                assert_eq!(view["status"], "completed", "{kind}: {view:#}");
                assert_eq!(view["state"]["leaked"], "{}", "{kind}: {view:#}");
            }
            _ => assert_eq!(view["status"], "completed", "{kind}: {view:#}"),
        }
    }
    assert_eq!(journeyd.get("/healthz")["status"], "ok");
}

#[test]
fn a_refused_push_names_every_unmet_import_and_the_contract_version() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());

    let (status, body) = journeyd.push("ledger", interpreted_fixture("py_extra-imports"));
    assert_eq!(status, 422, "{body}");
    let message = error_message(&body);
    for import in ["`acme:ledger/book@1.0.0`", "`acme:ledger/audit@1.0.0`"] {
        assert!(message.contains(import), "{import} not named: {message}");
    }

    let (status, body) = journeyd.push("old", interpreted_fixture("py_old-contract"));
    assert_eq!(status, 422, "{body}");
    let message = error_message(&body);
    assert!(
        message.contains("journey:plugin/step@0.1.0")
            && message.contains("built against journey:plugin 0.1.0")
            && message.contains("implements 0.2.0"),
        "{message}"
    );
    let (_, plugins) = journeyd.request("GET", "/v1/plugins", None);
    assert_eq!(
        plugins["plugins"],
        json!([]),
        "nothing was stored: {plugins}"
    );
}

#[test]
fn steps_written_with_the_python_and_javascript_sdks_send_remember_and_wait_for_a_reply() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let (status, body) = journeyd.put_customer("c-ada", &json!({ "name": "Ada" }));
    assert!(status < 300, "{body}");
    for (n, fixture) in ["py_sdk-greet", "js_sdk-greet"].into_iter().enumerate() {
        let (status, body) = journeyd.push(&format!("greet-{n}"), interpreted_fixture(fixture));
        assert_eq!(status, 201, "{fixture}: {body}");
        let (status, body) = journeyd.deploy(
            &format!("sdk-greet-{n}.toml"),
            &format!(
                r#"
name = "sdk-greet-{n}"
terminal = ["answered", "silent", "capped"]
[trigger]
event = "greeting-{n}.start"
correlation_key = "greeting"
[events]
"greeting.replied" = {{}}
[[steps]]
name = "greet"
plugin = "greet-{n}"
config = {{ greeting = "Hi" }}
on = {{ replied = "answered", silent = "silent", capped = "capped" }}
"#
            ),
        );
        assert_eq!(status, 201, "{fixture}: {body}");
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("start-{n}"), "type": format!("greeting-{n}.start"),
            "customer": "c-ada", "data": { "greeting": format!("g{n}") },
        }));
        assert_eq!(status, 202, "{fixture}: {receipt}");
        let id = receipt["instances"][0].as_u64().expect("an instance");
        assert!(
            journeyd.eventually(Duration::from_secs(30), |journeyd| {
                journeyd.get(&format!("/v1/instances/i-{id}"))["status"] == "waiting"
            }),
            "{fixture}: the step waits for a reply"
        );
        let (status, body) = journeyd.send_event(&json!({
            "id": format!("reply-{n}"), "type": "greeting.replied", "customer": "c-ada", "data": {},
        }));
        assert_eq!(status, 202, "{fixture}: {body}");
        let view = journeyd.wait_instance(id, Duration::from_secs(30));
        assert_eq!(view["status"], "completed", "{fixture}: {view:#}");
        assert_eq!(view["state"]["greetings"], 1, "{fixture}: {view:#}");
        let messages = view["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 1, "{fixture}: {view:#}");
        assert_eq!(messages[0]["channel"], "email", "{fixture}: {view:#}");
        assert_eq!(messages[0]["body"], "Hi, Ada!", "{fixture}: {view:#}");
        assert_eq!(
            view["state"]["sent"], messages[0]["id"],
            "{fixture}: {view:#}"
        );
    }
    assert_eq!(
        greetings_noted(&journeyd, "c-ada"),
        2,
        "one note per SDK step"
    );
}

#[test]
fn journeyd_step_run_runs_one_step_in_the_sandbox_without_a_server() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let plugin = |name: &str| {
        let path = scratch.path().join(format!("{name}.wasm"));
        std::fs::write(&path, interpreted_fixture(name)).expect("write the component");
        path
    };
    let input = scratch.path().join("input.json");
    std::fs::write(
        &input,
        r#"{ "config": { "greeting": "Hi" }, "state": { "greetings": 2 }, "caps": { "sms": 0 } }"#,
    )
    .expect("write input");
    let customer = scratch.path().join("customer.json");
    std::fs::write(
        &customer,
        r#"{ "id": "c-ada", "profile": { "name": "Ada" } }"#,
    )
    .expect("write customer");
    for fixture in ["py_sdk-greet", "js_sdk-greet"] {
        let output = journey_tests::journeyd_command()
            .args(["step", "run", "--json", "--input"])
            .arg(&input)
            .arg("--customer")
            .arg(&customer)
            .arg(plugin(fixture))
            .output()
            .expect("run journeyd step run");
        assert!(output.status.success(), "{fixture}: {output:?}");
        let result: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
        assert_eq!(result["error"], Value::Null, "{fixture}: {result:#}");
        assert_eq!(
            result["outcome"]["wait_for_event"]["kind"], "greeting.replied",
            "{fixture}: {result:#}"
        );
        assert_eq!(result["state"]["greetings"], 3, "{fixture}: {result:#}");
        assert_eq!(
            result["messages"][0]["body"], "Hi, Ada!",
            "{fixture}: {result:#}"
        );
        assert_eq!(
            result["notes"][0]["kind"], "greeted",
            "{fixture}: {result:#}"
        );
    }
    // A step that fails exits 1 and names why, with nothing kept.
    let hostile_input = scratch.path().join("hostile.json");
    std::fs::write(&hostile_input, r#"{ "config": { "try": "file" } }"#).expect("write input");
    let output = journey_tests::journeyd_command()
        .args(["step", "run", "--input"])
        .arg(&hostile_input)
        .arg(plugin("py_hostile"))
        .output()
        .expect("run journeyd step run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("FAILED") && printed.contains("FileNotFoundError"),
        "{printed}"
    );
}

#[test]
fn swapping_a_rust_step_for_its_python_version_mid_journey_keeps_every_instance_going() {
    const INSTANCES: usize = 12;
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let (status, rust) = journeyd.push("send", journey_tests::plugin("send"));
    assert_eq!(status, 201, "{rust}");
    let (status, python) = journeyd.push("send", interpreted_fixture("py_send"));
    assert_eq!(status, 201, "{python}");
    let (status, body) = journeyd.push("await", journey_tests::plugin("await"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.set_tag("send", "stable", &json!({ "version": 1 }));
    assert_eq!(status, 200, "{body}");
    let (status, body) = journeyd.deploy(
        "swap.toml",
        r#"
name = "swap"
terminal = ["done"]
[trigger]
event = "swap.start"
correlation_key = "run"
[events]
"swap.next" = {}
[[steps]]
name = "first"
plugin = "send:stable"
config = { channel = "email", template = "Hi {name}, first about {topic}", about = "topic" }
on = { sent = "hold", capped = "hold" }
[[steps]]
name = "hold"
plugin = "await"
config = { event = "swap.next", timeout = "1d" }
on = { arrived = "second", timeout = "done" }
[[steps]]
name = "second"
plugin = "send:stable"
config = { channel = "email", template = "Hi {name}, second about {topic}", about = "topic" }
on = { sent = "done", capped = "done" }
"#,
    );
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for n in 0..INSTANCES {
        let customer = format!("c-{n}");
        let (status, body) =
            journeyd.put_customer(&customer, &json!({ "name": format!("Ada {n}") }));
        assert!(status < 300, "{body}");
        let (status, receipt) = journeyd.send_event(&json!({
            "id": format!("start-{n}"), "type": "swap.start", "customer": customer,
            "data": { "run": format!("r{n}"), "topic": "rates" },
        }));
        assert_eq!(status, 202, "{receipt}");
        ids.push(receipt["instances"][0].as_u64().expect("an instance"));
    }
    for id in &ids {
        assert!(
            journeyd.eventually(Duration::from_secs(30), |journeyd| {
                journeyd.get(&format!("/v1/instances/i-{id}"))["status"] == "waiting"
            }),
            "i-{id} waits after its Rust step"
        );
    }
    // Mid-journey: every instance ran `first` in Rust and waits; from now
    // on `send:stable` is the Python version.
    let (status, body) = journeyd.set_tag("send", "stable", &json!({ "version": 2 }));
    assert_eq!(status, 200, "{body}");
    for n in 0..INSTANCES {
        let (status, body) = journeyd.send_event(&json!({
            "id": format!("next-{n}"), "type": "swap.next", "customer": format!("c-{n}"), "data": {},
        }));
        assert_eq!(status, 202, "{body}");
    }
    let digest = |pushed: &Value| {
        pushed["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:")
            .to_owned()
    };
    let (rust, python) = (digest(&rust), digest(&python));
    for (n, id) in ids.iter().enumerate() {
        let view = journeyd.wait_instance(*id, Duration::from_secs(30));
        assert_eq!(view["status"], "completed", "{view:#}");
        let ran: Vec<(String, String)> = view["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|entry| entry["plugin"] == "send")
            .map(|entry| {
                (
                    entry["step"].as_str().unwrap_or_default().to_owned(),
                    entry["digest"]
                        .as_str()
                        .unwrap_or_default()
                        .trim_start_matches("sha256:")
                        .to_owned(),
                )
            })
            .collect();
        assert_eq!(
            ran,
            [
                ("first".to_owned(), rust.clone()),
                ("second".to_owned(), python.clone())
            ],
            "{view:#}"
        );
        let bodies: Vec<&str> = view["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|message| message["body"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            bodies,
            [
                format!("Hi Ada {n}, first about rates"),
                format!("Hi Ada {n}, second about rates"),
            ],
            "the Python step reads the context the Rust step saved: {view:#}"
        );
    }
}

#[test]
fn the_javascript_acknowledge_and_team_chat_channel_carry_an_enquiry_to_the_team() {
    const SLACK_PATH: &str = "T000/B000/js";
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = journey_tests::ProviderSink::start(&["--slack-path", SLACK_PATH]);
    let journeyd = Journeyd::start(&dir.path().join("store"));
    journeyd.setup_enquiry();
    // The JavaScript acknowledge becomes the latest `acknowledge`.
    let (status, acknowledge) =
        journeyd.push("acknowledge", journey_tests::plugin("acknowledge_js"));
    assert_eq!(status, 201, "{acknowledge}");
    let (status, body) = journeyd.push("team-chat", journey_tests::plugin("team_chat"));
    assert_eq!(status, 201, "{body}");
    let secret = dir.path().join("webhook-path");
    std::fs::write(&secret, SLACK_PATH).expect("write the secret");
    let spec = json!({
        "plugin": "team-chat",
        "hosts": [sink.host()],
        "secrets": { "webhook_path": format!("file:{}", secret.display()) },
        "config": { "url": format!("{}/services/{{{{secret:webhook_path}}}}", sink.url) },
    });
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/integrations/team",
        Some(spec.to_string().into_bytes()),
    );
    assert_eq!(status, 200, "{body}");
    let (status, receipt) = journeyd.send_event(&journey_tests::enquiry(
        "e-js",
        "c-ada",
        "q-js",
        "I was charged twice for my order",
    ));
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("an instance");
    assert!(
        journeyd.eventually(Duration::from_secs(60), |_| {
            sink.messages()
                .iter()
                .any(|message| message.to_string().contains("q-js"))
        }),
        "the hand-over reached the team through the JavaScript channel: {:#?}",
        sink.messages()
    );
    let view = journeyd.get(&format!("/v1/instances/i-{id}"));
    let acknowledged = view["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|entry| entry["step"] == "acknowledge")
        .expect("the acknowledge step ran")
        .clone();
    assert_eq!(
        acknowledged["digest"]
            .as_str()
            .map(|d| d.trim_start_matches("sha256:")),
        acknowledge["digest"]
            .as_str()
            .map(|d| d.trim_start_matches("sha256:")),
        "{acknowledged:#}"
    );
    assert!(view["state"]["acknowledgement"].is_string(), "{view:#}");
    let team = view["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|message| message["channel"] == "team")
        .expect("a hand-over")
        .clone();
    let delivery = journeyd.get(&format!(
        "/v1/deliveries/{}",
        team["id"].as_str().expect("an id")
    ));
    assert_eq!(delivery["delivery"]["status"], "accepted", "{delivery:#}");
}
