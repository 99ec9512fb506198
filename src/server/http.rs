//! The HTTP server: actix-server accepting on the listener, actix-http speaking
//! HTTP/1 on each connection, the `App` (routes, state, middleware) serving requests,
//! and the WebSocket [`upgrade`](crate::ws::upgrade) service taking every upgrade
//! request before routing, so that a WebSocket leaves the HTTP dispatcher.
//!
//! This is what actix-web's `HttpServer` assembles inside, with the same timeouts;
//! `HttpServer` offers no way to set the upgrade service.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::{HttpService, KeepAlive, Request};
use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server};
use actix_web::App;
use tokio::net::TcpStream;

use super::network;
use super::shutdown::SHUTDOWN_TIMEOUT_SECS;
use crate::ws::{upgrade, WsContext};

/// How long a client may take to send a request's head.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing HTTP connection may take to go.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `app` (built once per worker) and WebSocket upgrades on `listener`, with at
/// most `max_connections` connections per worker.
pub fn serve<F, T, B>(
    listener: TcpListener,
    app: F,
    ws: Arc<WsContext>,
    max_connections: usize,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let server = actix_server::Server::build()
        .listen("eventide-hub", listener, move || {
            let ws = ws.clone();
            let upgrades = fn_factory(move || {
                let ws = ws.clone();
                async move {
                    Ok::<_, ()>(fn_service(
                        move |(request, framed): (Request, Framed<TcpStream, _>)| {
                            upgrade::upgrade(ws.clone(), request, framed)
                        },
                    ))
                }
            });
            let app = app()
                .into_factory()
                .map_err(|err: actix_web::Error| err.as_response_error().error_response());
            HttpService::build()
                .keep_alive(KeepAlive::default())
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(addr)
                .on_connect_ext(|io: &TcpStream, _: &mut _| network::tune_socket(io))
                .upgrade(upgrades)
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })?
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .max_concurrent_connections(max_connections)
        .run();
    Ok(server)
}
