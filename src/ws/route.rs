//! `GET /ws`: the handshake. Checks the `Origin`, authenticates the token (header,
//! `Sec-WebSocket-Protocol` or `access_token`), enforces the per-subject connection
//! limit, and only then upgrades and starts a [`WsSession`].
//!
//! The token is never logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{ConnectionCounter, Origins, WsSession};
use crate::auth::{bearer_token, revoked, AuthError, Revocations, TokenVerifier};
use crate::config::Limits;
use crate::error::ApiError;
use crate::metrics::{Metrics, Rejection};
use crate::rooms::Hub;

/// The subprotocol a browser offers beside `bearer.<jwt>`, and the one the hub selects.
pub const SUBPROTOCOL: &str = "eventide";

/// What every session of this node shares.
pub struct WsContext {
    /// The rooms.
    pub hub: Hub,
    /// For the handshake and `refreshToken`.
    pub verifier: web::Data<TokenVerifier>,
    /// The protocol limits.
    pub limits: Limits,
    /// How long a joining session retries reading what its client missed.
    pub recovery_deadline: Duration,
    /// Revoked subjects, refused at the handshake and on `refreshToken`.
    pub revocations: Arc<Revocations>,
    /// Browser origins allowed to connect.
    pub origins: Origins,
    /// Open sockets per token subject.
    pub connections: ConnectionCounter,
    /// This hub's metrics.
    pub metrics: Arc<Metrics>,
    /// Hands out session ids.
    pub ids: SessionIds,
}

/// Session ids, unique for the life of the process's hub.
#[derive(Debug)]
pub struct SessionIds(AtomicU64);

impl Default for SessionIds {
    fn default() -> Self {
        SessionIds(AtomicU64::new(1))
    }
}

impl SessionIds {
    fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// A token offered as the subprotocol `bearer.<jwt>`, for browsers that should not put
/// it in the URL: `new WebSocket(url, ["eventide", "bearer." + jwt])`.
fn subprotocol_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer.").map(str::to_owned))
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<TokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().access_token)
        .filter(|t| !t.is_empty())
}

fn peer(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown".into())
}

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
    body: web::Payload,
    context: web::Data<Arc<WsContext>>,
) -> Result<HttpResponse, ApiError> {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        if !context.origins.allows(origin.as_bytes()) {
            log::info!(
                "handshake from {} refused: origin {:?} is not allowed",
                peer(&req),
                origin
            );
            context.metrics.rejected(Rejection::Origin).inc();
            return Err(ApiError::Forbidden(
                "this origin is not allowed (EVENTIDE_ALLOWED_ORIGINS)".into(),
            ));
        }
    }
    let token = bearer_token(&req)
        .map(str::to_owned)
        .or_else(|| subprotocol_token(&req))
        .or_else(|| query_token(&req));
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
        log::info!("handshake from {} refused: {e}", peer(&req));
        context.metrics.rejected(Rejection::Token).inc();
        e
    })?;
    let max = context.limits.max_connections_per_sub;
    // In a cluster the limit counts the subject's sockets on every node.
    let elsewhere = match context.hub.backplane() {
        Some(backplane) => backplane.census().sockets_elsewhere(&claims.sub).await,
        None => 0,
    };
    let slot = context
        .connections
        .try_acquire(&claims.sub, max.saturating_sub(elsewhere))
        .ok_or_else(|| {
            log::info!(
                "handshake from {} refused: sub {:?} already holds {max} sockets",
                peer(&req),
                claims.sub
            );
            context
                .metrics
                .rejected(Rejection::TooManyConnections)
                .inc();
            ApiError::TooManyRequests(format!(
                "this subject already holds {max} open sockets (EVENTIDE_MAX_CONNECTIONS_PER_SUB)"
            ))
        })?;

    let (response, session, stream) = actix_ws::handle_with_protocols(&req, body, &[SUBPROTOCOL])
        .map_err(|e| {
        context.metrics.rejected(Rejection::NotWebsocket).inc();
        ApiError::BadRequest(format!("not a WebSocket upgrade: {e}"))
    })?;
    let max_message = context.limits.max_message_bytes;
    let stream = stream
        .max_frame_size(max_message)
        .aggregate_continuations()
        .max_continuation_size(max_message);
    let id = context.ids.next();
    let context: Arc<WsContext> = context.get_ref().clone();
    WsSession::create(move |ctx| {
        ctx.add_stream(stream);
        WsSession::new(id, claims, context, session, slot)
    });
    Ok(response)
}
