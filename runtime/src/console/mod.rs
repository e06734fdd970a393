//! The web console: server-rendered pages over the runtime, served by
//! `journeyd serve` on the API's port under `/`, behind the same tokens.
//!
//! A person signs in with an API token; the console keeps it in an
//! `HttpOnly`, `SameSite=Strict` cookie and checks it on every page
//! exactly as the API checks a bearer token (unknown, revoked, expired).
//! A `read` token sees every page; acting needs `admin`. Without a valid
//! token the console shows the sign-in page and nothing else.
//!
//! Pages are askama templates (`runtime/templates/console/`, compiled
//! into the binary and HTML-escaped), styled by one embedded stylesheet:
//! nothing is fetched from elsewhere, and no JavaScript is needed to read
//! a page.
//!
//! Files: `session.rs` signing in and out, the [`session::Viewer`] every
//! page takes and the [`session::Operator`] every action takes;
//! `journeys.rs` the journeys pages, `graph.rs` a journey's drawing; `funnel.rs` the funnel and
//! experiments; `instances.rs` the instances list, an
//! instance and the actions on it; `timeline.rs` a history in words;
//! `plugins.rs` plugin versions, tags and rollouts; `deliveries.rs`
//! messages by delivery status and their replay; `customers.rs` the
//! single view of one customer.

mod customers;
mod deliveries;
mod funnel;
mod graph;
mod instances;
mod journeys;
mod plugins;
mod session;
mod timeline;

use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::api::AppState;

/// The console's stylesheet, served at [`STYLESHEET`].
const CSS: &str = include_str!("assets/console.css");
/// Where the stylesheet is served (versioned by the binary, so a browser
/// may keep it).
const STYLESHEET: &str = "/console/console.css";
/// The small script that keeps pages live, served at [`SCRIPT`].
const JS: &str = include_str!("assets/live.js");
/// Where the script is served.
const SCRIPT: &str = "/console/live.js";

/// What a console page may load and where it may be shown: only this
/// server's own stylesheet and script, in no other site's frame, its forms
/// posting only here.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console's pages.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/journeys") }))
        .route("/signin", get(session::signin_page).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/journeys", get(journeys::list))
        .route("/journeys/{name}", get(journeys::show))
        .route("/journeys/{name}/funnel", get(funnel::show))
        .route("/instances", get(instances::list))
        .route("/instances/{id}", get(instances::show))
        .route("/instances/{id}/{action}", post(instances::act))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/replay", post(deliveries::replay))
        .route("/customers", get(customers::find))
        .route("/customers/{id}", get(customers::show))
        .route("/plugins", get(plugins::list))
        .route("/plugins/{name}/tags/{tag}/{action}", post(plugins::act))
        .route(STYLESHEET, get(|| asset("text/css; charset=utf-8", CSS)))
        .route(SCRIPT, get(|| asset("text/javascript; charset=utf-8", JS)))
        .layer(axum::middleware::map_response(protect))
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The headers every console answer carries: the content security
/// policy, no MIME sniffing, referrers only to this server, and pages not
/// kept by shared caches.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    response
}

/// A page rendered, or a plain error page when rendering fails.
fn page(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the page could not be drawn: {error}"),
        ),
    }
}

/// The page that asks an operator to confirm an action: it posts the
/// same form again with `confirm=yes`.
#[derive(Template)]
#[template(path = "console/confirm.html")]
struct Confirm<'a> {
    viewer: Option<&'a session::Viewer>,
    /// The action in words, as a question without its mark.
    what: String,
    /// Where the form posts.
    action: String,
    /// The form's fields, sent again.
    fields: Vec<(String, String)>,
    /// The reason given, shown.
    reason: String,
    /// The confirming button's text.
    button: String,
    /// Where "no" leads.
    back: String,
}

/// The page shown for a request that cannot be answered.
#[derive(Template)]
#[template(path = "console/problem.html")]
struct Problem<'a> {
    viewer: Option<&'a session::Viewer>,
    title: &'a str,
    message: &'a str,
}

/// An error page with `status` saying `message`.
fn problem(status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let html = Problem {
        viewer: None,
        title,
        message,
    }
    .render()
    .unwrap_or_else(|_| message.to_owned());
    (status, Html(html)).into_response()
}

/// A search form's field as a condition: trimmed, and none when empty.
fn condition(field: &str) -> Option<String> {
    Some(field.trim().to_owned()).filter(|field| !field.is_empty())
}

/// Milliseconds since the Unix epoch as an RFC 3339 time, to the second.
fn timestamp(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|at| at.round(jiff::Unit::Second).unwrap_or(at).to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Run a store read on the blocking pool; a failure becomes its page.
async fn off_blocking<T: Send + 'static>(
    read: impl FnOnce() -> crate::store::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())),
        Err(error) => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            &error.to_string(),
        )),
    }
}
