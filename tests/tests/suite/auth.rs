//! API tokens against a real journeyd: the first start makes an admin
//! token the CLI finds, scoped tokens do what their scope allows and are
//! told which scope they lack, revoked tokens stop working, and no token
//! ever shows up where it should not.

use journey_tests::{Journeyd, enquiry, plugin};
use serde_json::{Value, json};

#[test]
fn scoped_tokens_do_what_their_scope_allows_and_nothing_else() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    journeyd.setup_enquiry();

    // Created on the command line, shown once.
    let created = journeyd
        .cli()
        .args(["token", "create", "--scope", "ingest", "--name", "crm"])
        .output()
        .expect("journeyd runs");
    assert!(created.status.success(), "{created:?}");
    let ingest = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(ingest.starts_with("jdt_ingest_"), "{ingest}");
    let read = journeyd.create_token("grafana", "read");

    let event = enquiry("e-1", "c-ada", "q-1", "Refund please")
        .to_string()
        .into_bytes();
    let (status, body) =
        journeyd.request_as(Some(&ingest), "POST", "/v1/events", Some(event.clone()));
    assert_eq!(status, 202, "ingest may send events: {body}");
    let (status, body) = journeyd.request_as(Some(&ingest), "GET", "/v1/instances", None);
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("missing_scope"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("needs the `read` scope; token `crm` has `ingest`"),
        "{body}"
    );
    let (status, _) = journeyd.request_as(Some(&read), "GET", "/v1/instances", None);
    assert_eq!(status, 200, "read may read");
    let (status, body) = journeyd.request_as(
        Some(&read),
        "PUT",
        "/v1/plugins/evil",
        Some(plugin("acknowledge")),
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("missing_scope")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`admin`"),
        "{body}"
    );
    let (status, body) = journeyd.request_as(None, "POST", "/v1/events", Some(event.clone()));
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthenticated")),
        "{body}"
    );
    let (status, body) = journeyd.request_as(Some("jdt_admin_guess"), "GET", "/v1/clock", None);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_token")),
        "{body}"
    );
    // Probes need no token.
    let (status, _) = journeyd.request_as(None, "GET", "/healthz", None);
    assert_eq!(status, 200);

    // Listed without secrets; revoked, refused.
    let listed = journeyd.get("/v1/tokens").to_string();
    assert!(
        listed.contains("crm") && listed.contains("grafana"),
        "{listed}"
    );
    for secret in [&ingest, &read, &journeyd.token] {
        assert!(!listed.contains(secret.as_str()), "{listed}");
    }
    let revoked = journeyd
        .cli()
        .args(["token", "revoke", "crm"])
        .output()
        .expect("journeyd runs");
    assert!(revoked.status.success(), "{revoked:?}");
    let (status, body) = journeyd.request_as(Some(&ingest), "POST", "/v1/events", Some(event));
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_token")),
        "{body}"
    );

    // Tokens never show on /metrics.
    let (status, metrics) = journeyd.request_as(Some(&read), "GET", "/metrics", None);
    assert_eq!(status, 200);
    let metrics = match metrics {
        Value::String(text) => text,
        other => other.to_string(),
    };
    for secret in [&ingest, &read, &journeyd.token] {
        assert!(!metrics.contains(secret.as_str()));
    }
}

#[test]
fn a_client_without_a_token_is_told_where_to_put_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let output = journey_tests::journeyd_command()
        .args(["--server", &journeyd.url, "clock", "show"])
        .env("JOURNEYD_DATA", elsewhere.path())
        .env("JOURNEYD_CONFIG", elsewhere.path().join("none.toml"))
        .env_remove("JOURNEYD_TOKEN")
        .output()
        .expect("journeyd runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("unauthenticated") && said.contains("JOURNEYD_TOKEN"),
        "{said}"
    );
    // A config file names the token.
    let config = elsewhere.path().join("config.toml");
    std::fs::write(&config, format!("token = \"{}\"\n", journeyd.token)).expect("write config");
    let output = journey_tests::journeyd_command()
        .args(["--server", &journeyd.url, "clock", "show"])
        .env("JOURNEYD_DATA", elsewhere.path())
        .env("JOURNEYD_CONFIG", &config)
        .env_remove("JOURNEYD_TOKEN")
        .output()
        .expect("journeyd runs");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn tokens_expire_under_the_servers_policy_and_a_start_renews_the_admin_token() {
    const DAY_MS: u64 = 86_400_000;
    const START_MS: u64 = 1_796_112_000_000;
    let data = tempfile::tempdir().expect("temp dir");
    let args = [
        "--simulated-clock",
        "--simulated-clock-start",
        &START_MS.to_string(),
        "--token-max-age",
        "1d",
    ];
    let mut journeyd = Journeyd::start_with(data.path(), &args);
    let read = journeyd.create_token("grafana", "read");
    let listed = journeyd.get("/v1/tokens");
    let grafana = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|token| token["name"] == "grafana")
        .expect("listed")
        .clone();
    assert_eq!(grafana["expires_at_ms"], START_MS + DAY_MS, "{listed}");

    // Accepted until its day is up, on the server's clock.
    journeyd.advance_clock_to(START_MS + DAY_MS - 1);
    let (status, body) = journeyd.request_as(Some(&read), "GET", "/v1/journeys", None);
    assert_eq!(status, 200, "{body}");
    journeyd.advance_clock_to(START_MS + DAY_MS);
    let (status, body) = journeyd.request_as(Some(&read), "GET", "/v1/journeys", None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "token_expired", "{body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("grafana") && message.contains("token create"),
        "{message}"
    );
    assert!(
        !message.contains(&read),
        "the secret is never echoed: {message}"
    );
    // The first admin token was made at the same time: expired too.
    let (status, body) = journeyd.request("GET", "/v1/tokens", None);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("token_expired"))
    );

    // A start with no usable admin token makes `admin` anew, for the
    // operator of the machine; the expired read token stays refused.
    let stopped = journeyd.terminate(std::time::Duration::from_secs(60));
    assert!(stopped.success());
    let journeyd = Journeyd::start_with(data.path(), &args);
    let listed = journeyd.get("/v1/tokens");
    let names: Vec<&str> = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|token| token["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(
        names.iter().filter(|name| **name == "admin").count(),
        1,
        "{listed}"
    );
    assert!(names.contains(&"grafana"), "{listed}");
    let (status, body) = journeyd.request_as(Some(&read), "GET", "/v1/journeys", None);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("token_expired"))
    );
}

#[test]
fn a_revoked_admin_token_is_not_made_anew_at_the_next_start() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut journeyd = Journeyd::start(data.path());
    let ops = journeyd.create_token("ops", "admin");
    let (status, body) = journeyd.request_as(Some(&ops), "DELETE", "/v1/tokens/admin", None);
    assert_eq!(status, 200, "{body}");
    assert!(
        journeyd
            .terminate(std::time::Duration::from_secs(60))
            .success()
    );
    let journeyd = Journeyd::start(data.path());
    let (status, body) = journeyd.request_as(Some(&ops), "GET", "/v1/tokens", None);
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|token| token["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["ops"], "{body}");
}
