//! `GET /v1/outbox`: the messages steps queued, and their deliveries.

use super::instances::parse_instance_id;
use super::*;

#[derive(Deserialize)]
pub(super) struct OutboxQuery {
    instance: Option<String>,
    limit: Option<usize>,
}

/// Queued messages with their deliveries.
#[utoipa::path(
    get,
    path = "/v1/outbox",
    tag = "delivery",
    params(("instance" = Option<String>, Query, description = "Only this instance's messages"), ("limit" = Option<usize>, Query, description = "At most this many")),
    responses((status = 200, description = "`{\"messages\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_outbox(
    State(state): State<AppState>,
    Query(query): Query<OutboxQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let instance = query
        .instance
        .as_deref()
        .map(parse_instance_id)
        .transpose()?;
    let limit = query.limit.unwrap_or(100).clamp(1, 100_000);
    let store = state.runtime.store().clone();
    let (messages, deliveries) = off_async(move || {
        let messages = store.outbox(instance, limit)?;
        let deliveries = super::instances::deliveries_of(&*store, &messages)?;
        Ok::<_, crate::store::Error>((messages, deliveries))
    })
    .await?;
    Ok(Json(
        json!({ "messages": messages, "deliveries": deliveries }),
    ))
}
