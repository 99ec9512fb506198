//! What wraps every request: the CORS policy (the same origin allowlist as WebSocket
//! upgrades) and the request metrics.

use std::sync::Arc;
use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;

use crate::metrics::Metrics;
use crate::ws::Origins;

/// CORS for browser callers from an allowed origin. A request from another origin is
/// still answered, without CORS headers, so the browser (not the hub) refuses it.
pub fn cors(origins: Origins) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, _| origins.allows(origin.as_bytes()))
        .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::LOCATION])
        .block_on_origin_mismatch(false)
        .max_age(3600)
}

/// Counts each request and its duration by method, route pattern and status. Wrap it
/// outermost, so it also sees what CORS answers by itself.
pub async fn observe_http(
    metrics: Arc<Metrics>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    // The pattern, not the path: ids must not become label values.
    let route = req.match_pattern();
    let response = next.call(req).await;
    let status = match &response {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    metrics.observe_http(
        &method,
        route.as_deref().unwrap_or("unmatched"),
        status.as_u16(),
        started.elapsed(),
    );
    response
}
