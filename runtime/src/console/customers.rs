//! The customer page: the single view of one customer. Their profile,
//! channel choices, engagement and recent interactions, and every
//! instance of theirs across journeys.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::instances::InstanceRow;
use super::session::Viewer;
use super::{off_blocking, page, problem, timestamp};
use crate::api::AppState;
use crate::store::{CustomerView, Instance, VIEW_INTERACTIONS};

/// The find form's field.
#[derive(Deserialize)]
pub(super) struct Find {
    id: Option<String>,
}

#[derive(Template)]
#[template(path = "console/find-customer.html")]
struct FindPage<'a> {
    viewer: Option<&'a Viewer>,
}

/// `GET /customers?id=`: the customer named, or the form that names one.
pub(super) async fn find(viewer: Viewer, Query(find): Query<Find>) -> Response {
    match find.id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => {
            let path: String = url_path_segment(id);
            Redirect::to(&format!("/customers/{path}")).into_response()
        }
        _ => page(&FindPage {
            viewer: Some(&viewer),
        }),
    }
}

/// `id` as one path segment, escaped.
fn url_path_segment(id: &str) -> String {
    form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// One line of a customer's history shown as text.
struct Line {
    at: String,
    channel: String,
    what: String,
    text: String,
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct CustomerPage<'a> {
    viewer: Option<&'a Viewer>,
    id: String,
    profile: String,
    channels: Vec<Line>,
    engagement: Vec<Line>,
    interactions: Vec<Line>,
    instances: Vec<InstanceRow>,
}

/// `GET /customers/{id}`.
pub(super) async fn show(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let store = state.runtime.store().clone();
    let lookup = id.clone();
    let read = off_blocking(move || {
        let view = store.customer_view(&lookup, VIEW_INTERACTIONS, &[])?;
        let mut instances: Vec<Instance> = Vec::new();
        for event in store.customer_events(&lookup)? {
            for started in event.started {
                if let Some(instance) = store.instance(started)? {
                    instances.push(instance);
                }
            }
        }
        Ok((view, instances))
    })
    .await;
    let (view, mut instances) = match read {
        Ok(found) => found,
        Err(response) => return response,
    };
    if !view.is_known() && instances.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("Nothing is known about customer `{id}`: no profile, event or choice."),
        );
    }
    instances.sort_by_key(|instance| std::cmp::Reverse(instance.id));
    instances.dedup_by_key(|instance| instance.id);
    page(&customer_page(&viewer, view, &instances))
}

fn customer_page<'a>(
    viewer: &'a Viewer,
    view: CustomerView,
    instances: &[Instance],
) -> CustomerPage<'a> {
    let profile = serde_json::from_str::<serde_json::Value>(view.profile.get())
        .and_then(|profile| serde_json::to_string_pretty(&profile))
        .unwrap_or_else(|_| view.profile.get().to_owned());
    let channels = view
        .channels
        .iter()
        .map(|choice| Line {
            at: timestamp(choice.changed_at_ms),
            channel: choice.channel.clone(),
            what: if choice.opted_in {
                "opted in"
            } else {
                "opted out"
            }
            .into(),
            text: String::new(),
        })
        .collect();
    // Newest first, as a person reads a history.
    let engagement = view
        .engagement
        .iter()
        .rev()
        .map(|engaged| Line {
            at: timestamp(engaged.at_ms),
            channel: engaged.channel.clone(),
            what: engaged.action.clone(),
            text: format!("event {}: {}", engaged.event_kind, engaged.details.get()),
        })
        .collect();
    let interactions = view
        .interactions
        .iter()
        .rev()
        .map(|interaction| Line {
            at: timestamp(interaction.at_ms),
            channel: interaction.channel.clone(),
            what: interaction.kind.clone(),
            text: interaction.text.clone(),
        })
        .collect();
    CustomerPage {
        viewer: Some(viewer),
        id: view.id,
        profile,
        channels,
        engagement,
        interactions,
        instances: instances.iter().map(InstanceRow::of).collect(),
    }
}
