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
//! Files: `session.rs` signing in and out and the [`session::Viewer`]
//! every page takes; `journeys.rs` the journeys pages.

mod journeys;
mod session;

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

/// The console's pages.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/journeys") }))
        .route("/signin", get(session::signin_page).post(session::sign_in))
        .route("/signout", post(session::sign_out))
        .route("/journeys", get(journeys::list))
        .route("/journeys/{name}", get(journeys::show))
        .route(STYLESHEET, get(stylesheet))
        .with_state(state)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
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

/// Milliseconds since the Unix epoch as an RFC 3339 time, to the second.
fn timestamp(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|at| at.round(jiff::Unit::Second).unwrap_or(at).to_string())
        .unwrap_or_else(|_| ms.to_string())
}
