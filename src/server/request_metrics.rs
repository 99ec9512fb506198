//! The middleware that counts every HTTP request and its duration
//! (`eventide_http_requests_total`, `eventide_http_request_duration_seconds`).

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::metrics::Metrics;

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
