//! Messages leave the box: a real journeyd delivers through the shipped
//! channel plugins to a real local provider (`provider-sink`) that
//! misbehaves, calls back, and counts what it took.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use journey_tests::{Journeyd, ProviderSink, enquiry, fixture, plugin};
use serde_json::{Value, json};

const DEC_1_MS: u64 = 1_796_112_000_000;
pub(crate) const SENDGRID_KEY: &str = "SG.test-key-1234";
pub(crate) const SLACK_PATH: &str = "T000/B000/team";
const CALLBACK_SECRET: &str = "whsec_c2VjcmV0LWZvci1jYWxsYmFja3MtMTIz";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Write each secret into a file of its own under `dir`; returns the
/// `--secret`-style references.
fn secret_files(dir: &Path, secrets: &[(&str, &str)]) -> Value {
    let mut references = serde_json::Map::new();
    for (name, value) in secrets {
        let file = dir.join(format!("secret-{name}"));
        std::fs::write(&file, value).expect("write a secret");
        references.insert(
            (*name).to_owned(),
            json!(format!("file:{}", file.display())),
        );
    }
    Value::Object(references)
}

fn set_integration(journeyd: &Journeyd, channel: &str, spec: &Value) -> (u16, Value) {
    journeyd.request(
        "PUT",
        &format!("/v1/integrations/{channel}"),
        Some(spec.to_string().into_bytes()),
    )
}

/// The enquiry journey and its plugins, the channel plugins, and email
/// (SendGrid-shaped) and team (Slack-shaped) integrations at `sink`.
fn setup(journeyd: &Journeyd, sink: &ProviderSink, dir: &Path, limits: Value) {
    journeyd.setup_enquiry();
    setup_integrations(journeyd, sink, dir, limits);
}

/// The channel plugins, and email (SendGrid-shaped) and team
/// (Slack-shaped) integrations at `sink` (a sink started with
/// [`SENDGRID_KEY`] and [`SLACK_PATH`]).
pub(crate) fn setup_integrations(
    journeyd: &Journeyd,
    sink: &ProviderSink,
    dir: &Path,
    limits: Value,
) {
    for name in ["sendgrid", "slack", "webhook", "twilio"] {
        let (status, body) = journeyd.push(name, plugin(name));
        assert_eq!(status, 201, "{body}");
    }
    let secrets = secret_files(
        dir,
        &[
            ("api_key", SENDGRID_KEY),
            ("webhook_path", SLACK_PATH),
            ("callbacks", CALLBACK_SECRET),
        ],
    );
    let mut email = json!({
        "plugin": "sendgrid",
        "hosts": [sink.host()],
        "secrets": { "api_key": secrets["api_key"], "callbacks": secrets["callbacks"] },
        "callback_secret": "callbacks",
        "config": { "url": format!("{}/v3/mail/send", sink.url), "from": "help@example.com" },
    });
    let mut team = json!({
        "plugin": "slack",
        "hosts": [sink.host()],
        "secrets": { "webhook_path": secrets["webhook_path"] },
        "config": { "url": format!("{}/services/{{{{secret:webhook_path}}}}", sink.url) },
    });
    for (field, value) in limits.as_object().into_iter().flatten() {
        email[field] = value.clone();
        team[field] = value.clone();
    }
    for (channel, spec) in [("email", email), ("team", team)] {
        let (status, body) = set_integration(journeyd, channel, &spec);
        assert_eq!(status, 200, "{channel}: {body}");
    }
}

/// Every message in the outbox with its delivery.
pub(crate) fn deliveries(journeyd: &Journeyd) -> Vec<(Value, Value)> {
    let outbox = journeyd.get("/v1/outbox?limit=10000");
    outbox["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| {
            let id = message["id"].as_str().expect("an id");
            (message.clone(), outbox["deliveries"][id].clone())
        })
        .collect()
}

pub(crate) fn status_of(journeyd: &Journeyd, id: &str) -> Value {
    let mut path = String::from("/v1/deliveries");
    for segment in id.split('/') {
        path.push('/');
        path.push_str(segment);
    }
    journeyd.get(&path)["delivery"].clone()
}

/// Move the simulated clock on until every message is accepted (or
/// further); fails the test on a dead one.
fn deliver_everything(journeyd: &Journeyd) {
    let delivered = journeyd.eventually(Duration::from_secs(120), |journeyd| {
        journeyd.advance_clock_by(60_000);
        let all = deliveries(journeyd);
        for (message, delivery) in &all {
            assert_ne!(delivery["status"], "dead", "{message} {delivery}");
        }
        !all.is_empty()
            && all.iter().all(|(_, delivery)| {
                matches!(
                    delivery["status"].as_str(),
                    Some("accepted" | "delivered" | "opened" | "clicked")
                )
            })
    });
    assert!(delivered, "not delivered: {:#?}", deliveries(journeyd));
}

#[test]
fn every_message_takes_effect_once_through_failures_throttling_timeouts_drops_and_sigkills() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let sink = ProviderSink::start(&[
        "--sendgrid-key",
        SENDGRID_KEY,
        "--slack-path",
        SLACK_PATH,
        "--fail-rate",
        "0.2",
        "--throttle-rate",
        "0.1",
        "--timeout-rate",
        "0.15",
        "--drop-rate",
        "0.15",
        "--retry-after-s",
        "2",
        "--hang-ms",
        "1500",
    ]);
    let mut journeyd = Journeyd::start_simulated(&data, DEC_1_MS);
    setup(
        &journeyd,
        &sink,
        dir.path(),
        json!({ "timeout_ms": 300, "max_attempts": 60, "max_age_ms": 7 * 86_400_000u64 }),
    );
    let customers = ["c-ada", "c-grace", "c-linus"];
    let mut sent = 0;
    for round in 0..4 {
        for _ in 0..8 {
            let event = enquiry(
                &format!("e-{sent}"),
                customers[sent % 3],
                &format!("q-{sent}"),
                "I was charged twice, please refund",
            );
            let (status, body) = journeyd.send_event(&event);
            assert_eq!(status, 202, "{body}");
            sent += 1;
        }
        // Let the dispatcher get going, then kill journeyd mid-delivery.
        journeyd.eventually(Duration::from_secs(5), |_| {
            sink.stats()["requests"].as_u64().unwrap_or(0) > 4 * round as u64
        });
        journeyd.kill();
        journeyd = Journeyd::start_simulated(&data, DEC_1_MS);
    }
    deliver_everything(&journeyd);

    let all = deliveries(&journeyd);
    let ours: BTreeSet<String> = all
        .iter()
        .map(|(message, _)| message["id"].as_str().expect("id").to_owned())
        .collect();
    let taken = sink.messages();
    let keys: Vec<String> = taken
        .iter()
        .map(|message| {
            message["idempotency_key"]
                .as_str()
                .expect("every request carried an Idempotency-Key")
                .to_owned()
        })
        .collect();
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), unique.len(), "a message took effect twice");
    assert_eq!(unique, ours, "every message took effect, none lost");
    let stats = sink.stats();
    assert!(
        stats["duplicates"].as_u64() > Some(0),
        "repeats after drops and timeouts were dropped by key: {stats}"
    );
    assert!(stats["injected_500"].as_u64() > Some(0), "{stats}");
    assert_eq!(stats["unauthorized"], 0, "secrets were filled in: {stats}");
    // The attempts are on record, with what became of each.
    let retried = all
        .iter()
        .find(|(_, delivery)| delivery["attempts"].as_u64() > Some(1))
        .expect("some message needed more than one attempt");
    assert!(
        retried.1["log"].as_array().expect("a log").len() >= 3,
        "{}",
        retried.1
    );
    // Secrets never show: not in the integration, not in deliveries.
    for shown in [
        journeyd.get("/v1/integrations").to_string(),
        journeyd.get("/v1/outbox?limit=10000").to_string(),
    ] {
        assert!(
            !shown.contains(SENDGRID_KEY) && !shown.contains(SLACK_PATH),
            "{shown}"
        );
    }
}

/// A Standard Webhooks signed callback to `channel`.
fn callback(
    journeyd: &Journeyd,
    channel: &str,
    id: &str,
    body: &str,
    secret: &str,
) -> (u16, Value) {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let signature = standardwebhooks::Webhook::new(secret)
        .expect("a secret")
        .sign(id, timestamp, body.as_bytes())
        .expect("signs");
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/callbacks/{channel}", journeyd.url))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .expect("journeyd answers");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn callbacks_are_verified_deduplicated_kept_in_order_and_feed_the_journeys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = ProviderSink::start(&["--sendgrid-key", SENDGRID_KEY, "--slack-path", SLACK_PATH]);
    let journeyd = Journeyd::start_simulated(&dir.path().join("store"), DEC_1_MS);
    setup(&journeyd, &sink, dir.path(), json!({}));
    // A journey that starts when a customer opens an email: proof that a
    // callback's status went through ingest.
    let (status, body) = journeyd.push("noop", fixture("noop"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = journeyd.deploy(
        "opened.toml",
        r#"
name = "opened"
terminal = ["done"]

[trigger]
event = "email.opened"
correlation_key = "message_id"

[[steps]]
name = "note"
plugin = "noop"
on = { ok = "done" }
"#,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        journeyd.send_event(&enquiry("e-1", "c-ada", "q-1", "Where is my refund?"));
    assert_eq!(status, 202, "{body}");
    deliver_everything(&journeyd);
    let (email, _) = deliveries(&journeyd)
        .into_iter()
        .find(|(message, _)| message["channel"] == "email")
        .expect("the acknowledgement");
    let id = email["id"].as_str().expect("an id").to_owned();
    let provider_id = status_of(&journeyd, &id)["provider_id"]
        .as_str()
        .expect("the provider's id")
        .to_owned();
    let event = |kind: &str| {
        json!([{ "event": kind, "sg_message_id": format!("{provider_id}.filter0001"), "timestamp": 1_796_112_100 }])
            .to_string()
    };
    let opened_instances = |journeyd: &Journeyd| {
        journeyd.get("/v1/instances?journey=opened")["instances"]
            .as_array()
            .map_or(0, Vec::len)
    };

    // Badly signed: refused, nothing changes.
    let (status, body) = callback(&journeyd, "email", "cb-0", &event("open"), WEBHOOK_SECRET);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("bad_signature")),
        "{body}"
    );
    assert_eq!(status_of(&journeyd, &id)["status"], "accepted");
    let unsigned = reqwest::blocking::Client::new()
        .post(format!("{}/v1/callbacks/email", journeyd.url))
        .body(event("open"))
        .send()
        .expect("an answer");
    assert_eq!(unsigned.status().as_u16(), 401);

    // Opened, then delivered late (out of order): the status stays opened.
    let (status, body) = callback(&journeyd, "email", "cb-1", &event("open"), CALLBACK_SECRET);
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
    let (status, body) = callback(
        &journeyd,
        "email",
        "cb-2",
        &event("delivered"),
        CALLBACK_SECRET,
    );
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");
    let delivery = status_of(&journeyd, &id);
    assert_eq!(delivery["status"], "opened", "{delivery}");
    // Duplicated: the same event again, no second instance.
    let (status, _) = callback(&journeyd, "email", "cb-1", &event("open"), CALLBACK_SECRET);
    assert_eq!(status, 200);
    let (status, _) = callback(&journeyd, "email", "cb-3", &event("open"), CALLBACK_SECRET);
    assert_eq!(status, 200);
    journeyd.advance_clock_by(0);
    assert_eq!(opened_instances(&journeyd), 1, "one open, one instance");
    // The customer's engagement and the instance's timeline show it.
    let view = journeyd.get(&format!(
        "/v1/instances/i-{}",
        email["instance_id"].as_u64().expect("an instance id")
    ));
    assert_eq!(view["deliveries"][&id]["status"], "opened", "{view}");

    // Unknown message ids: accepted and ignored.
    let unknown = json!([{ "event": "delivered", "sg_message_id": "sg-nobody.x" }]).to_string();
    let (status, body) = callback(&journeyd, "email", "cb-4", &unknown, CALLBACK_SECRET);
    assert_eq!((status, &body["ignored"]), (200, &json!(1)), "{body}");
    // Garbage that is signed: the plugin refuses it, nothing changes.
    let (status, body) = callback(&journeyd, "email", "cb-5", "not json", CALLBACK_SECRET);
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("unreadable_callback")),
        "{body}"
    );
    // An integration without a callback secret takes no callbacks.
    let (status, body) = callback(&journeyd, "team", "cb-6", "[]", CALLBACK_SECRET);
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("callbacks_off")),
        "{body}"
    );
}

/// A journeyd on a simulated clock delivering to a fresh sink, where the
/// team's webhook is gone (410) and Ada's address is refused (400): her
/// enquiry's three messages (acknowledgement, hand-over, resolution) are
/// dead.
pub(crate) fn three_dead_messages(dir: &Path) -> (Journeyd, ProviderSink) {
    let sink = ProviderSink::start(&["--sendgrid-key", SENDGRID_KEY]);
    let journeyd = Journeyd::start_simulated(&dir.join("store"), DEC_1_MS);
    setup(&journeyd, &sink, dir, json!({}));
    let (status, body) = set_integration(
        &journeyd,
        "team",
        &json!({
            "plugin": "slack",
            "hosts": [sink.host()],
            "config": { "url": format!("{}/services/gone", sink.url) },
        }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = journeyd.put_customer(
        "c-ada",
        &json!({ "name": "Ada", "email": "invalid@example" }),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = journeyd.send_event(&enquiry("e-1", "c-ada", "q-1", "Refund please"));
    assert_eq!(status, 202, "{body}");
    let settled = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        journeyd.advance_clock_by(1_000);
        deliveries(journeyd).len() == 3
            && deliveries(journeyd)
                .iter()
                .all(|(_, delivery)| delivery["status"] == "dead")
    });
    assert!(settled, "{:#?}", deliveries(&journeyd));
    (journeyd, sink)
}

/// Point the team's integration at a live webhook at `sink`, enabled again.
pub(crate) fn revive_team(journeyd: &Journeyd, sink: &ProviderSink) {
    let (status, body) = set_integration(
        journeyd,
        "team",
        &json!({
            "plugin": "slack",
            "hosts": [sink.host()],
            "config": { "url": format!("{}/services/T1/B1/live", sink.url) },
            "enabled": true,
        }),
    );
    assert_eq!(
        (status, &body["integration"]["disabled"]),
        (200, &Value::Null),
        "{body}"
    );
}

#[test]
fn a_refused_message_is_dead_a_410_disables_the_integration_and_a_replay_sends_it_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (journeyd, sink) = three_dead_messages(dir.path());
    let dead = journeyd.get("/v1/deliveries?status=dead");
    let dead = dead["deliveries"].as_array().expect("a list");
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let reasons: Vec<&str> = dead
        .iter()
        .map(|entry| entry["delivery"]["error"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("valid address")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("channel_is_archived")),
        "{reasons:?}"
    );
    let team = journeyd.get("/v1/integrations")["integrations"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|integration| integration["channel"] == "team")
        .cloned()
        .expect("team");
    assert!(
        team["disabled"].as_str().unwrap_or("").contains("410"),
        "{team}"
    );

    // The operator points the team at a live webhook and replays: sent
    // once, under the same id.
    revive_team(&journeyd, &sink);
    let handover = dead
        .iter()
        .find(|entry| entry["message"]["channel"] == "team")
        .expect("the hand-over");
    let id = handover["message"]["id"].as_str().expect("an id");
    let replay = |ids: Value| {
        journeyd.request(
            "POST",
            "/v1/deliveries/replay",
            Some(json!({ "ids": ids }).to_string().into_bytes()),
        )
    };
    let (status, body) = replay(json!([id]));
    assert_eq!(status, 200, "{body}");
    let delivered = journeyd.eventually(Duration::from_secs(30), |journeyd| {
        journeyd.advance_clock_by(1_000);
        status_of(journeyd, id)["status"] == "accepted"
    });
    assert!(delivered, "{}", status_of(&journeyd, id));
    let taken: Vec<Value> = sink
        .messages()
        .into_iter()
        .filter(|message| message["idempotency_key"] == id)
        .collect();
    assert_eq!(taken.len(), 1, "{taken:#?}");
    // Only undelivered messages are replayed.
    let (status, body) = replay(json!([id]));
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("not_replayable")),
        "{body}"
    );
    let (status, body) = replay(json!(["i-999/0/m0"]));
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_message")),
        "{body}"
    );
}

#[test]
fn an_integration_is_checked_before_it_is_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = ProviderSink::start(&[]);
    let journeyd = Journeyd::start_simulated(&dir.path().join("store"), DEC_1_MS);
    setup(&journeyd, &sink, dir.path(), json!({}));
    let key = secret_files(dir.path(), &[("api_key", SENDGRID_KEY)]);
    let spec = |change: Value| {
        let mut spec = json!({
            "plugin": "sendgrid",
            "hosts": [sink.host()],
            "secrets": { "api_key": key["api_key"] },
            "config": { "url": format!("{}/v3/mail/send", sink.url), "from": "help@example.com" },
        });
        for (field, value) in change.as_object().into_iter().flatten() {
            spec[field] = value.clone();
        }
        spec
    };
    let before = journeyd.get("/v1/integrations");
    for (change, mention) in [
        (json!({ "plugin": "nope" }), "`nope` is not pushed"),
        (json!({ "plugin": "acknowledge" }), "is a step plugin"),
        (json!({ "hosts": ["api.sendgrid.com"] }), "not granted"),
        (json!({ "hosts": [] }), "`hosts` is empty"),
        (
            json!({ "secrets": { "api_key": "env:JOURNEYD_TEST_SURELY_UNSET" } }),
            "JOURNEYD_TEST_SURELY_UNSET",
        ),
        (json!({ "secrets": {} }), "names secret `api_key`"),
        (json!({ "config": { "from": 7 } }), "cannot render"),
        (json!({ "concurrency": 0 }), "`concurrency` is 0"),
    ] {
        let (status, body) = set_integration(&journeyd, "email", &spec(change.clone()));
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("invalid_integration")),
            "{change}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(mention), "{change}: {message}");
        assert!(!message.contains(SENDGRID_KEY), "{message}");
    }
    assert_eq!(journeyd.get("/v1/integrations"), before, "nothing changed");
    let (status, body) = set_integration(
        &journeyd,
        "email",
        &json!({ "plugin": "sendgrid", "hosts": ["x"], "extra": 1 }),
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_body")),
        "{body}"
    );
}

#[test]
fn a_message_a_frequency_cap_held_back_never_reaches_the_provider() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sink = ProviderSink::start(&["--sendgrid-key", SENDGRID_KEY, "--slack-path", SLACK_PATH]);
    let journeyd = Journeyd::start_simulated(&dir.path().join("store"), DEC_1_MS);
    setup(&journeyd, &sink, dir.path(), json!({}));
    let (status, body) = journeyd.request(
        "PUT",
        "/v1/frequency-caps",
        Some(
            json!({ "caps": [{ "channel": "email", "limit": 1, "period_ms": 86_400_000u64 }] })
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    for n in 0..3 {
        let (status, body) = journeyd.send_event(&enquiry(
            &format!("e-{n}"),
            "c-ada",
            &format!("q-{n}"),
            "Refund please",
        ));
        assert_eq!(status, 202, "{body}");
    }
    deliver_everything(&journeyd);
    let emails: Vec<Value> = sink
        .messages()
        .into_iter()
        .filter(|message| message["provider"] == "sendgrid")
        .collect();
    assert_eq!(emails.len(), 1, "one email a day: {emails:#?}");
    let queued_emails = deliveries(&journeyd)
        .into_iter()
        .filter(|(message, _)| message["channel"] == "email")
        .count();
    assert_eq!(queued_emails, 1, "the capped ones were never queued");
}

/// Spans by name, in the trace `trace_id`.
fn spans_named<'a>(spans: &'a [Value], trace_id: &str, name: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|span| span["trace_id"] == trace_id && span["name"] == name)
        .collect()
}

#[test]
fn an_enquiry_is_one_trace_from_the_caller_to_the_provider() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The sink is the provider and the OTLP collector both.
    let sink = ProviderSink::start(&["--sendgrid-key", SENDGRID_KEY, "--slack-path", SLACK_PATH]);
    let mut journeyd = Journeyd::start_with(
        &dir.path().join("store"),
        &[
            "--simulated-clock",
            "--simulated-clock-start",
            &DEC_1_MS.to_string(),
            "--otlp-endpoint",
            &sink.url,
        ],
    );
    setup(&journeyd, &sink, dir.path(), json!({}));
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = journey_tests::client_with_token(&journeyd.token, Duration::from_secs(60))
        .post(format!("{}/v1/events", journeyd.url))
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .body(enquiry("e-1", "c-ada", "q-1", "Where is my refund?").to_string())
        .send()
        .expect("journeyd answers");
    assert_eq!(response.status().as_u16(), 202);
    deliver_everything(&journeyd);
    let instance = journeyd.get("/v1/instances?journey=enquiry")["instances"][0].clone();
    let instance_id = instance["id"].clone();
    // A clean stop sends the spans not yet exported.
    let status = journeyd.terminate(Duration::from_secs(60));
    assert!(status.success(), "journeyd stopped with {status}");

    let listed: Value = reqwest::blocking::get(format!("{}/_sink/spans", sink.url))
        .and_then(|response| response.json())
        .expect("the sink lists its spans");
    let spans = listed["spans"].as_array().expect("spans").clone();
    let ingest = spans_named(&spans, caller_trace, "ingest");
    assert_eq!(
        ingest.len(),
        1,
        "one ingest span in the caller's trace: {listed:#}"
    );
    let ingest = ingest[0];
    assert_eq!(
        ingest["parent_span_id"], caller_span,
        "it continues the caller's span"
    );
    assert_eq!(ingest["kind"], 2, "a server span");
    assert_eq!(ingest["attributes"]["journeyd.event.id"], "e-1");
    assert_eq!(ingest["attributes"]["journeyd.instances.started"], 1);
    assert_eq!(ingest["resource"]["service.name"], "journeyd");

    // Each step the event led to: a child of the ingest, with what ran.
    let steps = spans_named(&spans, caller_trace, "step");
    let ran: Vec<&str> = steps
        .iter()
        .map(|span| {
            span["attributes"]["journeyd.step"]
                .as_str()
                .expect("a step")
        })
        .collect();
    assert!(
        ran.contains(&"acknowledge") && ran.contains(&"classify"),
        "the first steps are in the caller's trace: {ran:?}"
    );
    for step in &steps {
        let attributes = &step["attributes"];
        assert_eq!(step["parent_span_id"], ingest["span_id"], "{step:#}");
        assert_eq!(attributes["journeyd.journey"], "enquiry");
        assert_eq!(attributes["journeyd.instance"], instance_id);
        assert_eq!(attributes["journeyd.attempt"], 1);
        assert!(
            attributes["journeyd.plugin"]
                .as_str()
                .is_some_and(|plugin| !plugin.is_empty()),
            "{step:#}"
        );
        assert!(
            attributes["journeyd.plugin.version"]
                .as_i64()
                .is_some_and(|version| version >= 1),
            "{step:#}"
        );
        assert_eq!(
            attributes["journeyd.plugin.digest"].as_str().map(str::len),
            Some(64),
            "{step:#}"
        );
        assert!(attributes["journeyd.outcome"].is_string(), "{step:#}");
        // Its commit is its child, and ended once durable.
        let commits: Vec<&Value> = spans_named(&spans, caller_trace, "commit")
            .into_iter()
            .filter(|commit| commit["parent_span_id"] == step["span_id"])
            .collect();
        assert_eq!(commits.len(), 1, "one commit per step run: {step:#}");
        assert_eq!(commits[0]["attributes"]["journeyd.commit"], "done");
        assert!(commits[0]["end_ns"].as_u64() >= step["end_ns"].as_u64());
    }

    // Each delivery attempt: a child of the step that queued the message,
    // and the provider got that attempt's traceparent.
    let delivers = spans_named(&spans, caller_trace, "deliver");
    let messages = sink.messages();
    assert!(!messages.is_empty());
    assert_eq!(
        delivers.len(),
        messages.len(),
        "one attempt per message: {delivers:#?}"
    );
    for message in &messages {
        let traceparent = message["traceparent"]
            .as_str()
            .expect("the provider got a traceparent");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts[1], caller_trace, "{traceparent}");
        let deliver = delivers
            .iter()
            .find(|deliver| deliver["span_id"] == parts[2])
            .unwrap_or_else(|| panic!("the traceparent names a deliver span: {traceparent}"));
        assert_eq!(deliver["kind"], 3, "a client span");
        assert_eq!(
            deliver["attributes"]["journeyd.delivery.outcome"],
            "accepted"
        );
        let queued_by = steps
            .iter()
            .find(|step| step["span_id"] == deliver["parent_span_id"])
            .expect("a deliver span's parent is a step span");
        assert_eq!(
            queued_by["attributes"]["journeyd.step"],
            deliver["attributes"]["journeyd.step"]
        );
    }
}
