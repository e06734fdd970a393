//! `/v1/instances`: list, show with a timeline, and operators' actions (retry, skip, cancel).

use super::*;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    journey: Option<String>,
    status: Option<InstanceStatus>,
    after: Option<String>,
    limit: Option<usize>,
}

pub(super) fn parse_instance_id(text: &str) -> ApiResult<InstanceId> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidId,
            format!("`{text}` is not an instance id (like `i-42`)"),
        )
    })
}

/// List instances, by id.
#[utoipa::path(
    get,
    path = "/v1/instances",
    tag = "instances",
    params(("journey" = Option<String>, Query, description = "Only this journey"), ("status" = Option<String>, Query, description = "Only this status (running, waiting, completed, failed, exited, cancelled)"), ("after" = Option<String>, Query, description = "Only ids after this one (paging)"), ("limit" = Option<usize>, Query, description = "At most this many")),
    responses((status = 200, description = "`{\"instances\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_instances(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if let Some(journey) = &query.journey {
        state.runtime.known_journey(journey)?;
    }
    let filter = InstanceFilter {
        journey: query.journey,
        status: query.status,
        after: query.after.as_deref().map(parse_instance_id).transpose()?,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
        ..InstanceFilter::default()
    };
    let store = state.runtime.store().clone();
    let instances = tokio::task::spawn_blocking(move || store.instances(&filter))
        .await
        .map_err(executor::Error::from)??;
    Ok(Json(json!({ "instances": instances })))
}

/// An instance with everything that happened to it.
#[derive(Serialize)]
pub(super) struct InstanceView {
    /// The instance.
    #[serde(flatten)]
    pub instance: Instance,
    /// Its history, in order.
    pub history: Vec<HistoryEntry>,
    /// The messages its steps queued.
    pub messages: Vec<OutboxMessage>,
    /// Their deliveries, by message id: status, attempts and what happened.
    pub deliveries: std::collections::BTreeMap<String, crate::store::Delivery>,
}

/// The deliveries of `messages`, by message id.
pub(crate) fn deliveries_of(
    store: &dyn crate::store::Store,
    messages: &[OutboxMessage],
) -> Result<std::collections::BTreeMap<String, crate::store::Delivery>, crate::store::Error> {
    let mut deliveries = std::collections::BTreeMap::new();
    for message in messages {
        if let Some(delivery) = store.delivery(&message.id)? {
            deliveries.insert(message.id.clone(), delivery);
        }
    }
    Ok(deliveries)
}

#[derive(Deserialize)]
pub(super) struct ShowQuery {
    wait_ms: Option<u64>,
}

/// One instance with its timeline.
#[utoipa::path(
    get,
    path = "/v1/instances/{id}",
    tag = "instances",
    params(("id" = String, Path, description = "The instance id (`i-42` or `42`)"), ("wait_ms" = Option<u64>, Query, description = "Wait up to this long for it to finish")),
    responses((status = 200, description = "The instance and its history", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn show_instance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> ApiResult<Json<InstanceView>> {
    let id = parse_instance_id(&id)?;
    let runtime = &state.runtime;
    let mut finished = runtime.subscribe();
    let read = |runtime: &Arc<Runtime>| {
        let store = runtime.store().clone();
        off_async(move || store.instance(id))
    };
    let mut instance = read(runtime)
        .await?
        .ok_or(executor::Error::UnknownInstance(id))?;
    if let Some(wait_ms) = query.wait_ms {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
        while matches!(
            instance.status,
            InstanceStatus::Running | InstanceStatus::Waiting
        ) {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Ok(Ok(done)) if done.id != id => continue,
                Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                Ok(_) => {}
            }
            instance = read(runtime)
                .await?
                .ok_or(executor::Error::UnknownInstance(id))?;
        }
    }
    let store = runtime.store().clone();
    let (history, messages, deliveries) = off_async(move || {
        let messages = store.outbox(Some(id), 1000)?;
        let deliveries = deliveries_of(&*store, &messages)?;
        Ok::<_, crate::store::Error>((store.history(id)?, messages, deliveries))
    })
    .await?;
    Ok(Json(InstanceView {
        instance,
        history,
        messages,
        deliveries,
    }))
}

/// The body of an operator's action (every field optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    /// `retry`: the plugin to run instead of the step's.
    #[serde(default)]
    plugin: Option<String>,
    /// `skip`: the step to continue at.
    #[serde(default)]
    to: Option<String>,
    /// Why, recorded in the instance's history.
    #[serde(default)]
    reason: Option<String>,
    /// Bulk: only instances at this step.
    #[serde(default)]
    step: Option<String>,
    /// Bulk: only count the instances it applies to.
    #[serde(default)]
    dry_run: bool,
}

impl ActionBody {
    /// The action named `name` with this body's arguments.
    fn action(&self, name: &str) -> ApiResult<executor::Action> {
        let unexpected = |field: &str| {
            ApiError::new(
                ErrorCode::BadBody,
                format!("`{field}` does not apply to `{name}`"),
            )
        };
        match name {
            "retry" => match &self.to {
                Some(_) => Err(unexpected("to")),
                None => Ok(executor::Action::Retry {
                    plugin: self.plugin.clone(),
                }),
            },
            "skip" => match (&self.plugin, &self.to) {
                (Some(_), _) => Err(unexpected("plugin")),
                (None, Some(to)) => Ok(executor::Action::Skip { to: to.clone() }),
                (None, None) => Err(ApiError::new(
                    ErrorCode::BadBody,
                    "`skip` needs `to`: the step the instance continues at",
                )),
            },
            "cancel" => match (&self.plugin, &self.to) {
                (Some(_), _) => Err(unexpected("plugin")),
                (_, Some(_)) => Err(unexpected("to")),
                (None, None) => Ok(executor::Action::Cancel),
            },
            _ => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no instance action `{name}`: use retry, skip or cancel"),
            )),
        }
    }

    fn reason(&self, action: &executor::Action) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| format!("operator: {}", action.name()))
    }
}

fn action_body(body: Result<Bytes, BytesRejection>) -> ApiResult<ActionBody> {
    match &body {
        Ok(bytes) if bytes.is_empty() => Ok(ActionBody::default()),
        _ => json_body(body, "the action"),
    }
}

/// An operator's action on one instance: `retry` a failed one (`{\"plugin\"}` runs another version), `skip` it to a step (`{\"to\"}`), or `cancel` it; `{\"reason\"}` is recorded.
#[utoipa::path(
    post,
    path = "/v1/instances/{id}/{action}",
    tag = "instances",
    params(("id" = String, Path, description = "The instance id"), ("action" = String, Path, description = "`retry`, `skip` or `cancel`")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"reason\", \"plugin\", \"to\"}` as the action needs"),
    responses((status = 200, description = "The instance as it is afterwards", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn act_on_instance(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_instance_id(&id)?;
    let request = action_body(body)?;
    if request.step.is_some() || request.dry_run {
        return Err(ApiError::new(
            ErrorCode::BadBody,
            "`step` and `dry_run` are for a journey's instances: POST /v1/journeys/{name}/instances/{action}",
        ));
    }
    let action = request.action(&action)?;
    let reason = request.reason(&action);
    let runtime = state.runtime.clone();
    let instance = tokio::spawn(async move { runtime.act_on_instance(id, &action, &reason).await })
        .await
        .map_err(executor::Error::from)??;
    Ok(Json(json!({ "instance": instance })))
}

/// The same action on every instance of a journey it applies to (`{\"step\"}`: only those at that step; `{\"dry_run\": true}` only counts).
#[utoipa::path(
    post,
    path = "/v1/journeys/{name}/instances/{action}",
    tag = "instances",
    params(("name" = String, Path, description = "The journey"), ("action" = String, Path, description = "`retry`, `skip` or `cancel`")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"reason\", \"plugin\", \"to\", \"step\", \"dry_run\"}`"),
    responses((status = 200, description = "Matched, changed and refused instances", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn act_on_journey(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<executor::BulkOutcome>> {
    let request = action_body(body)?;
    let action = request.action(&action)?;
    let reason = request.reason(&action);
    let runtime = state.runtime.clone();
    let outcome = tokio::spawn(async move {
        runtime
            .act_on_journey(
                &name,
                request.step.as_deref(),
                &action,
                &reason,
                request.dry_run,
            )
            .await
    })
    .await
    .map_err(executor::Error::from)??;
    Ok(Json(outcome))
}
