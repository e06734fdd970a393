//! Integrations, deliveries and provider callbacks:
//! `/v1/integrations`, `/v1/deliveries`, `/v1/callbacks/{channel}`.

use super::*;
use crate::delivery::IntegrationSpec;
use crate::executor::CallbackError;
use crate::store::{Delivery, DeliveryFilter, DeliveryStatus};

/// Largest callback body accepted.
pub const MAX_CALLBACK_BYTES: usize = 256 * 1024;

/// The integrations in force: how messages on each channel leave journeyd.
#[utoipa::path(
    get,
    path = "/v1/integrations",
    tag = "delivery",
    responses((status = 200, description = "`{\"integrations\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_integrations(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "integrations": state.runtime.integrations() }))
}

/// Set a channel's integration; checked by rendering a sample message.
#[utoipa::path(
    put,
    path = "/v1/integrations/{channel}",
    tag = "delivery",
    params(("channel" = String, Path, description = "The channel")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"plugin\", \"config\", \"hosts\", \"secrets\", \"callback_secret\", \"rate_per_second\", \"concurrency\", \"max_attempts\", \"max_age_ms\", \"timeout_ms\", \"enabled\"}`"),
    responses((status = 200, description = "The integration as stored", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
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

/// Messages by delivery status (bounced, failed and dead by default).
#[utoipa::path(
    get,
    path = "/v1/deliveries",
    tag = "delivery",
    params(("status" = Option<String>, Query, description = "Comma-separated statuses, e.g. `dead,failed`"), ("limit" = Option<usize>, Query, description = "At most this many")),
    responses((status = 200, description = "`{\"deliveries\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
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
    let statuses = if statuses.is_empty() {
        DeliveryStatus::UNDELIVERED.to_vec()
    } else {
        statuses
    };
    let found = state
        .runtime
        .deliveries(DeliveryFilter::with_statuses(&statuses, limit))
        .await?;
    let deliveries: Vec<MessageDelivery> = found
        .found
        .into_iter()
        .map(|(message, delivery)| MessageDelivery { message, delivery })
        .collect();
    Ok(Json(json!({ "deliveries": deliveries })))
}

/// One message and its delivery, with every attempt.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{*id}",
    tag = "delivery",
    params(("id" = String, Path, description = "The message id (it contains slashes; send them as they are)")),
    responses((status = 200, description = "`{\"message\", \"delivery\"}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
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

/// Queue undelivered (bounced, failed, dead) messages again under the same ids.
#[utoipa::path(
    post,
    path = "/v1/deliveries/replay",
    tag = "delivery",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"ids\": [...]}` (1 to 1,000)"),
    responses((status = 200, description = "What was replayed", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
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

/// A provider's status callback, signed with the integration's callback secret (Standard Webhooks); statuses become events. Needs no token.
#[utoipa::path(
    post,
    path = "/v1/callbacks/{channel}",
    tag = "delivery",
    params(("channel" = String, Path, description = "The channel")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The provider's payload"),
    responses((status = 202, description = "Taken", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
    security(()),
)]
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
