//! CORS: browser callers from an origin in `EVENTIDE_ALLOWED_ORIGINS` (the same
//! allowlist as WebSocket upgrades) may call the REST API.

use actix_cors::Cors;
use actix_web::http::header;

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
