//! Operations: liveness, readiness, metrics, and (in test builds) fault
//! injection.

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
