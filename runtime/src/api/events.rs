//! `POST /v1/events`: the ingest route. An event is answered once it is durable.

use super::*;

/// Ingest an event; answered once it is durable.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    params(("traceparent" = Option<String>, Header, description = "A W3C trace context: when traces are exported, the event's spans continue this trace")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"id\", \"type\", \"customer\", \"data\"}`"),
    responses((status = 202, description = "The receipt: instances started, journeys skipped and why, instances exited", body = serde_json::Value), (status = 503, description = "Not committed in time, starting or shutting down; retry after `Retry-After`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn ingest_event(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<executor::Receipt>)> {
    let event: IncomingEvent =
        json_object(body, "the event", MAX_EVENT_BYTES, ErrorCode::InvalidEvent)?;
    // A task of its own: a client that hangs up must not cancel an ingest
    // halfway (its commit goes ahead; what follows it must too).
    let runtime = state.runtime.clone();
    let caller = crate::telemetry::caller(&headers);
    let ingest = tokio::spawn(async move { runtime.ingest_under(event, caller).await });
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
