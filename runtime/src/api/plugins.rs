//! `/v1/plugins`: push components, list versions with their run counts, tags and rollouts.

use super::*;

/// Push a component as the plugin's next version (the body is the `.wasm`); checked against the WIT contract.
#[utoipa::path(
    put,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses((status = 201, description = "The plugin version", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn push_plugin(
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
pub(super) struct VersionView {
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
pub(super) struct TagView {
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

/// Every plugin version with its run counts, and every tag.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses((status = 200, description = "`{\"plugins\", \"tags\"}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_plugins(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "plugins": versions_of(&state.runtime, None),
        "tags": tags_of(&state.runtime, None),
    }))
}

/// One plugin: versions, counts, tags and every tag change.
#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin")),
    responses((status = 200, description = "The plugin", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn show_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    executor::check_name("plugin name", &name)?;
    let versions = versions_of(&state.runtime, Some(&name));
    if versions.is_empty() {
        return Err(executor::Error::UnknownPlugin(name).into());
    }
    let (runtime, plugin) = (state.runtime.clone(), name.clone());
    let (tag_changes, grant) = off_async(move || {
        let changes = runtime.store().tag_changes(&plugin)?;
        let grant = runtime.plugin_grants()?.remove(&plugin);
        Ok::<_, executor::Error>((changes, grant))
    })
    .await?;
    Ok(Json(json!({
        "name": name,
        "versions": versions,
        "tags": tags_of(&state.runtime, Some(&name)),
        "tag_changes": tag_changes,
        "grant": grant,
    })))
}

/// Let a step plugin's `wasi:http` requests reach hosts (no hosts: revoke).
#[utoipa::path(
    put,
    path = "/v1/plugins/{name}/grant",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"hosts\", \"secrets\", \"timeout_ms\", \"max_response_bytes\"}`"),
    responses((status = 200, description = "The grant", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn grant_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let grant: executor::PluginGrant = json_body(body, "the grant")?;
    let runtime = state.runtime.clone();
    let plugin = name.clone();
    let granted = off_async(move || runtime.grant_plugin(&plugin, grant)).await?;
    Ok(Json(json!({ "plugin": name, "grant": granted })))
}

/// The body of `PUT /v1/plugins/{name}/tags/{tag}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetTag {
    version: u32,
    #[serde(default)]
    canary: Option<Canary>,
    #[serde(default)]
    reason: Option<String>,
}

/// Point a tag at a version, with an optional canary rollout and rollback rule.
#[utoipa::path(
    put,
    path = "/v1/plugins/{name}/tags/{tag}",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin"), ("tag" = String, Path, description = "The tag")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"version\", \"canary\", \"reason\"}`"),
    responses((status = 200, description = "The tag", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn set_tag(
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
pub(super) async fn change_tag(
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
pub(super) struct RollBack {
    #[serde(default)]
    reason: Option<String>,
}

/// End a tag's rollout, back to its stable version.
#[utoipa::path(
    post,
    path = "/v1/plugins/{name}/tags/{tag}/rollback",
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin"), ("tag" = String, Path, description = "The tag")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"reason\"}` (optional)"),
    responses((status = 200, description = "The tag", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn roll_back(
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
