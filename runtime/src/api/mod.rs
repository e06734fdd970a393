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
//! | POST, GET | `/v1/journeys/{name}/migrations` | move running instances of one version to another (validated first); list |
//! | PUT | `/v1/plugins/{name}` | push a component (the body is the `.wasm`) |
//! | GET | `/v1/plugins` | every plugin version with its run counts, and every tag |
//! | GET | `/v1/plugins/{name}` | one plugin: versions, counts, tags and every tag change |
//! | PUT | `/v1/plugins/{name}/tags/{tag}` | point a tag at a version, with an optional rollout |
//! | POST | `/v1/plugins/{name}/tags/{tag}/rollback` | end a tag's rollout |
//! | GET | `/v1/instances` | list (`?journey=&status=&after=&limit=`) |
//! | GET | `/v1/instances/{id}` | one instance with its timeline (`?wait_ms=` waits for it to finish) |
//! | POST | `/v1/instances/{id}/retry`, `/skip`, `/cancel` | an operator's action: retry a failed instance (`{"plugin"}` to run another version), skip it to a step (`{"to"}`), cancel it; `{"reason"}` is recorded |
//! | POST | `/v1/journeys/{name}/instances/retry`, `/skip`, `/cancel` | the same for every instance of the journey it applies to (`{"step"}`: only those at that step; `{"dry_run": true}` only counts) |
//! | GET | `/v1/outbox` | queued messages (`?instance=&limit=`) |
//! | GET | `/v1/clock` | the runtime's time and whether it is simulated |
//! | POST | `/v1/clock/advance` | move a simulated clock forward (`{"ms"}` or `{"to_ms"}`); due timers fire. With `"settle_ms"` the clock stops at each due timer until the runtime settles, so every timer fires on time |
//! | GET | `/v1/frequency-caps` | the frequency caps in force |
//! | PUT | `/v1/frequency-caps` | replace them: `{"caps": [{"channel", "limit", "period_ms"}]}` |
//! | GET | `/healthz` | liveness: the process serves HTTP |
//! | GET | `/readyz` | readiness: `200` when it can take events and run steps, `503` with what stands in the way (starting, workers, committer, timer loop, host faults) |
//! | GET | `/metrics` | Prometheus text |
//!
//! Until the runtime has finished starting (resumed its instances and
//! started its timer loop) every `/v1` route answers `503 not_ready`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub mod error;
use axum::routing::{get, post, put};
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
            post(ingest_event).layer(DefaultBodyLimit::max(MAX_EVENT_BYTES)),
        )
        .route("/v1/customers/{id}", put(put_customer).get(get_customer))
        .route(
            "/v1/journeys",
            post(deploy_journey)
                .get(list_journeys)
                .layer(DefaultBodyLimit::max(MAX_JOURNEY_BYTES)),
        )
        .route("/v1/journeys/{name}/funnel", get(show_funnel))
        .route(
            "/v1/journeys/{name}/migrations",
            post(migrate_journey).get(list_migrations),
        )
        .route(
            "/v1/plugins/{name}",
            put(push_plugin)
                .get(show_plugin)
                .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/plugins/{name}/tags/{tag}", put(set_tag))
        .route("/v1/plugins/{name}/tags/{tag}/rollback", post(roll_back))
        .route("/v1/instances", get(list_instances))
        .route("/v1/instances/{id}", get(show_instance))
        .route("/v1/instances/{id}/{action}", post(act_on_instance))
        .route(
            "/v1/journeys/{name}/instances/{action}",
            post(act_on_journey),
        )
        .route("/v1/outbox", get(list_outbox))
        .route("/v1/clock", get(show_clock))
        .route("/v1/clock/advance", post(advance_clock))
        .route("/v1/frequency-caps", get(show_caps).put(put_caps))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics));
    #[cfg(feature = "fault-injection")]
    let router = router.route("/v1/faults", get(show_faults).put(set_faults));
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

async fn ingest_event(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<executor::Receipt>)> {
    let event: IncomingEvent =
        json_object(body, "the event", MAX_EVENT_BYTES, ErrorCode::InvalidEvent)?;
    // A task of its own: a client that hangs up must not cancel an ingest
    // halfway (its commit goes ahead; what follows it must too).
    let runtime = state.runtime.clone();
    let ingest = tokio::spawn(async move { runtime.ingest(event).await });
    let receipt = tokio::time::timeout(INGEST_WAIT, ingest)
        .await
        .map_err(|_| {
            ApiError::new(ErrorCode::CommitPending,
                format!(
                    "the event was not committed within {} s (see /readyz); it may still be: send it again with the same id",
                    INGEST_WAIT.as_secs()
                ),
            )
        })?
        .map_err(executor::Error::from)??;
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(receipt)))
}

async fn put_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let profile: serde_json::Value = json_object(
        body,
        &format!("customer `{id}`: the profile"),
        MAX_JSON_BODY_BYTES,
        ErrorCode::InvalidProfile,
    )?;
    state.runtime.put_customer(&id, &profile)?;
    Ok(Json(json!({ "id": id, "profile": profile })))
}

async fn get_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::store::CustomerView>> {
    executor::check_id("customer id", &id)?;
    let store = state.runtime.store().clone();
    let lookup = id.clone();
    let view =
        tokio::task::spawn_blocking(move || store.customer_view(&lookup, VIEW_INTERACTIONS, &[]))
            .await
            .map_err(executor::Error::from)??;
    if !view.is_known() {
        return Err(ApiError::new(
            ErrorCode::UnknownCustomer,
            format!("nothing is known about customer `{id}`: no profile, event or choice"),
        ));
    }
    Ok(Json(view))
}

#[derive(Deserialize)]
struct DeployQuery {
    file: Option<String>,
}

async fn deploy_journey(
    State(state): State<AppState>,
    Query(query): Query<DeployQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let body = body_bytes(body, "the journey", MAX_JOURNEY_BYTES)?;
    let file = query.file.unwrap_or_else(|| "<request body>".into());
    let source = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            ErrorCode::JourneySyntax,
            format!("{file}: the journey is not UTF-8 text"),
        )
    })?;
    let source = source.to_owned();
    let runtime = state.runtime.clone();
    let (version, journey) =
        tokio::task::spawn_blocking(move || runtime.deploy_journey(&file, &source))
            .await
            .map_err(executor::Error::from)??;
    let steps: Vec<&str> = journey
        .steps()
        .map(|step| step.definition.name.as_str())
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": journey.name(),
            "version": version,
            "trigger": journey.definition.trigger.event,
            "steps": steps,
        })),
    ))
}

async fn list_journeys(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let journeys: Vec<_> = state
        .runtime
        .store()
        .journeys()?
        .into_iter()
        .map(|record| {
            json!({ "name": record.name, "version": record.version, "deployed_at_ms": record.deployed_at_ms })
        })
        .collect();
    Ok(Json(json!({ "journeys": journeys })))
}

/// The body of `POST /v1/journeys/{name}/migrations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Migrate {
    from: u32,
    to: u32,
    #[serde(default)]
    steps: std::collections::BTreeMap<String, String>,
}

async fn migrate_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<MigrationRecord>)> {
    let request: Migrate = json_body(body, "the migration")?;
    let runtime = state.runtime.clone();
    let record = tokio::task::spawn_blocking(move || {
        runtime.migrate_journey(&name, request.from, request.to, request.steps)
    })
    .await
    .map_err(executor::Error::from)??;
    Ok((StatusCode::CREATED, Json(record)))
}

async fn show_funnel(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<executor::Funnel>> {
    let runtime = state.runtime.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || runtime.funnel(&name))
            .await
            .map_err(executor::Error::from)??,
    ))
}

async fn list_migrations(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let migrations: Vec<MigrationRecord> = state
        .runtime
        .migrations_of(&name)?
        .iter()
        .map(|migration| (**migration).clone())
        .collect();
    Ok(Json(json!({ "migrations": migrations })))
}

async fn push_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<crate::store::PluginRecord>)> {
    let body = body_bytes(body, "the plugin", MAX_PLUGIN_BYTES)?;
    let record = state.runtime.push_plugin(&name, body.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// A plugin version with its run counts.
#[derive(Serialize)]
struct VersionView {
    #[serde(flatten)]
    record: PluginRecord,
    runs: u64,
    failures: u64,
    failure_rate: f64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
}

/// A tag with the counts of its rollout in progress.
#[derive(Serialize)]
struct TagView {
    #[serde(flatten)]
    record: TagRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary_runs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary_failures: Option<u64>,
}

impl TagView {
    fn new(tag: &executor::Tag) -> Self {
        let rollout = tag.record.canary.is_some();
        let count = |counter: &std::sync::atomic::AtomicU64| {
            rollout.then(|| counter.load(std::sync::atomic::Ordering::Relaxed))
        };
        TagView {
            record: tag.record.clone(),
            canary_runs: count(&tag.canary_runs),
            canary_failures: count(&tag.canary_failures),
        }
    }
}

fn versions_of(runtime: &Runtime, plugin: Option<&str>) -> Vec<VersionView> {
    runtime
        .version_stats()
        .into_iter()
        .filter(|(record, _)| plugin.is_none_or(|name| record.name == name))
        .map(|(record, stats)| VersionView {
            record,
            runs: stats.runs,
            failures: stats.failures,
            failure_rate: (stats.failure_rate() * 1000.0).round() / 1000.0,
            p50_us: stats.percentile_us(50.0),
            p99_us: stats.percentile_us(99.0),
        })
        .collect()
}

fn tags_of(runtime: &Runtime, plugin: Option<&str>) -> Vec<TagView> {
    runtime
        .tags()
        .iter()
        .filter(|tag| plugin.is_none_or(|name| tag.record.plugin == name))
        .map(|tag| TagView::new(tag))
        .collect()
}

async fn list_plugins(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "plugins": versions_of(&state.runtime, None),
        "tags": tags_of(&state.runtime, None),
    }))
}

async fn show_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    executor::check_name("plugin name", &name)?;
    let versions = versions_of(&state.runtime, Some(&name));
    if versions.is_empty() {
        return Err(executor::Error::UnknownPlugin(name).into());
    }
    Ok(Json(json!({
        "name": name,
        "versions": versions,
        "tags": tags_of(&state.runtime, Some(&name)),
        "tag_changes": state.runtime.store().tag_changes(&name)?,
    })))
}

/// The body of `PUT /v1/plugins/{name}/tags/{tag}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTag {
    version: u32,
    #[serde(default)]
    canary: Option<Canary>,
    #[serde(default)]
    reason: Option<String>,
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

async fn set_tag(
    State(state): State<AppState>,
    Path((name, tag)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TagView>> {
    let request: SetTag = json_body(body, "the tag change")?;
    let reason = request.reason.unwrap_or_else(|| match &request.canary {
        Some(canary) => format!(
            "operator: roll out version {} to {}%",
            canary.version, canary.percent
        ),
        None => format!("operator: point at version {}", request.version),
    });
    change_tag(state.runtime, move |runtime| {
        runtime.set_tag(&name, &tag, request.version, request.canary, &reason)
    })
    .await
}

/// Apply a tag change off the async threads (it waits for a flush) and
/// answer with the tag as it is now.
async fn change_tag(
    runtime: Arc<Runtime>,
    change: impl FnOnce(&Runtime) -> executor::Result<TagRecord> + Send + 'static,
) -> ApiResult<Json<TagView>> {
    tokio::task::spawn_blocking(move || {
        let record = change(&runtime)?;
        let tag = runtime.registry_tag(&record.plugin, &record.tag);
        Ok::<_, executor::Error>(TagView::new(&tag))
    })
    .await
    .map_err(executor::Error::from)?
    .map(Json)
    .map_err(ApiError::from)
}

/// The body of `POST /v1/plugins/{name}/tags/{tag}/rollback` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollBack {
    #[serde(default)]
    reason: Option<String>,
}

async fn roll_back(
    State(state): State<AppState>,
    Path((name, tag)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<TagView>> {
    let request: RollBack = match &body {
        Ok(bytes) if bytes.is_empty() => RollBack::default(),
        _ => json_body(body, "the rollback")?,
    };
    let reason = request
        .reason
        .unwrap_or_else(|| "operator: rollback".to_owned());
    change_tag(state.runtime, move |runtime| {
        runtime.end_rollout(&name, &tag, reason)
    })
    .await
}

#[derive(Deserialize)]
struct ListQuery {
    journey: Option<String>,
    status: Option<InstanceStatus>,
    after: Option<String>,
    limit: Option<usize>,
}

fn parse_instance_id(text: &str) -> ApiResult<InstanceId> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidId,
            format!("`{text}` is not an instance id (like `i-42`)"),
        )
    })
}

async fn list_instances(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if let Some(journey) = &query.journey {
        state.runtime.known_journey(journey)?;
    }
    let filter = InstanceFilter {
        journey: query.journey,
        status: query.status,
        after: query.after.as_deref().map(parse_instance_id).transpose()?,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let store = state.runtime.store().clone();
    let instances = tokio::task::spawn_blocking(move || store.instances(&filter))
        .await
        .map_err(executor::Error::from)??;
    Ok(Json(json!({ "instances": instances })))
}

/// An instance with everything that happened to it.
#[derive(Serialize)]
pub struct InstanceView {
    /// The instance.
    #[serde(flatten)]
    pub instance: Instance,
    /// Its history, in order.
    pub history: Vec<HistoryEntry>,
    /// The messages its steps queued.
    pub messages: Vec<OutboxMessage>,
}

#[derive(Deserialize)]
struct ShowQuery {
    wait_ms: Option<u64>,
}

async fn show_instance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> ApiResult<Json<InstanceView>> {
    let id = parse_instance_id(&id)?;
    let runtime = &state.runtime;
    let mut finished = runtime.subscribe();
    let mut instance = runtime
        .store()
        .instance(id)?
        .ok_or(executor::Error::UnknownInstance(id))?;
    if let Some(wait_ms) = query.wait_ms {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
        while matches!(
            instance.status,
            InstanceStatus::Running | InstanceStatus::Waiting
        ) {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Ok(Ok(done)) if done.id != id => continue,
                Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                Ok(_) => {}
            }
            instance = runtime
                .store()
                .instance(id)?
                .ok_or(executor::Error::UnknownInstance(id))?;
        }
    }
    let history = runtime.store().history(id)?;
    let messages = runtime.store().outbox(Some(id), 1000)?;
    Ok(Json(InstanceView {
        instance,
        history,
        messages,
    }))
}

/// The body of an operator's action (every field optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// `retry`: the plugin to run instead of the step's.
    #[serde(default)]
    plugin: Option<String>,
    /// `skip`: the step to continue at.
    #[serde(default)]
    to: Option<String>,
    /// Why, recorded in the instance's history.
    #[serde(default)]
    reason: Option<String>,
    /// Bulk: only instances at this step.
    #[serde(default)]
    step: Option<String>,
    /// Bulk: only count the instances it applies to.
    #[serde(default)]
    dry_run: bool,
}

impl ActionBody {
    /// The action named `name` with this body's arguments.
    fn action(&self, name: &str) -> ApiResult<executor::Action> {
        let unexpected = |field: &str| {
            ApiError::new(
                ErrorCode::BadBody,
                format!("`{field}` does not apply to `{name}`"),
            )
        };
        match name {
            "retry" => match &self.to {
                Some(_) => Err(unexpected("to")),
                None => Ok(executor::Action::Retry {
                    plugin: self.plugin.clone(),
                }),
            },
            "skip" => match (&self.plugin, &self.to) {
                (Some(_), _) => Err(unexpected("plugin")),
                (None, Some(to)) => Ok(executor::Action::Skip { to: to.clone() }),
                (None, None) => Err(ApiError::new(
                    ErrorCode::BadBody,
                    "`skip` needs `to`: the step the instance continues at",
                )),
            },
            "cancel" => match (&self.plugin, &self.to) {
                (Some(_), _) => Err(unexpected("plugin")),
                (_, Some(_)) => Err(unexpected("to")),
                (None, None) => Ok(executor::Action::Cancel),
            },
            _ => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no instance action `{name}`: use retry, skip or cancel"),
            )),
        }
    }

    fn reason(&self, action: &executor::Action) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| format!("operator: {}", action.name()))
    }
}

fn action_body(body: Result<Bytes, BytesRejection>) -> ApiResult<ActionBody> {
    match &body {
        Ok(bytes) if bytes.is_empty() => Ok(ActionBody::default()),
        _ => json_body(body, "the action"),
    }
}

async fn act_on_instance(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_instance_id(&id)?;
    let request = action_body(body)?;
    if request.step.is_some() || request.dry_run {
        return Err(ApiError::new(
            ErrorCode::BadBody,
            "`step` and `dry_run` are for a journey's instances: POST /v1/journeys/{name}/instances/{action}",
        ));
    }
    let action = request.action(&action)?;
    let reason = request.reason(&action);
    let runtime = state.runtime.clone();
    let instance = tokio::spawn(async move { runtime.act_on_instance(id, &action, &reason).await })
        .await
        .map_err(executor::Error::from)??;
    Ok(Json(json!({ "instance": instance })))
}

async fn act_on_journey(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<executor::BulkOutcome>> {
    let request = action_body(body)?;
    let action = request.action(&action)?;
    let reason = request.reason(&action);
    let runtime = state.runtime.clone();
    let outcome = tokio::spawn(async move {
        runtime
            .act_on_journey(
                &name,
                request.step.as_deref(),
                &action,
                &reason,
                request.dry_run,
            )
            .await
    })
    .await
    .map_err(executor::Error::from)??;
    Ok(Json(outcome))
}

#[derive(Deserialize)]
struct OutboxQuery {
    instance: Option<String>,
    limit: Option<usize>,
}

async fn list_outbox(
    State(state): State<AppState>,
    Query(query): Query<OutboxQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let instance = query
        .instance
        .as_deref()
        .map(parse_instance_id)
        .transpose()?;
    let limit = query.limit.unwrap_or(100).clamp(1, 100_000);
    let messages = state.runtime.store().outbox(instance, limit)?;
    Ok(Json(json!({ "messages": messages })))
}

async fn show_caps(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "caps": *state.runtime.frequency_caps() }))
}

/// The body of `PUT /v1/frequency-caps`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapsBody {
    caps: Vec<executor::FrequencyCap>,
}

async fn put_caps(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let request: CapsBody = json_body(body, "the frequency caps")?;
    let runtime = state.runtime.clone();
    tokio::task::spawn_blocking(move || runtime.set_frequency_caps(request.caps))
        .await
        .map_err(executor::Error::from)??;
    Ok(Json(json!({ "caps": *state.runtime.frequency_caps() })))
}

async fn show_clock(State(state): State<AppState>) -> Json<serde_json::Value> {
    let clock = state.runtime.clock();
    Json(json!({ "now_ms": clock.now_ms(), "simulated": clock.simulated().is_some() }))
}

/// The body of `POST /v1/clock/advance`: by `ms`, or to `to_ms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    ms: Option<u64>,
    #[serde(default)]
    to_ms: Option<u64>,
    /// Move from due timer to due timer, waiting up to this long in all
    /// for the runtime to settle at each (no timer due, no instance with a
    /// step to run). 0 jumps straight to the new time.
    #[serde(default)]
    settle_ms: u64,
}

async fn advance_clock(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let request: Advance = json_body(body, "the clock advance")?;
    let now = state.runtime.clock().now_ms();
    let to_ms = match (request.ms, request.to_ms) {
        (Some(ms), None) => now.saturating_add(ms),
        (None, Some(to_ms)) if to_ms >= now => to_ms,
        (None, Some(to_ms)) => {
            return Err(ApiError::new(
                ErrorCode::ClockBackwards,
                format!("the clock is at {now} ms and only moves forward, not to {to_ms} ms"),
            ));
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadBody,
                "give exactly one of `ms` (how far) and `to_ms` (to when)",
            ));
        }
    };
    let advanced = if request.settle_ms > 0 {
        let limit = Duration::from_millis(request.settle_ms).min(MAX_WAIT);
        state.runtime.advance_clock_settled(to_ms, limit).await?
    } else {
        let runtime = state.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.advance_clock(to_ms))
            .await
            .map_err(executor::Error::from)??
            .map(|now_ms| (now_ms, false))
    };
    match advanced {
        Some((now_ms, settled)) => Ok(Json(
            json!({ "now_ms": now_ms, "simulated": true, "settled": settled }),
        )),
        None => Err(ApiError::new(
            ErrorCode::ClockNotSimulated,
            "this journeyd runs on the system clock; start it with --simulated-clock to move time",
        )),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.runtime.readiness();
    if readiness.ready {
        return (StatusCode::OK, Json(readiness)).into_response();
    }
    let mut body = serde_json::to_value(&readiness).expect("a readiness report is plain data");
    body["error"] = json!({ "code": "not_ready", "message": readiness.problems.join("; ") });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The body of `PUT /v1/faults` (test builds): which faults are on.
#[cfg(feature = "fault-injection")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    faults: Vec<crate::faults::Fault>,
}

#[cfg(feature = "fault-injection")]
async fn show_faults() -> Json<serde_json::Value> {
    Json(json!({ "faults": crate::faults::armed_faults() }))
}

#[cfg(feature = "fault-injection")]
async fn set_faults(body: Result<Bytes, BytesRejection>) -> ApiResult<Json<serde_json::Value>> {
    let request: Faults = json_body(body, "the faults")?;
    for fault in crate::faults::Fault::ALL {
        crate::faults::set(fault, request.faults.contains(&fault));
    }
    tracing::warn!(faults = ?request.faults, "injected faults changed");
    Ok(Json(json!({ "faults": crate::faults::armed_faults() })))
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            ErrorCode::MetricsDisabled,
            "no metrics recorder is installed in this process",
        )
        .into_response(),
    }
}
