//! `/v1/clock`: the runtime's time, and moving a simulated clock.

use super::*;

/// The runtime's time and whether it is simulated.
#[utoipa::path(
    get,
    path = "/v1/clock",
    tag = "clock",
    responses((status = 200, description = "`{\"now_ms\", \"simulated\"}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn show_clock(State(state): State<AppState>) -> Json<serde_json::Value> {
    let clock = state.runtime.clock();
    Json(json!({ "now_ms": clock.now_ms(), "simulated": clock.simulated().is_some() }))
}

/// The body of `POST /v1/clock/advance`: by `ms`, or to `to_ms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Advance {
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

/// Move a simulated clock forward; due timers fire. With `settle_ms` the clock stops at each due timer until the runtime settles.
#[utoipa::path(
    post,
    path = "/v1/clock/advance",
    tag = "clock",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"ms\"}` or `{\"to_ms\"}`, optionally `\"settle_ms\"`"),
    responses((status = 200, description = "Where the clock stands and whether the runtime settled", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn advance_clock(
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
