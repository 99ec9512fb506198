//! The browser page and the JavaScript client, embedded in the binary so the hub
//! needs no separate build step and no CDN. The client is the `client/` npm package's
//! module, as one file for `GET /eventide.js` and minified for `GET /eventide.min.js`
//! (both in `client/dist/`, committed, and checked to match the source by the
//! package's tests).

use actix_web::{http::header, HttpResponse};

const INDEX_HTML: &str = include_str!("../static/index.html");
const CLIENT_JS: &str = include_str!("../client/dist/eventide.js");
const CLIENT_MIN_JS: &str = include_str!("../client/dist/eventide.min.js");

/// `GET /`: the availability page.
#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    responses((status = 200, description = "The browser page", content_type = "text/html", body = String))
)]
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX_HTML)
}

/// `GET /eventide.js`: the reconnecting client module.
#[utoipa::path(
    get,
    path = "/eventide.js",
    tag = "page",
    responses((status = 200, description = "The page's WebSocket client", content_type = "text/javascript", body = String))
)]
pub async fn client_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(CLIENT_JS)
}

/// `GET /eventide.min.js`: the same client, minified.
#[utoipa::path(
    get,
    path = "/eventide.min.js",
    tag = "page",
    responses((status = 200, description = "The page's WebSocket client, minified", content_type = "text/javascript", body = String))
)]
pub async fn client_min_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(CLIENT_MIN_JS)
}
