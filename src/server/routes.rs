//! The route table: every route the hub serves, in one list. [`register`] mounts
//! exactly these, and the OpenAPI test checks that the document describes exactly
//! these, so a route cannot be served undocumented or documented unserved.

use actix_web::{http::Method, web, HttpResponse};

use crate::error::ApiError;
use crate::{availability, health, metrics, openapi, page, rooms, users, ws};

/// One route of the hub: a method, a path pattern and its handler.
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path pattern, as registered and as documented (`{name}` for a parameter).
    pub path: &'static str,
    handler: fn() -> actix_web::Route,
}

impl Endpoint {
    fn new(method: Method, path: &'static str, handler: fn() -> actix_web::Route) -> Self {
        Endpoint {
            method,
            path,
            handler,
        }
    }
}

/// Every route the hub serves, in registration order.
pub fn endpoints() -> Vec<Endpoint> {
    use availability::routes as slots;
    vec![
        Endpoint::new(Method::GET, "/", || web::to(page::index)),
        Endpoint::new(Method::GET, "/eventide.js", || web::to(page::client_js)),
        Endpoint::new(Method::GET, "/eventide.min.js", || {
            web::to(page::client_min_js)
        }),
        Endpoint::new(Method::GET, "/ws", || web::to(ws::websocket)),
        Endpoint::new(Method::GET, "/healthz", || web::to(health::healthz)),
        Endpoint::new(Method::GET, "/readyz", || web::to(health::readyz)),
        Endpoint::new(Method::GET, "/metrics", || web::to(metrics::scrape)),
        Endpoint::new(Method::GET, "/api/openapi.json", || {
            web::to(openapi::openapi_json)
        }),
        Endpoint::new(
            Method::GET,
            "/api/providers/{providerId}/availability",
            || web::to(slots::list),
        ),
        Endpoint::new(
            Method::POST,
            "/api/providers/{providerId}/availability",
            || web::to(slots::create),
        ),
        Endpoint::new(Method::GET, "/api/availability/{id}", || {
            web::to(slots::get)
        }),
        Endpoint::new(Method::PATCH, "/api/availability/{id}", || {
            web::to(slots::update)
        }),
        Endpoint::new(Method::DELETE, "/api/availability/{id}", || {
            web::to(slots::delete)
        }),
        Endpoint::new(Method::POST, "/api/rooms/{room}/events", || {
            web::to(rooms::routes::emit_to_room)
        }),
        Endpoint::new(Method::POST, "/api/broadcast", || {
            web::to(rooms::routes::broadcast)
        }),
        Endpoint::new(Method::GET, "/api/rooms/{room}/presence", || {
            web::to(rooms::routes::presence)
        }),
        Endpoint::new(Method::POST, "/api/users/{sub}/events", || {
            web::to(users::routes::emit_to_user)
        }),
        Endpoint::new(Method::POST, "/api/users/{sub}/disconnect", || {
            web::to(users::routes::disconnect)
        }),
    ]
}

/// Mounts every endpoint: one resource per path, holding each of its methods, so a
/// known path with another method gets a JSON 405; any other path a JSON 404.
pub fn register(cfg: &mut web::ServiceConfig) {
    let endpoints = endpoints();
    let mut paths: Vec<&str> = Vec::new();
    for endpoint in &endpoints {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path).default_service(web::to(method_not_allowed));
        for endpoint in endpoints.iter().filter(|e| e.path == path) {
            resource = resource.route((endpoint.handler)().method(endpoint.method.clone()));
        }
        cfg.service(resource);
    }
    cfg.default_service(web::to(not_found));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
