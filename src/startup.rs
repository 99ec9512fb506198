//! Building and running the hub: one [`Application::build`] used by `main` and by
//! the tests (which bind port 0), the route table, and the graceful shutdown.

use std::any::Any;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::{
    dev::{Extensions, Server, ServerHandle, Service},
    http::{header, Method},
    web, App, HttpResponse, HttpServer,
};

use crate::auth::{self, TokenVerifier};
use crate::availability::{self, AvailabilityStore};
use crate::cluster::Backplane;
use crate::config::Settings;
use crate::db::{self, DatabaseTarget, DbPool};
use crate::error::{self, ApiError};
use crate::health::{DatabaseProbe, ReadinessCheck};
use crate::metrics::Metrics;
use crate::rooms::{self, CloseAll, Hub};
use crate::ws::{self, Origins, WsContext};
use crate::{health, metrics, openapi, page};

/// Pending connections the kernel queues before the hub accepts them (capped by
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;
/// Kernel send buffer of each accepted socket (the kernel doubles it: 256 KiB).
const SOCKET_SEND_BUFFER: usize = 128 * 1024;
/// How long in-flight requests may take to finish at shutdown.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;
/// How long sockets get to receive their close frame at shutdown.
const SOCKET_DRAIN: Duration = Duration::from_secs(3);

/// A hub that is bound and ready to run.
pub struct Application {
    server: Server,
    port: u16,
    hub: Hub,
    pool: DbPool,
}

/// Why the hub could not start.
#[derive(Debug)]
pub struct StartupError(pub String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

impl Application {
    /// Validates the settings, opens and migrates the database, starts the registry and
    /// binds the listener. Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate().map_err(StartupError)?;
        let target = DatabaseTarget::parse(&settings.database_url)
            .map_err(|e| StartupError(e.to_string()))?;
        // One set of metrics per hub, never a global: tests run many hubs in one process.
        let metrics = Arc::new(
            Metrics::new(settings.redis_url.is_some())
                .with_loopback_open(settings.metrics_loopback_open),
        );
        let verifier = TokenVerifier::load(&settings, &target, &metrics)
            .await
            .map_err(|e| StartupError(e.to_string()))?;
        actix_web::rt::spawn(verifier.clone().keep_current());
        actix_web::rt::spawn(auth::reload_on_sighup(verifier.clone()));
        let verifier = web::Data::from(verifier);
        let pool = {
            let target = target.clone();
            web::block(move || db::connect_and_migrate(&target))
                .await
                .map_err(|e| StartupError(e.to_string()))?
                .map_err(|e| StartupError(e.to_string()))?
        };

        let backplane = match &settings.redis_url {
            Some(url) => Some(Backplane::new(url, &settings.redis_prefix).map_err(StartupError)?),
            None => None,
        };
        if backplane.is_some() && target.sqlite_path().is_some() {
            log::warn!(
                "EVENTIDE_REDIS_URL is set with a SQLite database: a cluster's nodes must share \
                 one PostgreSQL database (DATABASE_URL=postgres://…)"
            );
        }
        let hub = Hub::start(backplane.clone(), metrics.clone());
        if let Some(backplane) = &backplane {
            backplane.clone().start(hub.registry().clone()).await;
        }
        let limits = settings.limits.clone();
        let store =
            AvailabilityStore::new(pool.clone(), hub.clone(), limits.max_history_per_provider);
        let origins = Origins::new(&settings.allowed_origins);
        let ws_context = Arc::new(WsContext::new(
            hub.clone(),
            store.clone(),
            verifier.clone(),
            limits.clone(),
            origins.clone(),
            metrics.clone(),
        ));

        let listener = bind(settings.addr).map_err(|e| {
            StartupError(format!(
                "EVENTIDE_ADDR: cannot listen on {}: {e}",
                settings.addr
            ))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| StartupError(e.to_string()))?;

        let state = AppState {
            hub: web::Data::new(hub.clone()),
            store: web::Data::new(store),
            verifier,
            pool: web::Data::new(pool.clone()),
            probe: web::Data::new(ReadinessCheck::new(
                DatabaseProbe::new(pool.clone(), &target),
                hub.clone(),
                &metrics,
            )),
            ws: web::Data::new(ws_context),
            metrics: web::Data::new(metrics.clone()),
            max_body_bytes: limits.max_body_bytes,
        };
        let server = HttpServer::new(move || {
            let origins = origins.clone();
            let cors = Cors::default()
                .allowed_origin_fn(move |origin, _| origins.allows(origin.as_bytes()))
                .allowed_methods(["GET", "POST", "PATCH", "DELETE"])
                .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([header::LOCATION])
                .block_on_origin_mismatch(false)
                .max_age(3600);
            let metrics = metrics.clone();
            App::new()
                .wrap(cors)
                // Outermost, so it also sees what CORS answers by itself.
                .wrap_fn(move |req, srv| {
                    let started = Instant::now();
                    let method = req.method().clone();
                    // The pattern, not the path: ids must not become label values.
                    let route = req.match_pattern();
                    let metrics = metrics.clone();
                    let response = srv.call(req);
                    async move {
                        let response = response.await;
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
                })
                .configure(|cfg| state.configure(cfg))
        })
        // `on_connect` must come before `listen`, which takes the callback as it is then.
        .on_connect(tune_socket)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .max_connections(limits.max_connections)
        .listen(listener)
        .map_err(|e| StartupError(e.to_string()))?
        .run();

        log::info!("listening on http://{}:{}", local.ip(), local.port());
        Ok(Application {
            server,
            port: local.port(),
            hub,
            pool,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The hub handle, for tests and embedding.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// The database pool, for tests.
    pub fn pool(&self) -> DbPool {
        self.pool.clone()
    }

    /// A handle that shuts this hub down gracefully.
    pub fn shutdown_handle(&self) -> Shutdown {
        Shutdown {
            server: self.server.handle(),
            hub: self.hub.clone(),
        }
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown_handle();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            log::info!("shutdown signal received");
            shutdown.run().await;
        });
        self.server.await
    }
}

/// Stops a running hub: stop accepting, close every socket with 1001, let in-flight
/// requests finish, stop.
#[derive(Clone)]
pub struct Shutdown {
    server: ServerHandle,
    hub: Hub,
}

impl Shutdown {
    /// Runs the shutdown; returns when the server has stopped.
    pub async fn run(self) {
        self.server.pause().await;
        let sockets = self.hub.registry().send(CloseAll).await.unwrap_or(0);
        log::info!("closing {sockets} socket(s) with 1001");
        let deadline = tokio::time::Instant::now() + SOCKET_DRAIN;
        while tokio::time::Instant::now() < deadline {
            match self.hub.stats().await {
                Ok(stats) if stats.sessions > 0 => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => break,
            }
        }
        // Let the writers flush the close frames they were just handed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.server.stop(true).await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
        tokio::select! {
            _ = term.recv() => {}
            _ = actix_web::rt::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_web::rt::signal::ctrl_c().await;
    }
}

/// Binds the listener with a backlog deep enough for bursts of connects (the standard
/// library's `bind` uses 128).
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Per-connection socket options: no Nagle delay for small frames, and a kernel
/// timeout that releases connections whose peer stopped acknowledging data (a frozen
/// client otherwise holds its socket and buffers forever).
fn tune_socket(conn: &dyn Any, _: &mut Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let socket = socket2::SockRef::from(tcp);
        let _ = socket.set_tcp_nodelay(true);
        // A fixed send buffer bounds the kernel memory a client that stops reading can
        // pin (autotuning lets it grow to tcp_wmem's 4 MiB); the kernel doubles it.
        let _ = socket.set_send_buffer_size(SOCKET_SEND_BUFFER);
        let _ = socket.set_tcp_user_timeout(Some(Duration::from_secs(30)));
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10));
        let _ = socket.set_tcp_keepalive(&keepalive);
    }
}

/// Everything the handlers share, cloned into each worker.
#[derive(Clone)]
struct AppState {
    hub: web::Data<Hub>,
    store: web::Data<AvailabilityStore>,
    verifier: web::Data<TokenVerifier>,
    pool: web::Data<DbPool>,
    probe: web::Data<ReadinessCheck>,
    ws: web::Data<Arc<WsContext>>,
    metrics: web::Data<Arc<Metrics>>,
    max_body_bytes: usize,
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// A resource that answers unknown methods with a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

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

/// Every route the hub serves, in registration order: the one list of routes.
/// [`AppState::configure`] registers exactly these, and the OpenAPI test checks that
/// the document describes exactly these.
pub fn endpoints() -> Vec<Endpoint> {
    use availability::routes as slots;
    vec![
        Endpoint::new(Method::GET, "/", || web::to(page::index)),
        Endpoint::new(Method::GET, "/eventide.js", || web::to(page::client_js)),
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
    ]
}

impl AppState {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.hub.clone())
            .app_data(self.store.clone())
            .app_data(self.verifier.clone())
            .app_data(self.pool.clone())
            .app_data(self.probe.clone())
            .app_data(self.ws.clone())
            .app_data(self.metrics.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(self.max_body_bytes)
                    .content_type_required(false)
                    .error_handler(error::json_error),
            )
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error));
        // One resource per path, holding each of its methods; other methods get 405.
        let endpoints = endpoints();
        let mut paths: Vec<&str> = Vec::new();
        for endpoint in &endpoints {
            if !paths.contains(&endpoint.path) {
                paths.push(endpoint.path);
            }
        }
        for path in paths {
            let mut resource = resource(path);
            for endpoint in endpoints.iter().filter(|e| e.path == path) {
                resource = resource.route((endpoint.handler)().method(endpoint.method.clone()));
            }
            cfg.service(resource);
        }
        cfg.default_service(web::to(not_found));
    }
}
