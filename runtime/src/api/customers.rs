//! `/v1/customers/{id}`: upsert a profile, read the single customer view,
//! forget a customer; `/v1/audit`: what forgetting (and other audited
//! actions) did.

use super::*;

/// Create or replace a customer's profile (a JSON object; `time_zone` must be an IANA zone).
#[utoipa::path(
    put,
    path = "/v1/customers/{id}",
    tag = "customers",
    params(("id" = String, Path, description = "The customer id")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The profile"),
    responses((status = 200, description = "`{\"id\", \"profile\"}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn put_customer(
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
    let (runtime, customer, saved) = (state.runtime.clone(), id.clone(), profile.clone());
    off_async(move || runtime.put_customer(&customer, &saved)).await?;
    Ok(Json(json!({ "id": id, "profile": profile })))
}

/// The single customer view: profile, channel choices, recent interactions and engagement.
#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    tag = "customers",
    params(("id" = String, Path, description = "The customer id")),
    responses((status = 200, description = "The customer view", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn get_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::store::CustomerView>> {
    executor::check_id("customer id", &id)?;
    let store = state.runtime.store().clone();
    let lookup = id.clone();
    let view = off_async(move || store.customer_view(&lookup, VIEW_INTERACTIONS, &[])).await?;
    if !view.is_known() {
        return Err(ApiError::new(
            ErrorCode::UnknownCustomer,
            format!("nothing is known about customer `{id}`: no profile, event or choice"),
        ));
    }
    Ok(Json(view))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ForgetRequest {
    instances: executor::ForgetInstances,
}

/// The header a caller may send to name the request in the audit log.
const REQUEST_ID: &str = "x-request-id";

/// Forget a customer: cancel or anonymise their unfinished instances, purge the finished ones, remove profile, interactions, channel choices, engagement, counted sends and events; recorded in the audit log without personal data.
#[utoipa::path(
    post,
    path = "/v1/customers/{id}/forget",
    tag = "customers",
    params(("id" = String, Path, description = "The customer id"), ("x-request-id" = Option<String>, Header, description = "The request id the audit log records (made up when absent)")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"instances\": \"cancel\" | \"anonymise\"}` (optional; `cancel` by default)"),
    responses((status = 200, description = "What was removed, and the audit entry's number", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn forget_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Option<axum::Extension<super::auth::Caller>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<executor::Forgotten>> {
    let request: ForgetRequest = match &body {
        Ok(bytes) if bytes.is_empty() => ForgetRequest::default(),
        _ => json_body(body, &format!("forgetting customer `{id}`"))?,
    };
    let request_id = match headers.get(REQUEST_ID) {
        Some(value) => {
            let value = value.to_str().unwrap_or_default();
            executor::check_id("x-request-id", value)?;
            value.to_owned()
        }
        None => format!("req-{:016x}", rand::random::<u64>()),
    };
    let runtime = state.runtime.clone();
    let token = caller.map(|axum::Extension(caller)| caller.0);
    let forgotten = tokio::spawn(async move {
        runtime
            .forget_customer(&id, request.instances, &request_id, token.as_deref())
            .await
    })
    .await
    .map_err(executor::Error::from)??;
    Ok(Json(forgotten))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AuditQuery {
    after: u64,
    limit: Option<usize>,
}

/// Audit entries returned by one call at most.
const AUDIT_PAGE: usize = 500;

/// The audit log, oldest first: action, request id, token name and counts, never personal data.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "operations",
    params(("after" = Option<u64>, Query, description = "Only entries after this number"), ("limit" = Option<usize>, Query, description = "At most this many (500)")),
    responses((status = 200, description = "`{\"entries\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn audit_log(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = query.limit.unwrap_or(AUDIT_PAGE).clamp(1, AUDIT_PAGE);
    let entries = state.runtime.audit_log(query.after, limit).await?;
    Ok(Json(json!({ "entries": entries })))
}
