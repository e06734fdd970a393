//! `provider-sink`: a local stand-in for the providers journeyd's
//! first-party channel plugins talk to, for development and tests (in the
//! spirit of Mailpit).
//!
//! It speaks the APIs of the shipped channel plugins (a SendGrid-shaped
//! mail send, a Twilio-shaped messages API, a Slack-shaped incoming
//! webhook, Standard Webhooks), checks their credentials and signatures,
//! and keeps what arrives. Like real providers it honours idempotency
//! keys: a repeated key gets the first answer again and is counted as a
//! duplicate, never kept twice. It can misbehave at configurable rates
//! (500s, 429s with `Retry-After`, answers that never come, connections
//! dropped after the message was taken), and it calls journeyd back with
//! signed delivery statuses.
//!
//! It is also a local OpenTelemetry collector for traces (see `otlp`):
//! `POST /v1/traces` takes OTLP/HTTP and `GET /_sink/spans` lists the
//! spans. A message's `traceparent` header is kept with it.
//!
//! `GET /_sink/messages` lists what arrived, `GET /_sink/stats` counts
//! requests, duplicates and injected faults, `PUT /_sink/behaviour`
//! changes the misbehaviour while it runs. It prints
//! `provider-sink listening on http://ADDRESS` once it serves;
//! `provider-sink list http://ADDRESS` prints what a running one took.

mod otlp;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Marks a response whose connection is dropped instead of answered.
const DROP_HEADER: &str = "x-provider-sink-drop";

#[derive(Debug, Parser)]
#[command(name = "provider-sink", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<ListCommand>,
    /// Where to listen (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8025")]
    listen: SocketAddr,
    /// The SendGrid-shaped API key (`Authorization: Bearer KEY`).
    #[arg(long, env = "SINK_SENDGRID_KEY")]
    sendgrid_key: Option<String>,
    /// The Twilio-shaped account sid (basic auth user, and the URL's account).
    #[arg(long, env = "SINK_TWILIO_SID")]
    twilio_sid: Option<String>,
    /// The Twilio-shaped auth token (basic auth password).
    #[arg(long, env = "SINK_TWILIO_TOKEN")]
    twilio_token: Option<String>,
    /// The Slack-shaped incoming webhook's path after `/services/`.
    #[arg(long, env = "SINK_SLACK_PATH")]
    slack_path: Option<String>,
    /// The Standard Webhooks secret signed webhooks must verify with.
    #[arg(long, env = "SINK_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
    /// `PROVIDER=URL` (sendgrid, twilio, webhook): post signed delivery
    /// statuses for what that provider took to URL; repeat for several.
    #[arg(long = "callback", value_name = "PROVIDER=URL")]
    callbacks: Vec<String>,
    /// The Standard Webhooks secret callbacks are signed with.
    #[arg(long, env = "SINK_CALLBACK_SECRET")]
    callback_secret: Option<String>,
    #[command(flatten)]
    behaviour: Behaviour,
}

/// `provider-sink list URL`
#[derive(Debug, clap::Subcommand)]
enum ListCommand {
    /// Print what the sink at URL took, and its counters, then exit.
    List {
        /// The sink's address, e.g. http://127.0.0.1:8025.
        url: String,
        /// Print at most this many messages per provider.
        #[arg(long, default_value_t = 5)]
        per_provider: usize,
    },
}

/// Print what a running sink took.
async fn list(url: &str, per_provider: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = url.trim_end_matches('/');
    let messages: Value = client
        .get(format!("{url}/_sink/messages"))
        .send()
        .await?
        .json()
        .await?;
    let stats: Value = client
        .get(format!("{url}/_sink/stats"))
        .send()
        .await?
        .json()
        .await?;
    let messages = messages["messages"].as_array().cloned().unwrap_or_default();
    for provider in ["sendgrid", "twilio", "slack", "webhook"] {
        let taken: Vec<&Value> = messages
            .iter()
            .filter(|message| message["provider"] == provider)
            .collect();
        if taken.is_empty() {
            continue;
        }
        println!("{provider}: {} message(s)", taken.len());
        for message in taken.iter().take(per_provider) {
            let text = |field: &str| message[field].as_str().unwrap_or("").replace('\n', " ");
            let mut line = format!("  {} → {}: ", text("idempotency_key"), text("to"));
            if !text("subject").is_empty() {
                line.push_str(&format!("[{}] ", text("subject")));
            }
            line.push_str(&text("body"));
            println!("{}", line.chars().take(140).collect::<String>());
        }
        if taken.len() > per_provider {
            println!("  … and {} more", taken.len() - per_provider);
        }
    }
    println!(
        "{} requests: {} messages taken, {} repeats dropped by idempotency key, {} refused; {} status callbacks sent",
        stats["requests"],
        stats["accepted"],
        stats["duplicates"],
        stats["rejected"],
        stats["callbacks_sent"]
    );
    Ok(())
}

/// How often the sink misbehaves (each a share of requests, 0 to 1).
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Behaviour {
    /// Answer 500 without taking the message.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Answer 429 with `Retry-After` without taking the message.
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Take the message, then answer only after `hang_ms` (the client
    /// times out first).
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Take the message, then drop the connection without answering.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// The `Retry-After` of a 429, seconds.
    #[arg(long, default_value_t = 1)]
    retry_after_s: u64,
    /// How long a timed-out answer hangs, ms.
    #[arg(long, default_value_t = 30_000)]
    hang_ms: u64,
}

/// Counts of what happened.
#[derive(Debug, Clone, Default, Serialize)]
struct Stats {
    requests: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    unauthorized: u64,
    bad_signatures: u64,
    without_key: u64,
    injected_500: u64,
    injected_429: u64,
    injected_timeouts: u64,
    injected_drops: u64,
    callbacks_sent: u64,
    callbacks_failed: u64,
}

/// The first answer to an idempotency key, given again to repeats.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

struct Sink {
    args: Args,
    behaviour: Mutex<Behaviour>,
    answers: Mutex<HashMap<String, Answer>>,
    messages: Mutex<Vec<Value>>,
    stats: Mutex<Stats>,
    callbacks: HashMap<String, String>,
    client: reqwest::Client,
    spans: otlp::Spans,
}

type Shared = Arc<Sink>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a provider endpoint made of a request it accepted.
struct Taken {
    provider: &'static str,
    to: String,
    subject: String,
    body: String,
    /// Our message id, when the request carries it.
    message_id: Option<String>,
    answer: Answer,
    provider_id: String,
}

impl Sink {
    /// The common path of every provider endpoint: misbehaviour, then
    /// idempotency, then `take` (which checks and parses the request).
    async fn receive(
        self: &Arc<Self>,
        headers: &HeaderMap,
        take: impl FnOnce(u64) -> Result<Taken, Answer>,
    ) -> Response {
        lock(&self.stats).requests += 1;
        let behaviour = lock(&self.behaviour).clone();
        let roll = |rate: f64| rate > 0.0 && rand::random::<f64>() < rate;
        if roll(behaviour.fail_rate) {
            lock(&self.stats).injected_500 += 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response();
        }
        if roll(behaviour.throttle_rate) {
            lock(&self.stats).injected_429 += 1;
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
            response.headers_mut().insert(
                "retry-after",
                behaviour.retry_after_s.to_string().parse().expect("digits"),
            );
            return response;
        }
        let key = headers
            .get("idempotency-key")
            .or_else(|| headers.get("webhook-id"))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let answer = {
            // Under the answers lock: two attempts with one key at once
            // take the message once.
            let mut answers = lock(&self.answers);
            match key.as_ref().and_then(|key| answers.get(key)) {
                Some(first) => {
                    lock(&self.stats).duplicates += 1;
                    first.clone()
                }
                None => {
                    if key.is_none() {
                        lock(&self.stats).without_key += 1;
                    }
                    let serial = lock(&self.stats).accepted + 1;
                    match take(serial) {
                        Ok(taken) => {
                            lock(&self.stats).accepted += 1;
                            if let Some(key) = &key {
                                answers.insert(key.clone(), taken.answer.clone());
                            }
                            self.keep(&taken, key.as_deref(), header(headers, "traceparent"));
                            taken.answer
                        }
                        Err(refusal) => {
                            let mut stats = lock(&self.stats);
                            match refusal.status {
                                StatusCode::UNAUTHORIZED => stats.unauthorized += 1,
                                _ => stats.rejected += 1,
                            }
                            return refusal.into_response();
                        }
                    }
                }
            }
        };
        if roll(behaviour.timeout_rate) {
            lock(&self.stats).injected_timeouts += 1;
            tokio::time::sleep(Duration::from_millis(behaviour.hang_ms)).await;
        } else if roll(behaviour.drop_rate) {
            lock(&self.stats).injected_drops += 1;
            let mut response = answer.into_response();
            response
                .headers_mut()
                .insert(DROP_HEADER, "1".parse().expect("ascii"));
            return response;
        }
        answer.into_response()
    }

    /// Keep what arrived and, when asked, call back with its status.
    fn keep(self: &Arc<Self>, taken: &Taken, key: Option<&str>, traceparent: &str) {
        let received_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        lock(&self.messages).push(json!({
            "provider": taken.provider,
            "idempotency_key": key,
            "traceparent": (!traceparent.is_empty()).then_some(traceparent),
            "message_id": taken.message_id,
            "provider_id": taken.provider_id,
            "to": taken.to,
            "subject": taken.subject,
            "body": taken.body,
            "received_at_ms": received_at_ms,
        }));
        let Some(url) = self.callbacks.get(taken.provider).cloned() else {
            return;
        };
        let bounced = taken.to.contains("bounce");
        let payload = match taken.provider {
            "sendgrid" => json!([{
                "event": if bounced { "bounce" } else { "delivered" },
                "sg_message_id": format!("{}.filter0001", taken.provider_id),
                "message_id": taken.message_id,
                "email": taken.to,
                "timestamp": received_at_ms / 1000,
            }])
            .to_string(),
            "twilio" => format!(
                "MessageSid={}&MessageStatus={}",
                taken.provider_id,
                if bounced { "undelivered" } else { "delivered" }
            ),
            _ => json!({
                "message_id": taken.message_id.clone().unwrap_or_else(|| taken.provider_id.clone()),
                "status": if bounced { "bounced" } else { "delivered" },
            })
            .to_string(),
        };
        let sink = self.clone();
        let callback_id = format!("cb-{}", taken.provider_id);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sent = sink.call_back(&url, &callback_id, payload).await;
            let mut stats = lock(&sink.stats);
            match sent {
                Ok(()) => stats.callbacks_sent += 1,
                Err(error) => {
                    stats.callbacks_failed += 1;
                    eprintln!("provider-sink: callback to {url} failed: {error:#}");
                }
            }
        });
    }

    /// Post one signed callback, retrying a few times.
    async fn call_back(&self, url: &str, id: &str, payload: String) -> anyhow::Result<()> {
        let secret = self
            .args
            .callback_secret
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--callback needs --callback-secret"))?;
        let webhook = standardwebhooks::Webhook::new(secret)
            .map_err(|error| anyhow::anyhow!("--callback-secret: {error}"))?;
        let mut last = None;
        for attempt in 0..5u32 {
            let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
            let signature = webhook
                .sign(id, timestamp, payload.as_bytes())
                .map_err(|error| anyhow::anyhow!("signing: {error}"))?;
            let sent = self
                .client
                .post(url)
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(payload.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = Some(anyhow::anyhow!("HTTP {}", response.status())),
                Err(error) => last = Some(error.into()),
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }
}

fn refuse(status: StatusCode, body: impl Into<String>) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

async fn sendgrid(State(sink): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let take = |serial: u64| {
        if let Some(key) = &sink.args.sendgrid_key {
            if header(&headers, "authorization") != format!("Bearer {key}") {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    json!({"errors": [{"message": "The provided authorization grant is invalid"}]})
                        .to_string(),
                ));
            }
        }
        let mail: Value = serde_json::from_slice(&body).map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": "Bad Request"}]}).to_string(),
            )
        })?;
        let personalization = &mail["personalizations"][0];
        let to = personalization["to"][0]["email"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !to.contains('@') || to.contains("invalid") {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                json!({"errors": [{"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email"}]}).to_string(),
            ));
        }
        let provider_id = format!("sg{serial:08}");
        Ok(Taken {
            provider: "sendgrid",
            subject: mail["subject"].as_str().unwrap_or_default().to_owned(),
            body: mail["content"][0]["value"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message_id: personalization["custom_args"]["message_id"]
                .as_str()
                .map(str::to_owned),
            answer: Answer {
                status: StatusCode::ACCEPTED,
                headers: vec![("x-message-id", provider_id.clone())],
                body: String::new(),
            },
            provider_id,
            to,
        })
    };
    sink.receive(&headers, take).await
}

async fn twilio(
    State(sink): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let take = |serial: u64| {
        if let (Some(sid), Some(token)) = (&sink.args.twilio_sid, &sink.args.twilio_token) {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
            );
            if header(&headers, "authorization") != expected
                || account != format!("{sid}/Messages.json")
            {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    json!({"code": 20003, "message": "Authenticate", "status": 401}).to_string(),
                ));
            }
        }
        let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        let to = form.get("To").cloned().unwrap_or_default();
        if !to.starts_with('+') || to.len() < 8 {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                json!({"code": 21211, "message": format!("Invalid 'To' Phone Number: {to}"), "status": 400}).to_string(),
            ));
        }
        let provider_id = format!("SM{serial:032x}");
        Ok(Taken {
            provider: "twilio",
            subject: String::new(),
            body: form.get("Body").cloned().unwrap_or_default(),
            message_id: None,
            answer: Answer {
                status: StatusCode::CREATED,
                headers: vec![("content-type", "application/json".into())],
                body: json!({"sid": provider_id, "status": "queued", "to": to}).to_string(),
            },
            provider_id,
            to,
        })
    };
    sink.receive(&headers, take).await
}

async fn slack(
    State(sink): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let take = |serial: u64| {
        if path == "gone" {
            return Err(refuse(StatusCode::GONE, "channel_is_archived"));
        }
        if sink
            .args
            .slack_path
            .as_ref()
            .is_some_and(|expected| *expected != path)
        {
            return Err(refuse(StatusCode::NOT_FOUND, "no_service"));
        }
        let posted: Value = serde_json::from_slice(&body)
            .map_err(|_| refuse(StatusCode::BAD_REQUEST, "invalid_payload"))?;
        let text = posted["text"].as_str().unwrap_or_default().to_owned();
        if text.is_empty() {
            return Err(refuse(StatusCode::BAD_REQUEST, "no_text"));
        }
        Ok(Taken {
            provider: "slack",
            to: format!("services/{}", path.split('/').next().unwrap_or_default()),
            subject: String::new(),
            body: text,
            message_id: None,
            answer: Answer {
                status: StatusCode::OK,
                headers: vec![("content-type", "text/plain".into())],
                body: "ok".into(),
            },
            provider_id: format!("slack-{serial}"),
        })
    };
    sink.receive(&headers, take).await
}

async fn webhook(
    State(sink): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let take = |serial: u64| {
        if let Some(secret) = &sink.args.webhook_secret {
            let verified = standardwebhooks::Webhook::new(secret)
                .map_err(|error| error.to_string())
                .and_then(|webhook| {
                    webhook
                        .verify(&body, &headers)
                        .map_err(|error| error.to_string())
                });
            if let Err(reason) = verified {
                lock(&sink.stats).bad_signatures += 1;
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": format!("signature: {reason}")}).to_string(),
                ));
            }
        }
        let event: Value = serde_json::from_slice(&body).map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                json!({"error": "not JSON"}).to_string(),
            )
        })?;
        let data = &event["data"];
        Ok(Taken {
            provider: "webhook",
            to: data["to"].as_str().unwrap_or(&path).to_owned(),
            subject: data["subject"].as_str().unwrap_or_default().to_owned(),
            body: data["body"].as_str().unwrap_or_default().to_owned(),
            message_id: data["id"].as_str().map(str::to_owned),
            answer: Answer {
                status: StatusCode::OK,
                headers: vec![("content-type", "application/json".into())],
                body: json!({"received": true}).to_string(),
            },
            provider_id: format!("wh-{serial}"),
        })
    };
    sink.receive(&headers, take).await
}

async fn list_messages(State(sink): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!({ "messages": *lock(&sink.messages) }))
}

async fn show_stats(State(sink): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!(*lock(&sink.stats)))
}

async fn set_behaviour(State(sink): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Behaviour>(&body) {
        Ok(behaviour) => {
            *lock(&sink.behaviour) = behaviour.clone();
            axum::Json(json!(behaviour)).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

/// The connection of a response marked with [`DROP_HEADER`] is closed
/// without an answer.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(ListCommand::List { url, per_provider }) = &args.command {
        return list(url, *per_provider).await;
    }
    let mut callbacks = HashMap::new();
    for pair in &args.callbacks {
        let (provider, url) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--callback takes PROVIDER=URL, not `{pair}`"))?;
        callbacks.insert(provider.to_owned(), url.to_owned());
    }
    if !callbacks.is_empty() && args.callback_secret.is_none() {
        anyhow::bail!("--callback needs --callback-secret to sign the callbacks");
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let address = listener.local_addr()?;
    let sink = Arc::new(Sink {
        behaviour: Mutex::new(args.behaviour.clone()),
        answers: Mutex::new(HashMap::new()),
        messages: Mutex::new(Vec::new()),
        stats: Mutex::new(Stats::default()),
        callbacks,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        args,
        spans: otlp::Spans::default(),
    });
    let app = Router::new()
        .route("/v3/mail/send", post(sendgrid))
        .route("/2010-04-01/Accounts/{*account}", post(twilio))
        .route("/services/{*path}", post(slack))
        .route("/webhooks/{*path}", post(webhook))
        .route("/_sink/messages", get(list_messages))
        .route("/_sink/stats", get(show_stats))
        .route("/_sink/behaviour", put(set_behaviour))
        .route(
            "/v1/traces",
            post(
                |State(sink): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                    sink.spans.export(&headers, &body)
                },
            ),
        )
        .route(
            "/_sink/spans",
            get(|State(sink): State<Shared>| async move { axum::Json(sink.spans.list()) }),
        )
        .with_state(sink);
    println!("provider-sink listening on http://{address}");
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let response: Response = app
                            .oneshot(request.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|never: Infallible| match never {});
                        if response.headers().contains_key(DROP_HEADER) {
                            return Err(Dropped);
                        }
                        Ok(response)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
