//! Operations: liveness, readiness, metrics, backups, and (in test
//! builds) fault injection.

use super::*;

/// Liveness: the process serves HTTP. Needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
    security(()),
)]
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: whether it takes events and runs steps. Needs no token.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, description = "Ready", body = serde_json::Value), (status = 503, description = "Not ready, with what stands in the way", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
    security(()),
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.runtime.readiness();
    if readiness.ready {
        return (StatusCode::OK, Json(readiness)).into_response();
    }
    let mut body = serde_json::to_value(&readiness).expect("a readiness report is plain data");
    body["error"] = json!({ "code": "not_ready", "message": readiness.problems.join("; ") });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The headers of a backup response that carry its summary.
pub const BACKUP_RECORDS_HEADER: &str = "x-journeyd-backup-records";
/// How long writes waited while the backup read the store, in ms.
pub const BACKUP_PAUSE_HEADER: &str = "x-journeyd-backup-pause-ms";

/// `GET /v1/backup`: a consistent snapshot of the whole store as a
/// backup file (see `store::backup`), streamed.
/// A consistent backup of the whole store, streamed (admin only).
#[utoipa::path(
    get,
    path = "/v1/backup",
    tag = "operations",
    responses((status = 200, description = "The backup file", body = Vec<u8>, content_type = "application/octet-stream"), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn take_backup(State(state): State<AppState>) -> ApiResult<Response> {
    let (file, summary) = state.runtime.take_backup().await?;
    let length = file
        .metadata()
        .map_err(|error| executor::Error::from(crate::store::Error::Backend(Box::new(error))))?
        .len();
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let headers = [
        (
            axum::http::header::CONTENT_TYPE,
            "application/octet-stream".to_owned(),
        ),
        (axum::http::header::CONTENT_LENGTH, length.to_string()),
        (
            axum::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"journeyd.backup\"".to_owned(),
        ),
    ];
    let mut response = (headers, axum::body::Body::from_stream(stream)).into_response();
    for (name, value) in [
        (BACKUP_RECORDS_HEADER, summary.records),
        (BACKUP_PAUSE_HEADER, summary.pause_ms),
    ] {
        response.headers_mut().insert(
            name,
            axum::http::HeaderValue::from_str(&value.to_string())
                .expect("digits are a header value"),
        );
    }
    Ok(response)
}

/// The body of `PUT /v1/faults` (test builds): which faults are on.
#[cfg(feature = "fault-injection")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Faults {
    faults: Vec<crate::faults::Fault>,
}

#[cfg(feature = "fault-injection")]
/// Injected faults that are on (test builds only).
#[utoipa::path(
    get,
    path = "/v1/faults",
    tag = "operations",
    responses((status = 200, description = "`{\"faults\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn show_faults() -> Json<serde_json::Value> {
    Json(json!({ "faults": crate::faults::armed_faults() }))
}

#[cfg(feature = "fault-injection")]
/// Switch injected faults on and off (test builds only).
#[utoipa::path(
    put,
    path = "/v1/faults",
    tag = "operations",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"faults\": [...]}`"),
    responses((status = 200, description = "The faults now on", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn set_faults(
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let request: Faults = json_body(body, "the faults")?;
    for fault in crate::faults::Fault::ALL {
        crate::faults::set(fault, request.faults.contains(&fault));
    }
    tracing::warn!(faults = ?request.faults, "injected faults changed");
    Ok(Json(json!({ "faults": crate::faults::armed_faults() })))
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain"), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn render_metrics(State(state): State<AppState>) -> Response {
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
