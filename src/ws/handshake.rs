//! The checks every WebSocket handshake passes before the hub upgrades it, in this
//! order: the `Origin`, the token (header, `Sec-WebSocket-Protocol` or
//! `access_token`), its revocation, the per-subject socket limit; and then the
//! upgrade request itself (RFC 6455 §4.2.1). Both doors to `/ws` use them: the upgrade
//! service for real handshakes and the route for requests that are not one.
//!
//! The token is never logged.

use actix_http::ws as rfc6455;
use actix_http::{RequestHead, Response};
use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use serde::Deserialize;

use super::context::WsContext;
use super::{ConnectionSlot, Full};
use crate::auth::{bearer_token, revoked, AuthError, Claims};
use crate::error::ApiError;
use crate::metrics::Rejection;

/// The subprotocol a browser offers beside `bearer.<jwt>`, and the one the hub selects.
pub const SUBPROTOCOL: &str = "eventide";

/// A handshake that passed the checks: who connects, holding one of its subject's
/// socket slots.
pub struct Admitted {
    pub claims: Claims,
    pub slot: ConnectionSlot,
}

/// Runs the checks, counting and logging a refusal.
pub async fn admit(context: &WsContext, head: &RequestHead) -> Result<Admitted, ApiError> {
    let peer = peer(head);
    if let Some(origin) = head.headers.get(header::ORIGIN) {
        if !context.origins.allows(origin.as_bytes()) {
            log::info!("handshake from {peer} refused: origin {origin:?} is not allowed");
            context.metrics.rejected(Rejection::Origin).inc();
            return Err(ApiError::Forbidden(
                "this origin is not allowed (EVENTIDE_ALLOWED_ORIGINS)".into(),
            ));
        }
    }
    let token = bearer_token(&head.headers)
        .map(str::to_owned)
        .or_else(|| subprotocol_token(&head.headers))
        .or_else(|| query_token(head.uri.query().unwrap_or("")));
    let claims = match token {
        None => Err(AuthError::Missing),
        Some(token) => context.verifier.verify_fresh(&token).await,
    }
    .map_err(ApiError::from)
    .and_then(|claims| {
        if context.revocations.is_revoked(&claims) {
            Err(revoked())
        } else {
            Ok(claims)
        }
    })
    .map_err(|e| {
        log::info!("handshake from {peer} refused: {e}");
        context.metrics.rejected(Rejection::Token).inc();
        e
    })?;
    let max = context.limits.max_connections_per_sub;
    // In a cluster the limit counts the subject's sockets on every node.
    let elsewhere = match context.hub.backplane() {
        Some(backplane) => backplane.census().sockets_elsewhere(&claims.sub).await,
        None => 0,
    };
    let max_total = context.limits.max_connections;
    let slot = context
        .connections
        .try_acquire(&claims.sub, max.saturating_sub(elsewhere), max_total)
        .map_err(|full| {
            context
                .metrics
                .rejected(Rejection::TooManyConnections)
                .inc();
            match full {
                Full::Subject => {
                    log::info!(
                        "handshake from {peer} refused: sub {:?} already holds {max} sockets",
                        claims.sub
                    );
                    ApiError::TooManyRequests(format!(
                        "this subject already holds {max} open sockets \
                         (EVENTIDE_MAX_CONNECTIONS_PER_SUB)"
                    ))
                }
                Full::Node => {
                    log::warn!(
                        "handshake from {peer} refused: this node holds {max_total} sockets"
                    );
                    ApiError::Unavailable(format!(
                        "this node holds {max_total} sockets (EVENTIDE_MAX_CONNECTIONS): \
                         try again later or another node"
                    ))
                }
            }
        })?;
    Ok(Admitted { claims, slot })
}

/// The `101 Switching Protocols` answer to a valid upgrade request, selecting
/// [`SUBPROTOCOL`] when the client offers it.
pub fn accept(context: &WsContext, head: &RequestHead) -> Result<Response<()>, ApiError> {
    rfc6455::verify_handshake(head).map_err(|e| {
        context.metrics.rejected(Rejection::NotWebsocket).inc();
        ApiError::BadRequest(format!("not a WebSocket upgrade: {e}"))
    })?;
    let mut response = rfc6455::handshake_response(head);
    if offers_subprotocol(&head.headers) {
        response.insert_header((header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL));
    }
    Ok(response.finish().drop_body())
}

/// Every subprotocol the client offers, in its order.
fn offered(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn offers_subprotocol(headers: &HeaderMap) -> bool {
    offered(headers).any(|p| p == SUBPROTOCOL)
}

/// A token offered as the subprotocol `bearer.<jwt>`, for browsers that should not put
/// it in the URL: `new WebSocket(url, ["eventide", "bearer." + jwt])`.
fn subprotocol_token(headers: &HeaderMap) -> Option<String> {
    offered(headers).find_map(|p| p.strip_prefix("bearer.").map(str::to_owned))
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

fn query_token(query: &str) -> Option<String> {
    web::Query::<TokenQuery>::from_query(query)
        .ok()
        .and_then(|q| q.into_inner().access_token)
        .filter(|t| !t.is_empty())
}

fn peer(head: &RequestHead) -> String {
    head.peer_addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}
