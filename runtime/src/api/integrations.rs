//! Integrations, deliveries and provider callbacks:
//! `/v1/integrations`, `/v1/deliveries`, `/v1/callbacks/{channel}`.

use super::*;
use crate::delivery::IntegrationSpec;
use crate::executor::CallbackError;
use crate::store::{Delivery, DeliveryStatus};

/// Largest callback body accepted.
pub const MAX_CALLBACK_BYTES: usize = 256 * 1024;

pub(super) async fn list_integrations(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "integrations": state.runtime.integrations() }))
}

pub(super) async fn set_integration(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let spec: IntegrationSpec = json_body(body, "the integration")?;
    let record = state.runtime.set_integration(&channel, spec).await?;
    Ok(Json(json!({ "integration": record })))
}

#[derive(Deserialize)]
pub(super) struct DeliveriesQuery {
    /// Comma-separated statuses; bounced, failed and dead when left out.
    status: Option<String>,
    limit: Option<usize>,
}

/// A message with its delivery, as the API shows it.
#[derive(Serialize)]
struct MessageDelivery {
    message: OutboxMessage,
    delivery: Delivery,
}

pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let statuses = query
        .status
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|status| !status.is_empty())
        .map(|status| {
            serde_json::from_value::<DeliveryStatus>(json!(status)).map_err(|_| {
                ApiError::new(
                    ErrorCode::BadQuery,
                    format!(
                        "`{status}` is not a delivery status (queued, sending, retrying, accepted, delivered, opened, clicked, bounced, failed, dead)"
                    ),
                )
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let found = state.runtime.deliveries(statuses, limit).await?;
    let deliveries: Vec<MessageDelivery> = found
        .into_iter()
        .map(|(message, delivery)| MessageDelivery { message, delivery })
        .collect();
    Ok(Json(json!({ "deliveries": deliveries })))
}

pub(super) async fn show_delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let (message, delivery) = state.runtime.message(&id).await?;
    Ok(Json(json!(MessageDelivery { message, delivery })))
}

/// The body of `POST /v1/deliveries/replay`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    ids: Vec<String>,
}

pub(super) async fn replay_deliveries(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let request: ReplayBody = json_body(body, "the replay")?;
    if request.ids.is_empty() || request.ids.len() > 1_000 {
        return Err(ApiError::new(
            ErrorCode::BadBody,
            "the replay is not valid: `ids` must name 1 to 1000 messages",
        ));
    }
    let mut replayed = Vec::with_capacity(request.ids.len());
    for id in &request.ids {
        let delivery = state.runtime.replay_message(id).await?;
        replayed.push(json!({ "id": id, "delivery": delivery }));
    }
    Ok(Json(json!({ "replayed": replayed })))
}

pub(super) async fn receive_callback(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let body = body_bytes(body, "the callback", MAX_CALLBACK_BYTES)?;
    let receipt = state
        .runtime
        .receive_callback(&channel, &headers, &body)
        .await
        .map_err(|error| {
            let code = match &error {
                CallbackError::UnknownIntegration(_) => ErrorCode::UnknownIntegration,
                CallbackError::NoCallbackSecret(_) => ErrorCode::CallbacksOff,
                CallbackError::BadSignature { .. } => ErrorCode::BadSignature,
                CallbackError::Unreadable { .. } => ErrorCode::UnreadableCallback,
                CallbackError::Runtime(_) => return callback_fault(error),
            };
            tracing::warn!(channel, %error, "a callback was refused");
            ApiError::new(code, error.to_string())
        })?;
    Ok((StatusCode::OK, Json(json!(receipt))))
}

/// A callback the runtime failed to apply: the provider sees the runtime's
/// error (5xx for a fault), and sends it again.
fn callback_fault(error: CallbackError) -> ApiError {
    match error {
        CallbackError::Runtime(error) => ApiError::from(error),
        refused => ApiError::new(ErrorCode::Internal, refused.to_string()),
    }
}
