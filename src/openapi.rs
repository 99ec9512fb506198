//! The OpenAPI 3.1 document of the HTTP API, generated from the code and served at
//! `GET /api/openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` (route, parameters, bodies, every
//! status it answers) and each body type derives `ToSchema`, so the document changes
//! with the code. The route table in [`crate::server::routes`] is the one list of
//! routes: the test `tests/api/openapi.rs` fails if the document and that table differ,
//! and checks real responses against the documented schemas. The WebSocket frames are
//! documented separately, in AsyncAPI (`docs/asyncapi.yaml`).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's root: every documented route and the bearer scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eventide hub",
        description = "REST API of the Eventide hub: availability slots with a per-provider \
                       version, events to rooms, health and metrics. Every `/api` route but this \
                       document needs `Authorization: Bearer <jwt>`. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`. The WebSocket protocol at `/ws` is \
                       described by the AsyncAPI document `docs/asyncapi.yaml`."
    ),
    paths(
        crate::page::index,
        crate::page::client_js,
        crate::page::client_min_js,
        crate::ws::websocket,
        crate::health::healthz,
        crate::health::readyz,
        crate::metrics::scrape,
        openapi_json,
        crate::availability::routes::list,
        crate::availability::routes::create,
        crate::availability::routes::get,
        crate::availability::routes::update,
        crate::availability::routes::delete,
        crate::rooms::routes::emit_to_room,
        crate::rooms::routes::broadcast,
        crate::rooms::routes::presence,
        crate::users::routes::emit_to_user,
        crate::users::routes::disconnect,
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "availability", description = "Provider slots; every change bumps the provider's version and is pushed to its room"),
        (name = "events", description = "Events sent to the sockets of a room, or of every room, and who is in a room"),
        (name = "users", description = "Events to every socket of one token subject; disconnecting and revoking a subject"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "websocket", description = "The WebSocket handshake (frames: docs/asyncapi.yaml)"),
        (name = "page", description = "The browser page"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the operations refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT signed with the hub's key; claims `sub`, `role`, `exp` \
                         (and `providerId` for providers)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /api/openapi.json`: this document. No token needed.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
