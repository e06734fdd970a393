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

use super::{page, problem};
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

/// Who acts: a signed-in viewer with the `admin` scope, on a request the
/// console's own page sent. Form posts are checked for their origin
/// (`Origin`, or `Referer` where a browser leaves it out) on top of the
/// cookie's `SameSite=Strict`, so another site cannot make a signed-in
/// browser act.
#[derive(Debug, Clone)]
pub struct Operator(pub Viewer);

impl FromRequestParts<AppState> for Operator {
    /// To the sign-in page, or a 403 page saying why.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if !viewer.scope.allows(Scope::Admin) {
            return Err(problem(
                StatusCode::FORBIDDEN,
                &format!(
                    "Token `{}` has the `{}` scope: acting needs an `admin` token.",
                    viewer.name,
                    viewer.scope.as_str()
                ),
            ));
        }
        if !same_origin(&parts.headers) {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "This request did not come from a console page (its Origin is another site's, or missing).",
            ));
        }
        Ok(Operator(viewer))
    }
}

/// Whether a request says it comes from another site: it names an origin
/// (`Origin`, else `Referer`) that is not this server. A browser names one
/// on every cross-site form post.
fn from_another_site(headers: &axum::http::HeaderMap) -> bool {
    let named = [axum::http::header::ORIGIN, axum::http::header::REFERER]
        .iter()
        .any(|name| headers.contains_key(name));
    named && !same_origin(headers)
}

/// Whether a request names this server as its origin: its `Origin` (else
/// its `Referer`) has the request's own `Host`.
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    let Some(host) = header(axum::http::header::HOST) else {
        return false;
    };
    let Some(origin) = header(axum::http::header::ORIGIN).or(header(axum::http::header::REFERER))
    else {
        return false;
    };
    let Ok(origin) = origin.parse::<axum::http::Uri>() else {
        return false;
    };
    matches!(origin.scheme_str(), Some("http" | "https"))
        && origin
            .authority()
            .is_some_and(|authority| authority.as_str() == host)
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
/// journeys; say why an invalid one is refused. A post from another site
/// is refused, so no site can sign a browser in with a token of its own.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
    Form(credentials): Form<Credentials>,
) -> Response {
    if from_another_site(&headers) {
        return problem(
            StatusCode::FORBIDDEN,
            "This sign-in came from another site's page.",
        );
    }
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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{from_another_site, same_origin};

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name, HeaderValue::from_str(value).expect("a header value"));
        }
        headers
    }

    #[test]
    fn a_post_is_accepted_only_from_the_consoles_own_origin() {
        let host = (header::HOST, "127.0.0.1:8080");
        let from = |name: header::HeaderName, value: &str| headers(&[host.clone(), (name, value)]);
        assert!(same_origin(&from(header::ORIGIN, "http://127.0.0.1:8080")));
        assert!(same_origin(&from(
            header::REFERER,
            "http://127.0.0.1:8080/instances/i-1"
        )));
        assert!(!same_origin(&from(header::ORIGIN, "http://evil.example")));
        assert!(!same_origin(&from(header::ORIGIN, "http://127.0.0.1:8081")));
        assert!(!same_origin(&from(header::ORIGIN, "null")));
        assert!(!same_origin(&from(header::ORIGIN, "file://127.0.0.1:8080")));
        assert!(
            !same_origin(&headers(std::slice::from_ref(&host))),
            "no origin at all"
        );
        assert!(!same_origin(&headers(&[(
            header::ORIGIN,
            "http://127.0.0.1:8080"
        )])));
        // Signing in: refused only when another site is named.
        assert!(from_another_site(&from(
            header::ORIGIN,
            "http://evil.example"
        )));
        assert!(!from_another_site(&from(
            header::ORIGIN,
            "http://127.0.0.1:8080"
        )));
        assert!(!from_another_site(&headers(std::slice::from_ref(&host))));
    }
}
