//! `GET /ws` as a route.
//!
//! A real handshake (`Upgrade: websocket`) never gets here: the server hands it to
//! [`upgrade`](super::upgrade) before routing. What does get here is a request to
//! `/ws` that is not an upgrade; it gets the same checks, so a client learns first
//! what is wrong with its token, and then a 400.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use super::context::WsContext;
use super::handshake::{accept, admit};
use crate::error::ApiError;

/// `GET /ws`
#[utoipa::path(
    get,
    path = "/ws",
    tag = "websocket",
    description = "The WebSocket endpoint. The frames it speaks are described by the AsyncAPI \
                   document `docs/asyncapi.yaml`. The token comes as `Authorization: Bearer`, as \
                   the subprotocol pair `[\"eventide\", \"bearer.<jwt>\"]`, or as `access_token`.",
    params(
        ("access_token" = Option<String>, Query, description = "The JWT, for clients that cannot set headers"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 403, description = "An `Origin` outside `EVENTIDE_ALLOWED_ORIGINS`", body = crate::error::ErrorBody),
        (status = 429, description = "The token's `sub` holds `EVENTIDE_MAX_CONNECTIONS_PER_SUB` sockets", body = crate::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn websocket(
    req: HttpRequest,
    context: web::Data<Arc<WsContext>>,
) -> Result<HttpResponse, ApiError> {
    // The slot taken by a successful check is given back at once.
    drop(admit(&context, req.head()).await?);
    Err(accept(&context, req.head())
        .err()
        .unwrap_or_else(|| ApiError::BadRequest("not a WebSocket upgrade".into())))
}
