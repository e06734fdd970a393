//! The HTTP API of `journeyd` (axum).
//!
//! [`router`] builds the whole API over a [`Runtime`], so tests can drive it
//! with `oneshot` and no socket. Every error is a JSON body
//! `{"error": {"code", "message"}}` with a stable code and the right 4xx or
//! 5xx; internal failures are logged, not shown.
//!
//! Each route is described on its handler (`#[utoipa::path]`: method,
//! path, parameters, body, answers) and registered from that description
//! (`documented_routes`), so the OpenAPI 3.1 document served at
//! `/v1/openapi.json` (see `openapi`) is the complete list. `journeyd`'s
//! client commands and `docs/` cover the same routes by task.
//!
//! Every route but `/healthz`, `/readyz`, `/v1/openapi.json` and
//! `/v1/callbacks/...` needs an API token (`Authorization: Bearer`) with
//! the route's scope: `ingest` for events and profiles, `read` for every
//! `GET` but `/v1/backup`, `admin` for the rest (see `auth`).
//!
//! Until the runtime has finished starting (resumed its instances and
//! started its timer loop) every `/v1` route answers `503 not_ready`.
//!
//! This file holds the router, the layers every route shares (the JSON
//! error shape, durable reads, the start gate) and body parsing; the
//! handlers live in one module per area (`events`, `customers`,
//! `journeys`, `plugins`, `instances`, `outbox`, `integrations`, `caps`,
//! `clock`, `ops`), `openapi` frames the description, and `error` owns
//! the error codes.

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
pub(crate) use self::instances::deliveries_of;
mod integrations;
mod journeys;
mod openapi;
mod ops;

pub use self::ops::{BACKUP_PAUSE_HEADER, BACKUP_RECORDS_HEADER};
mod outbox;
mod plugins;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

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

/// Every route, each registered with its description.
fn documented_routes() -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::with_openapi(openapi::Description::openapi())
        .routes(routes!(events::ingest_event).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)))
        .routes(routes!(customers::put_customer, customers::get_customer))
        .routes(routes!(customers::forget_customer))
        .routes(routes!(customers::audit_log))
        .routes(
            routes!(journeys::deploy_journey, journeys::list_journeys)
                .layer(DefaultBodyLimit::max(MAX_JOURNEY_BYTES)),
        )
        .routes(routes!(journeys::show_funnel))
        .routes(routes!(journeys::purge_journey))
        .routes(routes!(
            journeys::migrate_journey,
            journeys::list_migrations
        ))
        .routes(
            routes!(plugins::push_plugin, plugins::show_plugin)
                .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .routes(routes!(plugins::list_plugins))
        .routes(routes!(plugins::set_tag))
        .routes(routes!(plugins::grant_plugin))
        .routes(routes!(plugins::roll_back))
        .routes(routes!(instances::list_instances))
        .routes(routes!(instances::show_instance))
        .routes(routes!(instances::act_on_instance))
        .routes(routes!(instances::act_on_journey))
        .routes(routes!(outbox::list_outbox))
        .routes(routes!(integrations::list_integrations))
        .routes(routes!(integrations::set_integration))
        .routes(routes!(integrations::list_deliveries))
        .routes(routes!(integrations::replay_deliveries))
        .routes(routes!(integrations::show_delivery))
        .routes(
            routes!(integrations::receive_callback)
                .layer(DefaultBodyLimit::max(integrations::MAX_CALLBACK_BYTES)),
        )
        .routes(routes!(clock::show_clock))
        .routes(routes!(clock::advance_clock))
        .routes(routes!(caps::show_caps, caps::put_caps))
        .routes(routes!(auth::list_tokens, auth::create_token))
        .routes(routes!(auth::revoke_token))
        .routes(routes!(ops::take_backup))
        .routes(routes!(openapi::describe))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::render_metrics));
    #[cfg(feature = "fault-injection")]
    let router = router.routes(routes!(ops::show_faults, ops::set_faults));
    router
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
    let (router, description) = documented_routes().split_for_parts();
    let description =
        serde_json::to_value(openapi::finish(description)).expect("the description is JSON");
    let router = router.layer(axum::Extension(Arc::new(description)));
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

    #[test]
    fn every_route_is_registered_with_its_description() {
        // `routes!` takes a handler's path and method from its
        // `#[utoipa::path]`; a plain axum route would be undocumented.
        let source = include_str!("mod.rs");
        let plain = [".route(", ".route_service(", ".nest("];
        let (router, _) = source
            .split_once("#[cfg(test)]")
            .expect("this file has tests");
        for call in plain {
            assert!(
                !router.contains(call),
                "api/mod.rs registers a route with `{call}`: use `.routes(routes!(...))`"
            );
        }
        let description = openapi::finish(documented_routes().split_for_parts().1);
        let operations: usize = description
            .paths
            .paths
            .values()
            .map(|item| {
                let item = serde_json::to_value(item).expect("JSON");
                item.as_object().map_or(0, |methods| methods.len())
            })
            .sum();
        assert!(operations >= 40, "{operations} documented operations");
    }

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

    /// Every route of the API description, as `(method, path)` with its
    /// parameters filled in.
    fn described_routes() -> Vec<(String, String)> {
        let description = openapi::finish(super::documented_routes().split_for_parts().1);
        let mut routes = Vec::new();
        for (path, item) in &description.paths.paths {
            let item = serde_json::to_value(item).expect("JSON");
            let path = path
                .replace("{id}", "i-1")
                .replace("{name}", "n")
                .replace("{tag}", "t")
                .replace("{channel}", "email")
                .replace("{action}", "retry");
            for method in item.as_object().expect("a path item").keys() {
                routes.push((method.to_uppercase(), path.clone()));
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
        let routes = described_routes();
        assert!(routes.len() > 30, "the description was read: {routes:?}");
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
