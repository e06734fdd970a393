//! Signing in and out, and the [`Viewer`] of a page: the token in the
//! console's cookie, checked on every request as the API checks a bearer
//! token.

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::page;
use crate::api::AppState;
use crate::store::Scope;

/// The cookie that holds the signed-in token.
const COOKIE: &str = "journeyd_console";

/// Who is looking: the token the console's cookie holds, valid now.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
}

/// Why a token does not sign anyone in, for the sign-in page.
fn check(state: &AppState, secret: &str) -> Result<Viewer, String> {
    let runtime = &state.runtime;
    let token = runtime
        .authenticate(secret.trim())
        .ok_or("That token is not valid (unknown or revoked).")?;
    if runtime.token_expired_at(&token).is_some() {
        return Err(format!(
            "Token `{}` has expired: ask for a new one (`journeyd token create`).",
            token.name
        ));
    }
    if !token.scope.allows(Scope::Read) {
        return Err(format!(
            "Token `{}` has the `{}` scope: the console needs `read` or `admin`.",
            token.name,
            token.scope.as_str()
        ));
    }
    Ok(Viewer {
        name: token.name,
        scope: token.scope,
    })
}

impl FromRequestParts<AppState> for Viewer {
    /// To the sign-in page.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let signed_in = jar
            .get(COOKIE)
            .and_then(|cookie| check(state, cookie.value()).ok());
        signed_in.ok_or_else(|| Redirect::to("/signin").into_response())
    }
}

/// The sign-in page.
#[derive(Template)]
#[template(path = "console/signin.html")]
struct SignIn<'a> {
    viewer: Option<&'a Viewer>,
    error: Option<String>,
}

/// `GET /signin`: the form (or on to the journeys when signed in).
pub(super) async fn signin_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    if jar
        .get(COOKIE)
        .is_some_and(|cookie| check(&state, cookie.value()).is_ok())
    {
        return Redirect::to("/journeys").into_response();
    }
    page(&SignIn {
        viewer: None,
        error: None,
    })
}

/// The sign-in form.
#[derive(Deserialize)]
pub(super) struct Credentials {
    token: String,
}

/// `POST /signin`: keep a valid token in the cookie and go on to the
/// journeys; say why an invalid one is refused.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(credentials): Form<Credentials>,
) -> Response {
    match check(&state, &credentials.token) {
        Ok(_) => {
            let cookie = Cookie::build((COOKIE, credentials.token.trim().to_owned()))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .build();
            (jar.add(cookie), Redirect::to("/journeys")).into_response()
        }
        Err(error) => {
            let mut response = page(&SignIn {
                viewer: None,
                error: Some(error),
            });
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

/// `POST /signout`: forget the token.
pub(super) async fn sign_out(jar: CookieJar) -> Response {
    (
        jar.remove(Cookie::build(COOKIE).path("/")),
        Redirect::to("/signin"),
    )
        .into_response()
}
