//! `POST /v1/events`: the ingest route. An event is answered once it is durable.

use super::*;

pub(super) async fn ingest_event(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<executor::Receipt>)> {
    let event: IncomingEvent =
        json_object(body, "the event", MAX_EVENT_BYTES, ErrorCode::InvalidEvent)?;
    // A task of its own: a client that hangs up must not cancel an ingest
    // halfway (its commit goes ahead; what follows it must too).
    let runtime = state.runtime.clone();
    let ingest = tokio::spawn(async move { runtime.ingest(event).await });
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
