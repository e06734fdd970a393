//! `/v1/journeys`: deploy and list definitions, the drop-off report, migrations.

use super::*;

#[derive(Deserialize)]
pub(super) struct DeployQuery {
    file: Option<String>,
}

/// Validate and deploy a TOML journey definition as its next version.
#[utoipa::path(
    post,
    path = "/v1/journeys",
    tag = "journeys",
    params(("file" = Option<String>, Query, description = "The file name, for error messages")),
    request_body(content = String, content_type = "application/toml", description = "The definition"),
    responses((status = 201, description = "The journey version", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn deploy_journey(
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

/// Every journey version.
#[utoipa::path(
    get,
    path = "/v1/journeys",
    tag = "journeys",
    responses((status = 200, description = "`{\"journeys\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_journeys(
    State(state): State<AppState>,
) -> ApiResult<Json<serde_json::Value>> {
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
pub(super) struct Migrate {
    from: u32,
    to: u32,
    #[serde(default)]
    steps: std::collections::BTreeMap<String, String>,
}

/// Move running instances of one version to another (validated first).
#[utoipa::path(
    post,
    path = "/v1/journeys/{name}/migrations",
    tag = "journeys",
    params(("name" = String, Path, description = "The journey")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"from\", \"to\", \"steps\": {old: new}}`"),
    responses((status = 201, description = "The migration", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn migrate_journey(
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

/// Which instances a funnel counts.
#[derive(Deserialize)]
pub(super) struct FunnelQuery {
    version: Option<u32>,
    since: Option<String>,
    until: Option<String>,
}

impl FunnelQuery {
    fn scope(&self) -> ApiResult<executor::FunnelScope> {
        let time = |field: &str, text: &Option<String>| {
            text.as_deref()
                .map(|text| {
                    crate::clock::parse_time_ms(text).ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::BadQuery,
                            format!("`{field}` is `{text}`: give an RFC 3339 time or a date"),
                        )
                    })
                })
                .transpose()
        };
        Ok(executor::FunnelScope {
            version: self.version,
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
        })
    }
}

/// Drop-off report per step and variant: instances that reached each step, wait after it, ended there (purged instances included). Counted by the day (UTC) instances started, kept as commits land.
#[utoipa::path(
    get,
    path = "/v1/journeys/{name}/funnel",
    tag = "journeys",
    params(("name" = String, Path, description = "The journey"), ("version" = Option<u32>, Query, description = "Only this version (its steps; the latest's without)"), ("since" = Option<String>, Query, description = "Only instances started on this time's day (UTC) or later (RFC 3339 or a date)"), ("until" = Option<String>, Query, description = "Only instances started on a day (UTC) that begins before this")),
    responses((status = 200, description = "The funnel", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn show_funnel(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<FunnelQuery>,
) -> ApiResult<Json<executor::Funnel>> {
    let scope = query.scope()?;
    let runtime = state.runtime.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || runtime.funnel(&name, &scope))
            .await
            .map_err(executor::Error::from)??,
    ))
}

/// The migrations of a journey.
#[utoipa::path(
    get,
    path = "/v1/journeys/{name}/migrations",
    tag = "journeys",
    params(("name" = String, Path, description = "The journey")),
    responses((status = 200, description = "`{\"migrations\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_migrations(
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

/// The body of `POST /v1/journeys/{name}/purge`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PurgeRequest {
    /// Remove instances that finished before this time: RFC 3339
    /// (`2026-11-01T00:00:00Z`) or a date (`2026-11-01`, midnight UTC).
    before: String,
    /// Only count them.
    #[serde(default)]
    dry_run: bool,
    /// At most this many in this call (the CLI calls again while `more`).
    #[serde(default = "default_purge_limit")]
    limit: usize,
}

fn default_purge_limit() -> usize {
    10_000
}

/// Remove finished instances that finished before `before`, with their history and messages, keeping their funnel counts.
#[utoipa::path(
    post,
    path = "/v1/journeys/{name}/purge",
    tag = "journeys",
    params(("name" = String, Path, description = "The journey")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"before\": RFC 3339 or a date, \"dry_run\", \"limit\"}`"),
    responses((status = 200, description = "`{\"purged\", \"more\", \"dry_run\", \"before_ms\"}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn purge_journey(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let request: PurgeRequest = json_body(body, "the purge")?;
    let before_ms = crate::clock::parse_time_ms(&request.before).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadBody,
            format!(
                "`before` = \"{}\" is neither an RFC 3339 time (2026-11-01T00:00:00Z) nor a date (2026-11-01)",
                request.before
            ),
        )
    })?;
    let runtime = state.runtime.clone();
    let outcome = tokio::spawn(async move {
        runtime
            .purge_instances(&name, before_ms, request.limit, request.dry_run)
            .await
    })
    .await
    .map_err(executor::Error::from)??;
    Ok(Json(json!({
        "purged": outcome.purged,
        "more": outcome.more,
        "dry_run": request.dry_run,
        "before_ms": before_ms,
    })))
}
