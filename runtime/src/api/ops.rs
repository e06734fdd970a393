//! Operations: liveness, readiness, metrics, backups, and (in test
//! builds) fault injection.

use super::*;

pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

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
pub(super) async fn show_faults() -> Json<serde_json::Value> {
    Json(json!({ "faults": crate::faults::armed_faults() }))
}

#[cfg(feature = "fault-injection")]
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
