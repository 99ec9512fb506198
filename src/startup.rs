//! Building and running the hub: one [`Application::build`] used by `main` and by the
//! tests (which bind port 0), then [`Application::run_until_stopped`].
//!
//! This file only puts the parts together; each lives in its own module: the route
//! table, application state, middleware, socket tuning and shutdown in
//! [`crate::server`], the settings in [`crate::config`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::Server, middleware::from_fn, web, App};

use crate::auth::{self, Revocations, TokenVerifier};
use crate::availability::AvailabilityStore;
use crate::changelog::ChangeLog;
use crate::cluster::{Backplane, RedisTarget};
use crate::config::Settings;
use crate::db::{self, DatabaseTarget, DbPool};
use crate::health::{DatabaseProbe, ReadinessCheck};
use crate::metrics::Metrics;
use crate::rooms::sequencer::HoldLimits;
use crate::rooms::{Hub, ShardConfig, TailLimits};
use crate::server::{cors, heap, http, network, request_metrics, routes, AppState, Shutdown};
use crate::ws::{ConnectionCounter, Origins, SessionIds, WsContext};

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
            Metrics::new(settings.clustered()).with_loopback_open(settings.metrics_loopback_open),
        );
        let verifier = TokenVerifier::load(&settings, &target, &metrics)
            .await
            .map_err(|e| StartupError(e.to_string()))?;
        actix_web::rt::spawn(verifier.clone().keep_current());
        actix_web::rt::spawn(heap::trim_after_bursts(metrics.connections.clone()));
        actix_web::rt::spawn(auth::reload_on_sighup(verifier.clone()));
        let verifier = web::Data::from(verifier);
        let pool = {
            let (target, timeout) = (target.clone(), settings.db_statement_timeout());
            web::block(move || db::connect_and_migrate(&target, timeout))
                .await
                .map_err(|e| StartupError(e.to_string()))?
                .map_err(|e| StartupError(e.to_string()))?
        };

        let revocations = {
            let pool = pool.clone();
            web::block(move || Revocations::load(pool))
                .await
                .map_err(|e| StartupError(e.to_string()))?
                .map_err(|e| StartupError(e.to_string()))?
        };
        // Only the cluster census reads which subjects' counts changed.
        let connections = match settings.clustered() {
            true => ConnectionCounter::recording_changes(),
            false => ConnectionCounter::default(),
        };
        let links = Links {
            pool: pool.clone(),
            revocations: revocations.clone(),
            connections: connections.clone(),
        };
        let hub = start_hub(&settings, &target, links, metrics.clone()).await?;
        // A revocation the periodic re-read finds first closes the subject's sockets.
        let closer = hub.clone();
        revocations.keep_fresh(move |sub| closer.disconnect_local(sub));

        let limits = settings.limits.clone();
        let delivery = &settings.delivery;
        let store =
            AvailabilityStore::new(pool.clone(), hub.clone(), limits.max_history_per_provider)
                .pause_after_commit(delivery.pause_after_commit);
        let origins = Origins::new(&settings.allowed_origins);
        let ws_context = Arc::new(WsContext {
            hub: hub.clone(),
            verifier: verifier.clone(),
            limits: limits.clone(),
            recovery_deadline: delivery.recovery_deadline(),
            revocations: revocations.clone(),
            origins: origins.clone(),
            connections,
            metrics: metrics.clone(),
            ids: SessionIds::default(),
        });
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
            revocations: web::Data::new(revocations),
            max_body_bytes: limits.max_body_bytes,
        };

        let listener = network::bind(settings.addr).map_err(|e| {
            StartupError(format!(
                "EVENTIDE_ADDR: cannot listen on {}: {e}",
                settings.addr
            ))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| StartupError(e.to_string()))?;
        let server = serve(listener, state, origins, metrics, limits.max_connections)
            .map_err(|e| StartupError(e.to_string()))?;

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
        Shutdown::new(self.server.handle(), self.hub.clone())
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        actix_web::rt::spawn(self.shutdown_handle().on_signal());
        self.server.await
    }
}

/// What the hub shares with the rest of the node.
struct Links {
    pool: DbPool,
    revocations: Arc<Revocations>,
    connections: ConnectionCounter,
}

/// Creates this node's [`Hub`] and, when `EVENTIDE_REDIS_URL` or
/// `EVENTIDE_REDIS_CLUSTER_URLS` is set, starts the Redis
/// backplane that connects it to the other nodes (waiting for the first subscription,
/// so a node that starts with Redis up hears its peers at once). The only place the
/// hub and the backplane are wired together.
async fn start_hub(
    settings: &Settings,
    target: &DatabaseTarget,
    links: Links,
    metrics: Arc<Metrics>,
) -> Result<Hub, StartupError> {
    let seeds = settings.redis_seeds();
    let redis = match &settings.redis_url {
        Some(url) => Some(RedisTarget::Single(url)),
        None if !seeds.is_empty() => Some(RedisTarget::Cluster(&seeds)),
        None => None,
    };
    let backplane = match redis {
        Some(redis) => Some(
            Backplane::new(redis, &settings.redis_prefix)
                .map_err(|e| StartupError(e.to_string()))?,
        ),
        None => None,
    };
    if backplane.is_some() && target.sqlite_path().is_some() {
        log::warn!(
            "Redis is set with a SQLite database: a cluster's nodes must share one \
             PostgreSQL database (DATABASE_URL=postgres://…)"
        );
    }
    let delivery = &settings.delivery;
    let changelog = ChangeLog::new(
        links.pool,
        &delivery.history_patterns(),
        settings.limits.max_history_per_provider,
    )
    // The statement timeout answers first, with its own error; this bounds the rest.
    .with_read_deadline(settings.db_statement_timeout() + Duration::from_secs(1));
    let config = ShardConfig {
        anti_entropy_interval: delivery.anti_entropy_interval(),
        recovery_deadline: delivery.recovery_deadline(),
        hold: HoldLimits {
            count: 4096,
            bytes: settings.limits.max_pending_bytes * 4,
        },
        heartbeat_interval: settings.limits.heartbeat_interval(),
        tail: TailLimits {
            room_bytes: delivery.replay_tail_bytes,
            node_bytes: delivery.replay_tail_node_bytes,
        },
    };
    let hub = Hub::new(config, changelog, backplane.clone(), metrics.clone());
    if let Some(backplane) = &backplane {
        let (revocations, sockets) = (links.revocations, links.connections);
        backplane
            .start(hub.clone(), revocations, sockets, metrics.clone())
            .await;
    }
    Ok(hub)
}

/// The HTTP server on `listener`: every worker's `App` gets the state, CORS, request
/// metrics and the route table; WebSocket upgrades go to the sessions.
fn serve(
    listener: TcpListener,
    state: AppState,
    origins: Origins,
    metrics: Arc<Metrics>,
    max_connections: usize,
) -> std::io::Result<Server> {
    let ws = state.ws.get_ref().clone();
    let app = move || {
        let metrics = metrics.clone();
        App::new()
            .wrap(cors::cors(origins.clone()))
            // Outermost, so it also sees what CORS answers by itself.
            .wrap(from_fn(move |req, next| {
                request_metrics::observe_http(metrics.clone(), req, next)
            }))
            .configure(|cfg| state.register(cfg))
            .configure(routes::register)
    };
    http::serve(listener, app, ws, max_connections)
}
