//! `/v1/frequency-caps`: the caps in force, and replacing them.

use super::*;

pub(super) async fn show_caps(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "caps": *state.runtime.frequency_caps() }))
}

/// The body of `PUT /v1/frequency-caps`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CapsBody {
    caps: Vec<executor::FrequencyCap>,
}

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
