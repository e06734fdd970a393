//! API tokens on every route: which scope a route needs, the check of the
//! `Authorization: Bearer` header, and `/v1/tokens`.
//!
//! Scopes: `ingest` sends events and customer profiles; `read` reads
//! everything (every `GET`, `/metrics` included); `admin` does everything.
//! Needing none: `/healthz`, `/readyz` (probes) and `/v1/callbacks/...`
//! (a provider's callback carries its own signature). Without a token the
//! answer is `401 unauthenticated`, with an unknown one `401
//! invalid_token`, with one of the wrong scope `403 missing_scope` naming
//! the scope the route needs. Tokens never appear in logs or errors.

use super::*;
use crate::store::Scope;

/// The scope `method` on `path` needs (`None`: open).
pub fn required_scope(method: &axum::http::Method, path: &str) -> Option<Scope> {
    use axum::http::Method;
    if matches!(path, "/healthz" | "/readyz" | "/v1/openapi.json")
        || path.starts_with("/v1/callbacks/")
    {
        return None;
    }
    if (*method == Method::POST && path == "/v1/events")
        || (*method == Method::PUT && path.starts_with("/v1/customers/"))
    {
        return Some(Scope::Ingest);
    }
    // A backup holds every customer's data: admins only.
    if (*method == Method::GET || *method == Method::HEAD) && path != "/v1/backup" {
        return Some(Scope::Read);
    }
    Some(Scope::Admin)
}

/// Refuse a request whose token is missing, unknown or under-scoped.
pub(super) async fn require_token(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(needed) = required_scope(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = presented else {
        return ApiError::new(
            ErrorCode::Unauthenticated,
            format!(
                "this route needs a token with the `{}` scope: send `Authorization: Bearer <token>` (the CLI reads JOURNEYD_TOKEN)",
                needed.as_str()
            ),
        )
        .into_response();
    };
    let Some(token) = state.runtime.authenticate(secret) else {
        return ApiError::new(
            ErrorCode::InvalidToken,
            "the token is not valid (unknown or revoked)",
        )
        .into_response();
    };
    if let Some(expired_at) = state.runtime.token_expired_at(&token) {
        return ApiError::new(
            ErrorCode::TokenExpired,
            format!(
                "token `{}` expired at {} (the server accepts tokens for {} after they are made): create a new one with `journeyd token create` and revoke this one",
                token.name,
                jiff::Timestamp::from_millisecond(expired_at as i64)
                    .map_or_else(|_| expired_at.to_string(), |at| at.to_string()),
                state.runtime.token_max_age()
            ),
        )
        .into_response();
    }
    if !token.scope.allows(needed) {
        return ApiError::new(
            ErrorCode::MissingScope,
            format!(
                "this route needs the `{}` scope; token `{}` has `{}`",
                needed.as_str(),
                token.name,
                token.scope.as_str()
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(Caller(token.name.clone()));
    next.run(request).await
}

/// The name of the token a request came with (what the audit log records).
#[derive(Debug, Clone)]
pub(super) struct Caller(pub String);

/// List API tokens: names, scopes and when they were created (never secrets).
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    responses((status = 200, description = "`{\"tokens\": [...]}`", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
) -> ApiResult<Json<serde_json::Value>> {
    let runtime = state.runtime.clone();
    let tokens = off_async(move || runtime.list_tokens()).await?;
    let tokens: Vec<serde_json::Value> = tokens
        .into_iter()
        .map(|token| {
            json!({
                "name": token.name,
                "scope": token.scope,
                "created_at_ms": token.created_at_ms,
                "expires_at_ms": state.runtime.token_expires_at(&token),
            })
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// The body of `POST /v1/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenBody {
    name: String,
    scope: Scope,
}

/// Create an API token; its secret is shown once.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    request_body(content = serde_json::Value, content_type = "application/json", description = "`{\"name\", \"scope\"}` with scope `ingest`, `read` or `admin`"),
    responses((status = 201, description = "The token with its secret", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn create_token(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let request: TokenBody = json_body(body, "the token")?;
    let runtime = state.runtime.clone();
    let (record, secret) =
        off_async(move || runtime.create_token(&request.name, request.scope)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": record.name,
            "scope": record.scope,
            "created_at_ms": record.created_at_ms,
            "token": secret,
        })),
    ))
}

/// Revoke a token.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{name}",
    tag = "tokens",
    params(("name" = String, Path, description = "The token name")),
    responses((status = 200, description = "Revoked", body = serde_json::Value), (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = super::openapi::ErrorBody)),
)]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let runtime = state.runtime.clone();
    let revoked = name.clone();
    off_async(move || runtime.revoke_token(&revoked)).await?;
    Ok(Json(json!({ "revoked": name })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn routes_need_the_scope_of_what_they_do() {
        let scope = |method: Method, path: &str| required_scope(&method, path);
        assert_eq!(scope(Method::GET, "/healthz"), None);
        assert_eq!(scope(Method::GET, "/readyz"), None);
        assert_eq!(scope(Method::GET, "/v1/openapi.json"), None);
        assert_eq!(scope(Method::POST, "/v1/callbacks/email"), None);
        assert_eq!(scope(Method::POST, "/v1/events"), Some(Scope::Ingest));
        assert_eq!(scope(Method::PUT, "/v1/customers/c-1"), Some(Scope::Ingest));
        assert_eq!(scope(Method::GET, "/v1/instances"), Some(Scope::Read));
        assert_eq!(scope(Method::GET, "/metrics"), Some(Scope::Read));
        assert_eq!(scope(Method::GET, "/v1/backup"), Some(Scope::Admin));
        assert_eq!(scope(Method::PUT, "/v1/plugins/x"), Some(Scope::Admin));
        assert_eq!(scope(Method::POST, "/v1/clock/advance"), Some(Scope::Admin));
        assert_eq!(
            scope(Method::PUT, "/v1/integrations/email"),
            Some(Scope::Admin)
        );
        assert_eq!(scope(Method::DELETE, "/v1/tokens/crm"), Some(Scope::Admin));
        assert!(Scope::Admin.allows(Scope::Ingest));
        assert!(!Scope::Read.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Read));
    }
}
