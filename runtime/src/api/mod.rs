//! The HTTP API of `journeyd` (axum).
//!
//! [`router`] builds the whole API over a [`Runtime`], so tests can drive it
//! with `oneshot` and no socket. Every error is a JSON body
//! `{"error": {"code", "message"}}` with a stable code and the right 4xx or
//! 5xx; internal failures are logged, not shown. Routes:
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/v1/events` | ingest an event; `202` once durable |
//! | PUT, GET | `/v1/customers/{id}` | upsert a profile; read the single view |
//! | POST, GET | `/v1/journeys` | deploy a TOML definition (`?file=`); list versions |
//! | GET | `/v1/journeys/{name}/funnel` | drop-off report: per step and variant, instances that reached it, wait after it, ended there |
//! | POST | `/v1/journeys/{name}/purge` | remove finished instances that finished before `{"before"}` (RFC 3339 or a date) with their history and messages, keeping their funnel counts; `{"dry_run": true}` only counts; at most `{"limit"}` (10,000) per call, `"more"` says whether some remain |
//! | POST, GET | `/v1/journeys/{name}/migrations` | move running instances of one version to another (validated first); list |
//! | PUT | `/v1/plugins/{name}` | push a component (the body is the `.wasm`) |
//! | GET | `/v1/plugins` | every plugin version with its run counts, and every tag |
//! | GET | `/v1/plugins/{name}` | one plugin: versions, counts, tags and every tag change |
//! | PUT | `/v1/plugins/{name}/tags/{tag}` | point a tag at a version, with an optional rollout |
//! | PUT | `/v1/plugins/{name}/grant` | let a step plugin's `wasi:http` requests reach hosts: `{"hosts", "secrets", "timeout_ms", "max_response_bytes"}` (no hosts: revoke) |
//! | POST | `/v1/plugins/{name}/tags/{tag}/rollback` | end a tag's rollout |
//! | GET | `/v1/instances` | list (`?journey=&status=&after=&limit=`) |
//! | GET | `/v1/instances/{id}` | one instance with its timeline (`?wait_ms=` waits for it to finish) |
//! | POST | `/v1/instances/{id}/retry`, `/skip`, `/cancel` | an operator's action: retry a failed instance (`{"plugin"}` to run another version), skip it to a step (`{"to"}`), cancel it; `{"reason"}` is recorded |
//! | POST | `/v1/journeys/{name}/instances/retry`, `/skip`, `/cancel` | the same for every instance of the journey it applies to (`{"step"}`: only those at that step; `{"dry_run": true}` only counts) |
//! | GET | `/v1/outbox` | queued messages with their deliveries (`?instance=&limit=`) |
//! | GET | `/v1/integrations` | the integrations in force |
//! | PUT | `/v1/integrations/{channel}` | set a channel's integration: `{"plugin", "config", "hosts", "secrets", "callback_secret", "rate_per_second", "concurrency", "max_attempts", "max_age_ms", "timeout_ms", "enabled"}`; checked by rendering a sample message |
//! | GET | `/v1/deliveries` | messages by delivery status (`?status=dead,failed&limit=`; bounced, failed and dead by default) |
//! | GET | `/v1/deliveries/{id}` | one message and its delivery, with every attempt |
//! | POST | `/v1/deliveries/replay` | queue undelivered messages again under the same ids: `{"ids": [...]}` |
//! | POST | `/v1/callbacks/{channel}` | a provider's status callback, signed (Standard Webhooks, the integration's callback secret); statuses become events |
//! | GET | `/v1/clock` | the runtime's time and whether it is simulated |
//! | POST | `/v1/clock/advance` | move a simulated clock forward (`{"ms"}` or `{"to_ms"}`); due timers fire. With `"settle_ms"` the clock stops at each due timer until the runtime settles, so every timer fires on time |
//! | GET | `/v1/frequency-caps` | the frequency caps in force |
//! | PUT | `/v1/frequency-caps` | replace them: `{"caps": [{"channel", "limit", "period_ms"}]}` |
//! | GET, POST | `/v1/tokens` | list API tokens (names and scopes); create one: `{"name", "scope"}` (`ingest`, `read`, `admin`), its secret shown once |
//! | DELETE | `/v1/tokens/{name}` | revoke a token |
//! | GET | `/healthz` | liveness: the process serves HTTP |
//! | GET | `/readyz` | readiness: `200` when it can take events and run steps, `503` with what stands in the way (starting, workers, committer, timer loop, host faults) |
//! | GET | `/metrics` | Prometheus text |
//!
//! Every route but `/healthz`, `/readyz` and `/v1/callbacks/...` needs an
//! API token (`Authorization: Bearer`) with the route's scope: `ingest`
//! for events and profiles, `read` for every `GET`, `admin` for the rest
//! (see `auth`).
//!
//! Until the runtime has finished starting (resumed its instances and
//! started its timer loop) every `/v1` route answers `503 not_ready`.
//!
//! This file holds the router, the layers every route shares (the JSON
//! error shape, durable reads, the start gate) and body parsing; the
//! handlers live in one module per area (`events`, `customers`,
//! `journeys`, `plugins`, `instances`, `outbox`, `integrations`, `caps`,
//! `clock`, `ops`),
//! and `error` owns the error codes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub mod auth;
mod caps;
mod clock;
mod customers;
pub mod error;
mod events;
mod instances;
mod integrations;
mod journeys;
mod ops;

pub use self::ops::{BACKUP_PAUSE_HEADER, BACKUP_RECORDS_HEADER};
mod outbox;
mod plugins;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::json;

use self::error::{ApiError, ErrorCode};
use crate::executor::{self, IncomingEvent, Runtime};
use crate::store::{
    Canary, HistoryEntry, Instance, InstanceFilter, InstanceId, InstanceStatus, MigrationRecord,
    OutboxMessage, PluginRecord, TagRecord, VIEW_INTERACTIONS,
};

/// Largest event body accepted.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Largest body of every other JSON route (profiles, tags, caps, actions,
/// migrations, the clock).
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;
/// Largest journey definition accepted.
pub const MAX_JOURNEY_BYTES: usize = 256 * 1024;
/// Largest plugin component accepted.
pub const MAX_PLUGIN_BYTES: usize = 32 * 1024 * 1024;
/// Longest `wait_ms` honoured.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Longest an event waits for its commit before the client hears that it
/// is in doubt (the store keeps failing; the commit may still happen).
const INGEST_WAIT: Duration = Duration::from_secs(15);

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
}

/// A request body as bytes, or the error that names the limit it broke.
/// Run blocking work (store reads and writes) on tokio's blocking pool,
/// so it never holds up the threads that serve requests.
async fn off_async<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> ApiResult<T>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(executor::Error::from)?
        .map_err(Into::into)
}

fn body_bytes(body: Result<Bytes, BytesRejection>, what: &str, limit: usize) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("{what} is larger than the limit of {limit} bytes"),
            )
        } else {
            ApiError::new(
                error::code_for_status(rejection.status()),
                format!("{what}: {}", rejection.body_text()),
            )
        }
    })
}

type ApiResult<T> = Result<T, ApiError>;

/// The whole API over `state`.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route(
            "/v1/events",
            post(events::ingest_event).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
        )
        .route(
            "/v1/customers/{id}",
            put(customers::put_customer).get(customers::get_customer),
        )
        .route(
            "/v1/customers/{id}/forget",
            post(customers::forget_customer),
        )
        .route("/v1/audit", get(customers::audit_log))
        .route(
            "/v1/journeys",
            post(journeys::deploy_journey)
                .get(journeys::list_journeys)
                .layer(DefaultBodyLimit::max(MAX_JOURNEY_BYTES)),
        )
        .route("/v1/journeys/{name}/funnel", get(journeys::show_funnel))
        .route("/v1/journeys/{name}/purge", post(journeys::purge_journey))
        .route(
            "/v1/journeys/{name}/migrations",
            post(journeys::migrate_journey).get(journeys::list_migrations),
        )
        .route(
            "/v1/plugins/{name}",
            put(plugins::push_plugin)
                .get(plugins::show_plugin)
                .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/v1/plugins", get(plugins::list_plugins))
        .route("/v1/plugins/{name}/tags/{tag}", put(plugins::set_tag))
        .route("/v1/plugins/{name}/grant", put(plugins::grant_plugin))
        .route(
            "/v1/plugins/{name}/tags/{tag}/rollback",
            post(plugins::roll_back),
        )
        .route("/v1/instances", get(instances::list_instances))
        .route("/v1/instances/{id}", get(instances::show_instance))
        .route(
            "/v1/instances/{id}/{action}",
            post(instances::act_on_instance),
        )
        .route(
            "/v1/journeys/{name}/instances/{action}",
            post(instances::act_on_journey),
        )
        .route("/v1/outbox", get(outbox::list_outbox))
        .route("/v1/integrations", get(integrations::list_integrations))
        .route(
            "/v1/integrations/{channel}",
            put(integrations::set_integration),
        )
        .route("/v1/deliveries", get(integrations::list_deliveries))
        .route(
            "/v1/deliveries/replay",
            post(integrations::replay_deliveries),
        )
        .route("/v1/deliveries/{*id}", get(integrations::show_delivery))
        .route(
            "/v1/callbacks/{channel}",
            post(integrations::receive_callback)
                .layer(DefaultBodyLimit::max(integrations::MAX_CALLBACK_BYTES)),
        )
        .route("/v1/clock", get(clock::show_clock))
        .route("/v1/clock/advance", post(clock::advance_clock))
        .route(
            "/v1/frequency-caps",
            get(caps::show_caps).put(caps::put_caps),
        )
        .route(
            "/v1/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route("/v1/tokens/{name}", delete(auth::revoke_token))
        .route("/v1/backup", get(ops::take_backup))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::render_metrics));
    #[cfg(feature = "fault-injection")]
    let router = router.route("/v1/faults", get(ops::show_faults).put(ops::set_faults));
    router
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            durable_reads,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_until_started,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Every error is the JSON `{"error": {"code", "message"}}`: an error
/// response something other than a handler made (the router's 405, an
/// extractor's rejection of a query or a path) is turned into that shape,
/// keeping its text as the message.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|kind| kind.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not take {method}"),
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned(),
        _ => text,
    };
    let code = match message.as_str() {
        text if text.starts_with("Failed to deserialize query string") => ErrorCode::BadQuery,
        text if text.starts_with("Invalid URL") => ErrorCode::BadPath,
        _ => error::code_for_status(status),
    };
    let mut error = ApiError::new(code, message).into_response();
    *error.status_mut() = status;
    error
}

/// A `GET` answers only with what is durable: the store shows a commit a
/// moment before its flush, so the answer waits for that flush (about a
/// millisecond; longer only while the store fails, see `/readyz`).
async fn durable_reads(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let read =
        request.method() == axum::http::Method::GET && request.uri().path().starts_with("/v1/");
    let response = next.run(request).await;
    if read {
        let durable = state.runtime.committer().wait_durable();
        if tokio::time::timeout(INGEST_WAIT, durable).await.is_err() {
            return ApiError::new(
                ErrorCode::NotDurable,
                format!(
                    "what this read shows was not made durable within {} s (see /readyz)",
                    INGEST_WAIT.as_secs()
                ),
            )
            .into_response();
        }
    }
    response
}

/// Every `/v1` route waits for the runtime to finish starting: an event
/// taken while instances are being resumed could be scheduled twice.
async fn refuse_until_started(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.uri().path().starts_with("/v1/") && !state.runtime.is_started() {
        return ApiError::new(
            ErrorCode::NotReady,
            "journeyd is starting (resuming instances); try again in a moment",
        )
        .into_response();
    }
    next.run(request).await
}

/// A JSON object body of at most [`MAX_JSON_BODY_BYTES`], read as `T`.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> ApiResult<T> {
    json_object(body, what, MAX_JSON_BODY_BYTES, ErrorCode::BadBody)
}

/// Every JSON body goes through here: at most `limit` bytes, one JSON
/// object (not an array, no key twice, not nested too deep), then read as
/// `T`; anything else is refused with `code`, naming what is wrong.
fn json_object<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
    limit: usize,
    code: ErrorCode,
) -> ApiResult<T> {
    let body = body_bytes(body, what, limit)?;
    let invalid = |reason: String| ApiError::new(code, format!("{what} is not valid: {reason}"));
    let text = std::str::from_utf8(&body).map_err(|_| invalid("it is not UTF-8 text".into()))?;
    crate::json::check_object(text).map_err(|error| invalid(error.to_string()))?;
    serde_json::from_str(text).map_err(|error| invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::clock::SimulatedClock;
    use crate::store::{SledStore, sled::SledOptions};

    /// The API over a runtime on a fresh store, started or still starting,
    /// and the secret of its first admin token.
    fn app(started: bool) -> (tempfile::TempDir, Router, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path(), &SledOptions::default()).expect("open");
        let runtime = Runtime::new(
            Arc::new(store),
            Arc::new(SimulatedClock::starting_at(1_000)),
            executor::Settings::default(),
        )
        .expect("a runtime");
        if started {
            runtime.set_ready();
        }
        let admin = runtime
            .first_admin_token()
            .expect("a token")
            .expect("the first");
        let app = router(AppState {
            runtime,
            metrics: None,
        });
        (dir, app, admin)
    }

    /// Send one request with `token`; the status and the JSON body.
    async fn call_as(
        app: &Router,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Body::from(body.to_owned()))
            .expect("a request");
        let response = app.clone().oneshot(request).await.expect("an answer");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_v1_route_waits_until_the_runtime_has_started_but_health_answers() {
        let (_dir, app, admin) = app(false);
        let call = |method, path| call_as(&app, Some(&admin), method, path, "");
        let (status, body) = call("GET", "/v1/clock").await;
        assert_eq!((status, &body["error"]["code"]), (503, &json!("not_ready")));
        let (status, body) = call("GET", "/healthz").await;
        assert_eq!((status, &body["status"]), (200, &json!("ok")));
        let (status, body) = call("GET", "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["problems"][0]
                .as_str()
                .unwrap_or("")
                .starts_with("starting"),
            "{body}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_made_outside_the_handlers_have_the_same_json_shape() {
        let (_dir, app, admin) = app(true);
        let call = |app, method, path, body| call_as(app, Some(&admin), method, path, body);
        let cases = [
            (
                "DELETE",
                "/v1/events",
                "",
                405,
                "method_not_allowed",
                "does not take DELETE",
            ),
            (
                "GET",
                "/v1/instances?limit=many",
                "",
                400,
                "bad_query",
                "limit",
            ),
            ("GET", "/v1/nowhere", "", 404, "not_found", "no such route"),
            (
                "PUT",
                "/v1/frequency-caps",
                "[]",
                400,
                "bad_body",
                "found an array",
            ),
            (
                "GET",
                "/v1/customers/c-1",
                "",
                404,
                "unknown_customer",
                "`c-1`",
            ),
        ];
        for (method, path, body, status, code, mention) in cases {
            let (got, answer) = call(&app, method, path, body).await;
            assert_eq!(
                (got, &answer["error"]["code"]),
                (status, &json!(code)),
                "{method} {path}: {answer}"
            );
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(mention),
                "{method} {path}: {answer}"
            );
        }
        let (status, clock) = call(&app, "GET", "/v1/clock", "").await;
        assert_eq!((status, &clock["now_ms"]), (200, &json!(1_000)));
    }

    /// Every route of the table in the module docs, as `(method, path)`.
    fn documented_routes() -> Vec<(String, String)> {
        let source = include_str!("mod.rs");
        let mut routes = Vec::new();
        for line in source.lines().filter(|line| line.starts_with("//! | ")) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (methods, paths) = (cells[1], cells[2]);
            if methods == "method" || methods.starts_with("---") {
                continue;
            }
            for path in paths.split(", ") {
                let path = path.trim_matches('`');
                let path = if path.starts_with('/') {
                    path.to_owned()
                } else {
                    // `/retry`, `/skip` after the first path: the same base.
                    continue;
                };
                let path = path
                    .replace("{id}", "i-1")
                    .replace("{name}", "n")
                    .replace("{tag}", "t")
                    .replace("{channel}", "email")
                    .replace("{action}", "retry");
                for method in methods.split(", ") {
                    routes.push((method.to_owned(), path.clone()));
                }
            }
        }
        routes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_route_wants_a_token_of_its_scope() {
        let (_dir, app, admin) = app(true);
        let create = |name: &'static str, scope: &'static str| {
            let (app, admin) = (app.clone(), admin.clone());
            async move {
                let body = json!({ "name": name, "scope": scope }).to_string();
                let (status, created) =
                    call_as(&app, Some(&admin), "POST", "/v1/tokens", &body).await;
                assert_eq!(status, 201, "{created}");
                created["token"]
                    .as_str()
                    .expect("the secret, once")
                    .to_owned()
            }
        };
        let ingest = create("crm", "ingest").await;
        let read = create("grafana", "read").await;
        let routes = documented_routes();
        assert!(routes.len() > 30, "the table was read: {routes:?}");
        for (method, path) in routes {
            let needed = auth::required_scope(
                &method.parse().expect("a method"),
                path.split('?').next().unwrap_or(&path),
            );
            let (no_token, answer) = call_as(&app, None, &method, &path, "").await;
            let (wrong, wrong_answer) =
                call_as(&app, Some("jdt_admin_not-a-token"), &method, &path, "").await;
            let Some(needed) = needed else {
                assert_ne!(no_token, 401, "{method} {path} is open: {answer}");
                continue;
            };
            assert_eq!(
                (no_token, &answer["error"]["code"]),
                (401, &json!("unauthenticated")),
                "{method} {path}"
            );
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(needed.as_str()),
                "{method} {path}: {answer}"
            );
            assert_eq!(
                (wrong, &wrong_answer["error"]["code"]),
                (401, &json!("invalid_token")),
                "{method} {path}"
            );
            let under = match needed {
                crate::store::Scope::Admin | crate::store::Scope::Ingest => &read,
                crate::store::Scope::Read => &ingest,
            };
            let (status, answer) = call_as(&app, Some(under), &method, &path, "").await;
            assert_eq!(
                (status, &answer["error"]["code"]),
                (403, &json!("missing_scope")),
                "{method} {path}"
            );
            let (status, answer) = call_as(&app, Some(&admin), &method, &path, "").await;
            assert!(
                status != 401 && status != 403,
                "{method} {path} with an admin token: {answer}"
            );
        }
        // Revoked: refused from then on.
        let (status, _) = call_as(&app, Some(&admin), "DELETE", "/v1/tokens/crm", "").await;
        assert_eq!(status, 200);
        let (status, answer) = call_as(&app, Some(&ingest), "POST", "/v1/events", "{}").await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (401, &json!("invalid_token"))
        );
        let (_, listed) = call_as(&app, Some(&admin), "GET", "/v1/tokens", "").await;
        let listed = listed.to_string();
        assert!(
            listed.contains("grafana") && !listed.contains(&read),
            "{listed}"
        );
    }
}
