//! `/v1/customers/{id}`: upsert a profile, read the single customer view.

use super::*;

pub(super) async fn put_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let profile: serde_json::Value = json_object(
        body,
        &format!("customer `{id}`: the profile"),
        MAX_JSON_BODY_BYTES,
        ErrorCode::InvalidProfile,
    )?;
    let (runtime, customer, saved) = (state.runtime.clone(), id.clone(), profile.clone());
    off_async(move || runtime.put_customer(&customer, &saved)).await?;
    Ok(Json(json!({ "id": id, "profile": profile })))
}

pub(super) async fn get_customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::store::CustomerView>> {
    executor::check_id("customer id", &id)?;
    let store = state.runtime.store().clone();
    let lookup = id.clone();
    let view = off_async(move || store.customer_view(&lookup, VIEW_INTERACTIONS, &[])).await?;
    if !view.is_known() {
        return Err(ApiError::new(
            ErrorCode::UnknownCustomer,
            format!("nothing is known about customer `{id}`: no profile, event or choice"),
        ));
    }
    Ok(Json(view))
}
