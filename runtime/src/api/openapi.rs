//! The OpenAPI 3.1 description of the API, generated from the handlers'
//! `#[utoipa::path]` attributes as the router registers them (so a route
//! cannot exist undocumented), and served at `/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::*;

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    /// A stable code naming what is wrong (`invalid_event`,
    /// `unknown_journey`, `shutting_down` ...).
    code: String,
    /// What is wrong, for a person.
    message: String,
}

/// The description's frame; the router adds every path.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "journeyd",
        description = "The HTTP API of journeyd, the host runtime for customer micro journeys. Every route but `/healthz`, `/readyz` and `/v1/callbacks/{channel}` needs an API token (`Authorization: Bearer`) with the route's scope: `ingest` for events and profiles, `read` for every `GET` (but `/v1/backup`), `admin` for the rest.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "events", description = "Events in"),
        (name = "customers", description = "Profiles, views, frequency caps, forgetting"),
        (name = "journeys", description = "Journey versions, funnels, migrations, retention"),
        (name = "instances", description = "Instances, their timelines and operators' actions"),
        (name = "plugins", description = "Plugin versions, tags, rollouts and grants"),
        (name = "delivery", description = "The outbox, integrations, deliveries and provider callbacks"),
        (name = "tokens", description = "API tokens"),
        (name = "clock", description = "The runtime's clock"),
        (name = "operations", description = "Health, metrics, backups, the audit log"),
    )
)]
pub(super) struct Description;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The description as served: paths as OpenAPI writes them (a catch-all
/// `{*id}` is the parameter `{id}`), with the crate's version.
pub(super) fn finish(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let paths = std::mem::take(&mut openapi.paths.paths);
    openapi.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    openapi
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "This description", body = serde_json::Value),
        (status = "default", description = "A JSON error `{\"error\": {\"code\", \"message\"}}` with a stable code", body = ErrorBody),
    ),
    security(()),
)]
pub(super) async fn describe(
    axum::Extension(description): axum::Extension<Arc<serde_json::Value>>,
) -> Json<serde_json::Value> {
    Json((*description).clone())
}
