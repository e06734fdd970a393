//! The instances pages: a searchable, paged list; one instance with its
//! timeline, messages and deliveries; and an operator's actions on it
//! (retry, skip, cancel), each confirmed on a page of its own before it
//! is made.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{Operator, Viewer};
use super::timeline::{MessageRow, Moment, events_named, headline, message_rows, moments};
use super::{Confirm, condition, off_blocking, page, problem, timestamp};
use crate::api::AppState;
use crate::executor::Action;
use crate::store::{Instance, InstanceFilter, InstanceId, InstanceStatus};

/// Instances on one page of the list.
const PAGE: usize = 50;

/// Instances one page request looks at, at most: a rare condition then
/// answers quickly with "looked this far, go on" instead of reading every
/// instance.
const BUDGET: usize = 10_000;

/// Every status, in the order the filter offers them.
const STATUSES: [InstanceStatus; 6] = [
    InstanceStatus::Running,
    InstanceStatus::Waiting,
    InstanceStatus::Completed,
    InstanceStatus::Failed,
    InstanceStatus::Exited,
    InstanceStatus::Cancelled,
];

/// The list's search form, as the browser sends it (empty fields are
/// no condition).
#[derive(Deserialize, Default, Clone)]
pub(super) struct Search {
    #[serde(default)]
    journey: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    step: String,
    #[serde(default)]
    customer: String,
    #[serde(default)]
    correlation: String,
    #[serde(default)]
    after: String,
}

impl Search {
    /// The store's filter, or why the search cannot be made.
    fn filter(&self) -> Result<InstanceFilter, String> {
        let status = match condition(&self.status) {
            None => None,
            Some(wanted) => Some(
                STATUSES
                    .into_iter()
                    .find(|status| status.label() == wanted)
                    .ok_or_else(|| format!("There is no status `{wanted}`."))?,
            ),
        };
        let after = match condition(&self.after) {
            None => None,
            Some(after) => Some(
                after
                    .parse::<InstanceId>()
                    .map_err(|_| format!("`{after}` is not an instance id (like i-42)."))?,
            ),
        };
        Ok(InstanceFilter {
            journey: condition(&self.journey),
            status,
            customer: condition(&self.customer),
            correlation: condition(&self.correlation),
            step: condition(&self.step),
            after,
            limit: PAGE,
            budget: BUDGET,
        })
    }

    /// The query string of this search from `after` on.
    fn from(&self, after: InstanceId) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("journey", &self.journey),
            ("status", &self.status),
            ("step", &self.step),
            ("customer", &self.customer),
            ("correlation", &self.correlation),
        ] {
            if !value.trim().is_empty() {
                query.append_pair(name, value.trim());
            }
        }
        query.append_pair("after", &after.to_string());
        query.finish()
    }
}

/// One instance in a list.
pub(super) struct InstanceRow {
    pub(super) id: String,
    pub(super) journey: String,
    pub(super) version: u32,
    pub(super) customer: String,
    pub(super) correlation: String,
    pub(super) status: &'static str,
    /// The terminal state, the failure, or the step it stands at.
    pub(super) whereabouts: String,
    pub(super) updated: String,
}

impl InstanceRow {
    pub(super) fn of(instance: &Instance) -> Self {
        let whereabouts = match (&instance.terminal, &instance.failure) {
            (Some(terminal), _) => terminal.clone(),
            (None, Some(failure)) => headline(failure),
            (None, None) => instance
                .standing_at()
                .map(|step| format!("at {step}"))
                .unwrap_or_default(),
        };
        InstanceRow {
            id: instance.id.to_string(),
            journey: instance.journey.clone(),
            version: instance.journey_version,
            customer: instance.customer_id.clone(),
            correlation: instance.correlation.clone(),
            status: instance.status.label(),
            whereabouts,
            updated: timestamp(instance.updated_at_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "console/instances.html")]
struct InstancesPage<'a> {
    viewer: Option<&'a Viewer>,
    search: Search,
    journeys: Vec<String>,
    statuses: Vec<&'static str>,
    error: Option<String>,
    rows: Vec<InstanceRow>,
    /// The next page's query string, when there may be more.
    next: Option<String>,
    /// The page stopped at its budget before it was full.
    looked_far: bool,
}

/// `GET /instances?journey=&status=&step=&customer=&correlation=&after=`.
pub(super) async fn list(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(search): Query<Search>,
) -> Response {
    let journeys = state.runtime.journey_names();
    let statuses = STATUSES.iter().map(|status| status.label()).collect();
    let filter = match search.filter() {
        Ok(filter) => filter,
        Err(error) => {
            let mut response = page(&InstancesPage {
                viewer: Some(&viewer),
                search,
                journeys,
                statuses,
                error: Some(error),
                rows: Vec::new(),
                next: None,
                looked_far: false,
            });
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let store = state.runtime.store().clone();
    let found = match off_blocking(move || store.search_instances(&filter)).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    page(&InstancesPage {
        viewer: Some(&viewer),
        rows: found.found.iter().map(InstanceRow::of).collect(),
        looked_far: found.more_after.is_some() && found.found.len() < PAGE,
        next: found.more_after.map(|after| search.from(after)),
        search,
        journeys,
        statuses,
        error: None,
    })
}

/// The page for a path whose id is not an instance id.
fn not_an_instance(text: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        &format!("`{text}` is not an instance id (like i-42)."),
    )
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage<'a> {
    viewer: Option<&'a Viewer>,
    row: InstanceRow,
    /// Why it failed, whole.
    failure: Option<String>,
    started: String,
    state: String,
    waits: Vec<String>,
    moments: Vec<Moment>,
    messages: Vec<MessageRow>,
    /// The steps an operator may skip to (and the terminal states).
    targets: Vec<String>,
    /// What an operator may do to it now.
    actions: Vec<&'static str>,
    /// What was just done, from the redirect after an action.
    done: Option<String>,
}

/// After an action: which one was done.
#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

/// `GET /instances/{id}`.
pub(super) async fn show(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let Ok(id) = id.parse::<InstanceId>() else {
        return not_an_instance(&id);
    };
    let store = state.runtime.store().clone();
    let read = off_blocking(move || {
        let Some(instance) = store.instance(id)? else {
            return Ok(None);
        };
        let history = store.history(id)?;
        let mut events = std::collections::BTreeMap::new();
        for event_id in events_named(&history) {
            if let Some(event) = store.event(&event_id)? {
                events.insert(event_id, event);
            }
        }
        let messages = store.outbox(Some(id), 1000)?;
        let deliveries = crate::api::deliveries_of(&*store, &messages)?;
        Ok(Some((
            instance,
            moments(&history, &events),
            messages,
            deliveries,
        )))
    })
    .await;
    let (instance, moments, messages, deliveries) = match read {
        Ok(Some(found)) => found,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                &format!("There is no instance {id}."),
            );
        }
        Err(response) => return response,
    };
    let mut waits = Vec::new();
    if let Some(wait) = &instance.waiting_for {
        waits.push(format!(
            "waits for event {} ({}): {}",
            wait.kind, wait.correlation, wait.on_event
        ));
    }
    if let Some(wake_at) = instance.wake_at_ms {
        waits.push(format!("its timer is due {}", timestamp(wake_at)));
    }
    let targets = state
        .runtime
        .journey_version(&instance.journey, instance.journey_version)
        .0
        .map(|journey| {
            journey
                .steps()
                .map(|step| step.definition.name.clone())
                .chain(journey.definition.terminal.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    let admin = viewer.scope.allows(crate::store::Scope::Admin);
    let offered = [
        Action::Retry { plugin: None },
        Action::Skip { to: String::new() },
        Action::Cancel,
    ];
    let actions = offered
        .iter()
        .filter(|action| admin && action.applies_to(instance.status))
        .map(Action::name)
        .collect();
    let state_text = serde_json::from_str::<serde_json::Value>(instance.state.get())
        .and_then(|state| serde_json::to_string_pretty(&state))
        .unwrap_or_else(|_| instance.state.get().to_owned());
    page(&InstancePage {
        viewer: Some(&viewer),
        row: InstanceRow::of(&instance),
        state: state_text,
        waits,
        moments,
        messages: message_rows(&messages, &deliveries),
        targets,
        actions,
        done: done
            .done
            .filter(|done| ["retry", "skip", "cancel"].contains(&done.as_str())),
        started: timestamp(instance.created_at_ms),
        failure: instance.failure,
    })
}

/// An action's form: the confirmation page sends it again with `confirm`.
#[derive(Deserialize, Default)]
pub(super) struct ActionForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /instances/{id}/{action}`: without `confirm`, the page that asks
/// for it; with it, the action, then back to the instance.
pub(super) async fn act(
    Operator(viewer): Operator,
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let Ok(id) = id.parse::<InstanceId>() else {
        return not_an_instance(&id);
    };
    let to = form.to.trim().to_owned();
    let (chosen, what) = match action.as_str() {
        "retry" => (
            Action::Retry { plugin: None },
            format!("Retry {id} at the step it failed at"),
        ),
        "skip" if to.is_empty() => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Skipping needs the step to continue at.",
            );
        }
        "skip" => (
            Action::Skip { to: to.clone() },
            format!("Move {id} on to {to}"),
        ),
        "cancel" => (Action::Cancel, format!("Cancel {id}")),
        _ => {
            return problem(
                StatusCode::NOT_FOUND,
                &format!("There is no action `{action}`: retry, skip or cancel."),
            );
        }
    };
    let reason = match form.reason.trim() {
        "" => format!("console: {action} by {}", viewer.name),
        given => format!("{given} (console, {})", viewer.name),
    };
    if form.confirm != "yes" {
        return page(&Confirm {
            viewer: Some(&viewer),
            what,
            action: format!("/instances/{id}/{action}"),
            fields: vec![
                ("reason".into(), form.reason.trim().to_owned()),
                ("to".into(), to),
            ],
            reason: form.reason.trim().to_owned(),
            button: format!("Yes, {action} {id}"),
            back: format!("/instances/{id}"),
        });
    }
    let runtime = state.runtime.clone();
    let acted = tokio::spawn(async move { runtime.act_on_instance(id, &chosen, &reason).await })
        .await
        .map_err(crate::executor::Error::from);
    match acted {
        Ok(Ok(_)) => Redirect::to(&format!("/instances/{id}?done={action}")).into_response(),
        Ok(Err(error)) | Err(error) => problem(StatusCode::CONFLICT, &error.to_string()),
    }
}
