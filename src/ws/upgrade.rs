//! The door every HTTP/1 upgrade request comes through (`Upgrade: websocket`, before
//! any route): actix-http hands it the request and the connection with whatever the
//! dispatcher had read. A handshake to `/ws` that passes the checks is answered `101`
//! and the connection leaves HTTP for good: the dispatcher's buffers are dropped, the
//! bytes already read go to the session's reader, and the session owns the socket.
//! Anything else gets the same JSON error a route would send, and the connection
//! closes.
//!
//! Nothing of the HTTP connection outlives the handshake: actix-http's task for it
//! ends once the session has started. So sockets are counted against
//! `EVENTIDE_MAX_CONNECTIONS` by the handshake checks (the slot then goes with the
//! socket and is freed when its descriptor closes), not by the HTTP server, and at
//! shutdown the hub closes them itself (1001) before the server stops.

use std::sync::Arc;
use std::time::Instant;

use actix_codec::Framed;
use actix_http::body::{self, BodySize};
use actix_http::{h1, ConnectionType, Method, Request, Response};
use actix_web::ResponseError;
use futures_util::SinkExt;
use tokio::net::TcpStream;

use super::context::WsContext;
use super::handshake::{accept, admit, Admitted};
use super::socket::Connection;
use super::WsSession;
use crate::error::ApiError;

/// The path of the WebSocket endpoint.
pub const PATH: &str = "/ws";

/// Answers one upgrade request; returns once the session has the socket.
pub async fn upgrade(
    context: Arc<WsContext>,
    request: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_http::Error> {
    // The request is dropped here, not kept for the life of the socket.
    let checked = check(&context, request).await;
    match checked {
        Ok((admitted, response)) => {
            let sent = framed.send((response, BodySize::None).into()).await;
            if let Err(e) = sent {
                log::debug!("handshake answer not delivered: {e}");
                return Ok(());
            }
            serve(context, admitted, framed);
        }
        Err(refused) => {
            if let Err(e) = refuse(&mut framed, &refused).await {
                log::debug!("handshake refusal not delivered: {e}");
            }
        }
    }
    Ok(())
}

/// Runs the handshake checks on a request to [`PATH`]; counts it like any request.
async fn check(
    context: &WsContext,
    request: Request,
) -> Result<(Admitted, Response<()>), ApiError> {
    let started = Instant::now();
    let head = request.head();
    let route = if head.uri.path() == PATH {
        PATH
    } else {
        "unmatched"
    };
    let checked = match (route, &head.method) {
        (PATH, &Method::GET) => match admit(context, head).await {
            Ok(admitted) => accept(context, head).map(|response| (admitted, response)),
            Err(refused) => Err(refused),
        },
        (PATH, _) => Err(ApiError::MethodNotAllowed),
        _ => Err(ApiError::NotFound(format!(
            "no WebSocket endpoint at {}: connect to {PATH}",
            head.uri.path()
        ))),
    };
    let status = match &checked {
        Ok(_) => 101,
        Err(refused) => refused.status_code().as_u16(),
    };
    context
        .metrics
        .observe_http(&head.method, route, status, started.elapsed());
    checked
}

/// Starts the session on this thread with the socket and the bytes read past the
/// handshake; the dispatcher's buffers are dropped with `framed`'s other parts.
fn serve(context: Arc<WsContext>, admitted: Admitted, framed: Framed<TcpStream, h1::Codec>) {
    let parts = framed.into_parts();
    let Admitted { claims, slot } = admitted;
    let id = context.ids.next();
    let connection = Connection::new(parts.io, slot);
    WsSession::start(id, claims, context, connection, &parts.read_buf);
}

/// Sends `error` as a route would (status, headers, JSON body) and closes.
async fn refuse(
    framed: &mut Framed<TcpStream, h1::Codec>,
    error: &ApiError,
) -> Result<(), Box<dyn std::error::Error>> {
    let response: Response<_> = error.error_response().into();
    let (mut head, body) = response.into_parts();
    let body = body::to_bytes(body).await.unwrap_or_default();
    head.head_mut().set_connection_type(ConnectionType::Close);
    framed
        .send(h1::Message::Item((
            head,
            BodySize::Sized(body.len() as u64),
        )))
        .await?;
    framed.send(h1::Message::Chunk(Some(body))).await?;
    framed.send(h1::Message::Chunk(None)).await?;
    Ok(())
}
