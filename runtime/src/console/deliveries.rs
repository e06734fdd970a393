//! The deliveries page: messages by delivery status, channel and
//! integration, a page at a time, with the error of each one that failed;
//! and an operator's replay of an undelivered message, confirmed first.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{Operator, Viewer};
use super::timeline::{MessageRow, message_rows};
use super::{Confirm, condition, off_blocking, page, problem};
use crate::api::AppState;
use crate::store::{Delivery, DeliveryFilter, DeliveryStatus, OutboxMessage, Scope};

/// Messages on one page.
const PAGE: usize = 50;

/// Messages one page request looks at, at most: a rare condition then
/// answers quickly with "looked this far, go on" instead of reading the
/// whole outbox.
const BUDGET: usize = 10_000;

/// What the status filter's `undelivered` stands for.
const UNDELIVERED: &str = "undelivered";

/// The page's filter form, as the browser sends it (empty fields are no
/// condition).
#[derive(Deserialize, Default, Clone)]
pub(super) struct Search {
    #[serde(default)]
    status: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    integration: String,
    #[serde(default)]
    after: String,
}

impl Search {
    /// The store's filter, or why the search cannot be made.
    fn filter(&self) -> Result<DeliveryFilter, String> {
        let statuses = match condition(&self.status) {
            None => Vec::new(),
            Some(wanted) if wanted == UNDELIVERED => DeliveryStatus::UNDELIVERED.to_vec(),
            Some(wanted) => vec![
                DeliveryStatus::ALL
                    .into_iter()
                    .find(|status| status.as_str() == wanted)
                    .ok_or_else(|| format!("There is no delivery status `{wanted}`."))?,
            ],
        };
        Ok(DeliveryFilter {
            statuses,
            channel: condition(&self.channel),
            integration: condition(&self.integration),
            after: condition(&self.after),
            limit: PAGE,
            budget: BUDGET,
        })
    }

    /// The query string of this search from message `after` on.
    fn from(&self, after: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &self.status),
            ("channel", &self.channel),
            ("integration", &self.integration),
        ] {
            if !value.trim().is_empty() {
                query.append_pair(name, value.trim());
            }
        }
        query.append_pair("after", after);
        query.finish()
    }
}

/// One message in the list: its row as an instance page shows it, with
/// where it comes from.
struct DeliveryRow {
    message: MessageRow,
    instance: String,
    journey: String,
    /// An operator may queue it again.
    replayable: bool,
}

impl DeliveryRow {
    fn of(found: Vec<(OutboxMessage, Delivery)>) -> Vec<DeliveryRow> {
        found
            .into_iter()
            .map(|(message, delivery)| {
                let replayable = delivery.status.is_undelivered();
                let (instance, journey) =
                    (message.instance_id.to_string(), message.journey.clone());
                let deliveries = [(message.id.clone(), delivery)].into();
                let row = message_rows(std::slice::from_ref(&message), &deliveries)
                    .pop()
                    .expect("one row per message");
                DeliveryRow {
                    message: row,
                    instance,
                    journey,
                    replayable,
                }
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "console/deliveries.html")]
struct DeliveriesPage<'a> {
    viewer: Option<&'a Viewer>,
    search: Search,
    statuses: Vec<&'static str>,
    integrations: Vec<String>,
    error: Option<String>,
    rows: Vec<DeliveryRow>,
    /// The next page's query string, when there may be more.
    next: Option<String>,
    /// The page stopped at its budget before it was full.
    looked_far: bool,
    /// An operator may replay.
    admin: bool,
    /// The message just replayed, from the redirect after it.
    replayed: Option<String>,
}

/// `GET /deliveries?status=&channel=&integration=&after=`.
pub(super) async fn list(
    viewer: Viewer,
    State(state): State<AppState>,
    Query(search): Query<Search>,
    Query(done): Query<Replayed>,
) -> Response {
    let statuses = std::iter::once(UNDELIVERED)
        .chain(DeliveryStatus::ALL.iter().map(|status| status.as_str()))
        .collect();
    let integrations = state
        .runtime
        .integrations()
        .into_iter()
        .map(|integration| integration.channel)
        .collect();
    let admin = viewer.scope.allows(Scope::Admin);
    let mut shown = DeliveriesPage {
        viewer: Some(&viewer),
        search: search.clone(),
        statuses,
        integrations,
        error: None,
        rows: Vec::new(),
        next: None,
        looked_far: false,
        admin,
        replayed: done.replayed,
    };
    let filter = match search.filter() {
        Ok(filter) => filter,
        Err(error) => {
            shown.error = Some(error);
            let mut response = page(&shown);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let store = state.runtime.store().clone();
    let found = match off_blocking(move || store.deliveries(&filter)).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    shown.looked_far = found.more_after.is_some() && found.found.len() < PAGE;
    shown.next = found.more_after.as_deref().map(|after| search.from(after));
    shown.rows = DeliveryRow::of(found.found);
    page(&shown)
}

/// After a replay: which message.
#[derive(Deserialize)]
pub(super) struct Replayed {
    replayed: Option<String>,
}

/// The replay form: the confirmation page sends it again with `confirm`.
#[derive(Deserialize, Default)]
pub(super) struct ReplayForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /deliveries/replay`: without `confirm`, the page that asks for
/// it; with it, the replay, then back to the undelivered messages.
pub(super) async fn replay(
    Operator(viewer): Operator,
    State(state): State<AppState>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let id = form.id.trim().to_owned();
    if id.is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Replaying needs the message's id.");
    }
    if form.confirm != "yes" {
        return page(&Confirm {
            viewer: Some(&viewer),
            what: format!("Send message {id} again, under the same id"),
            action: "/deliveries/replay".into(),
            fields: vec![("id".into(), id.clone())],
            reason: String::new(),
            button: "Yes, send it again".into(),
            back: format!("/deliveries?status={UNDELIVERED}"),
        });
    }
    let runtime = state.runtime.clone();
    let owned = id.clone();
    let replayed = tokio::spawn(async move { runtime.replay_message(&owned).await })
        .await
        .map_err(crate::executor::Error::from);
    tracing::info!(message = %id, by = %viewer.name, "replay asked from the console");
    match replayed {
        Ok(Ok(_)) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("status", "queued")
                .append_pair("replayed", &id)
                .finish();
            Redirect::to(&format!("/deliveries?{query}")).into_response()
        }
        Ok(Err(crate::executor::Error::UnknownMessage(_))) => problem(
            StatusCode::NOT_FOUND,
            &format!("There is no message `{id}`."),
        ),
        Ok(Err(error)) | Err(error) => problem(StatusCode::CONFLICT, &error.to_string()),
    }
}
