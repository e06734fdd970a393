//! `/v1/frequency-caps`: the caps in force, and replacing them.

use super::*;

/// The frequency caps in force.
#[utoipa::path(
    get,
    path = "/v1/frequency-caps",
    tag = "customers",
    responses((status = 200, description = "`{\"caps\": [{\"channel\", \"limit\", \"period_ms\"}]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn show_caps(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "caps": *state.runtime.frequency_caps() }))
}

/// The body of `PUT /v1/frequency-caps`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapsBody {
    caps: Vec<executor::FrequencyCap>,
}

/// Replace the frequency caps (all checked before any changes).
#[utoipa::path(
    put,
    path = "/v1/frequency-caps",
    tag = "customers",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"caps\": [{\"channel\", \"limit\", \"period_ms\"}]}`"),
    responses((status = 200, description = "The caps now in force", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn put_caps(
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
