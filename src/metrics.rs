//! Prometheus metrics: what operators watch (`docs/protocol.md` §3, `GET /metrics`).
//!
//! Each [`Application`](crate::startup::Application) owns one [`Metrics`], with its own
//! `prometheus::Registry`, shared as an `Arc` with the parts that count: the session
//! actors and the handshake (through `WsContext`), the room registry and the `Hub`, and
//! the REST middleware. Not a process-global: the tests run many hubs in one process and
//! assert exact deltas, and an embedding program may run more than one hub.
//!
//! The hot path stays cheap: every labelled child a socket or the registry touches is
//! resolved once, here, so counting a frame is one atomic increment with no label lookup
//! and no lock. Pool and Redis state are read only when scraped.

use std::time::Duration;

use actix_web::http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::auth::Role;
use crate::cluster::Backplane;
use crate::db::DbPool;

mod scrape;
pub use scrape::{__path_scrape, authorize, scrape};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Fan-out takes microseconds per recipient: buckets from 10 µs to 250 ms.
const FANOUT_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
];
/// REST requests take milliseconds (a write waits for a transaction): 1 ms to 10 s.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why a WebSocket handshake was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// An `Origin` outside the allowlist (403).
    Origin,
    /// No token, or an invalid one (401).
    Token,
    /// The token's `sub` holds `EVENTIDE_MAX_CONNECTIONS_PER_SUB` sockets (429).
    TooManyConnections,
    /// A request to `/ws` that is not a WebSocket upgrade (400).
    NotWebsocket,
}

impl Rejection {
    /// Every reason, in label order.
    pub const ALL: [Rejection; 4] = [
        Rejection::Origin,
        Rejection::Token,
        Rejection::TooManyConnections,
        Rejection::NotWebsocket,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Origin => "origin",
            Rejection::Token => "token",
            Rejection::TooManyConnections => "too_many_connections",
            Rejection::NotWebsocket => "not_websocket",
        }
    }
}

/// Where an event came from (the `origin` label of `eventide_events_published_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A slot change committed through the REST API on this node.
    Rest,
    /// `POST /api/rooms/{room}/events` or `POST /api/broadcast` on this node.
    Emit,
    /// Received from the cluster's Redis channel (any node's event, this one's included).
    Backplane,
}

const ROLES: [Role; 4] = [Role::Admin, Role::Service, Role::Provider, Role::Client];

/// One hub's metrics. Fields are the children the hot paths increment directly.
pub struct Metrics {
    registry: Registry,
    /// `eventide_ws_connections`: open WebSocket connections.
    pub connections: IntGauge,
    connections_by_role: [IntGauge; 4],
    /// `eventide_rooms`: rooms with at least one member on this node.
    pub rooms: IntGauge,
    /// `eventide_room_joins_total`: memberships created (a rejoin of a room the socket
    /// is already in creates none).
    pub joins: IntCounter,
    /// `eventide_room_leaves_total`: memberships ended (leaveRoom, disconnect, eviction).
    pub leaves: IntCounter,
    /// `eventide_ws_frames_received_total`: client text and binary frames.
    pub frames_received: IntCounter,
    /// `eventide_ws_frames_sent_total`: text frames queued to clients.
    pub frames_sent: IntCounter,
    published: [IntCounter; 3],
    /// `eventide_fanout_duration_seconds`: from a shard starting to hand over an event
    /// (or a run of them) to its being in every recipient's socket or inbox.
    pub fanout_seconds: Histogram,
    /// `eventide_slow_consumer_disconnects_total`: sockets closed because they fell
    /// behind (unsent bytes past `EVENTIDE_MAX_PENDING_BYTES`, or a full inbox).
    pub slow_consumers: IntCounter,
    /// `eventide_rate_limited_frames_total`: client frames refused with `rate_limited`.
    pub rate_limited: IntCounter,
    rejected: [IntCounter; 4],
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    db_idle: IntGauge,
    db_in_use: IntGauge,
    db_max: IntGauge,
    redis_up: Option<IntGauge>,
    /// Sequencer, anti-entropy and relay counters.
    pub hub: crate::rooms::HubMetrics,
    /// Whether loopback peers may scrape without a token (`EVENTIDE_METRICS_LOOPBACK_OPEN`).
    loopback_open: bool,
}

impl Metrics {
    /// A fresh set of metrics in its own registry. `cluster` adds the Redis gauge,
    /// which means nothing on a node without a backplane.
    pub fn new(cluster: bool) -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry
                .register(c)
                .expect("metric names are unique and valid");
        };

        let connections = IntGauge::new("eventide_ws_connections", "Open WebSocket connections")
            .expect("valid metric");
        reg(Box::new(connections.clone()));
        let by_role = IntGaugeVec::new(
            Opts::new(
                "eventide_ws_connections_by_role",
                "Open WebSocket connections by the token's role",
            ),
            &["role"],
        )
        .expect("valid metric");
        reg(Box::new(by_role.clone()));
        let connections_by_role = ROLES.map(|r| by_role.with_label_values(&[r.as_str()]));

        let rooms = IntGauge::new("eventide_rooms", "Rooms with at least one member")
            .expect("valid metric");
        reg(Box::new(rooms.clone()));
        let joins = counter("eventide_room_joins_total", "Room memberships created");
        reg(Box::new(joins.clone()));
        let leaves = counter(
            "eventide_room_leaves_total",
            "Room memberships ended (leaveRoom, disconnect or eviction)",
        );
        reg(Box::new(leaves.clone()));
        let frames_received = counter(
            "eventide_ws_frames_received_total",
            "Text and binary frames received from clients",
        );
        reg(Box::new(frames_received.clone()));
        let frames_sent = counter(
            "eventide_ws_frames_sent_total",
            "Text frames queued to clients",
        );
        reg(Box::new(frames_sent.clone()));

        let published_vec = IntCounterVec::new(
            Opts::new(
                "eventide_events_published_total",
                "Events by origin: rest and emit are produced on this node, backplane \
                 arrived from the cluster channel",
            ),
            &["origin"],
        )
        .expect("valid metric");
        reg(Box::new(published_vec.clone()));
        let published =
            ["rest", "emit", "backplane"].map(|o| published_vec.with_label_values(&[o]));

        let fanout_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "eventide_fanout_duration_seconds",
                "Time for a registry shard to hand an event (or a run of them) to every recipient's socket or inbox",
            )
            .buckets(FANOUT_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        reg(Box::new(fanout_seconds.clone()));
        let slow_consumers = counter(
            "eventide_slow_consumer_disconnects_total",
            "Sockets closed because they could not keep up (1013)",
        );
        reg(Box::new(slow_consumers.clone()));
        let rate_limited = counter(
            "eventide_rate_limited_frames_total",
            "Client frames refused with rate_limited",
        );
        reg(Box::new(rate_limited.clone()));
        let rejected_vec = IntCounterVec::new(
            Opts::new(
                "eventide_ws_handshakes_rejected_total",
                "WebSocket handshakes refused, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        reg(Box::new(rejected_vec.clone()));
        let rejected = Rejection::ALL.map(|r| rejected_vec.with_label_values(&[r.as_str()]));

        let http_requests = IntCounterVec::new(
            Opts::new(
                "eventide_http_requests_total",
                "HTTP requests by method, route pattern and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        reg(Box::new(http_requests.clone()));
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "eventide_http_request_duration_seconds",
                "Time to answer an HTTP request (until the response head), by method and route",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        reg(Box::new(http_seconds.clone()));

        let db = IntGaugeVec::new(
            Opts::new(
                "eventide_db_pool_connections",
                "Database pool connections by state (idle, in_use)",
            ),
            &["state"],
        )
        .expect("valid metric");
        reg(Box::new(db.clone()));
        let db_max = IntGauge::new(
            "eventide_db_pool_max_connections",
            "Largest number of connections the database pool opens",
        )
        .expect("valid metric");
        reg(Box::new(db_max.clone()));

        let redis_up = cluster.then(|| {
            let gauge = IntGauge::new(
                "eventide_redis_backplane_up",
                "1 while this node is subscribed to the cluster's Redis channel, else 0",
            )
            .expect("valid metric");
            reg(Box::new(gauge.clone()));
            gauge
        });

        Metrics {
            connections,
            connections_by_role,
            rooms,
            joins,
            leaves,
            frames_received,
            frames_sent,
            published,
            fanout_seconds,
            slow_consumers,
            rate_limited,
            rejected,
            http_requests,
            http_seconds,
            db_idle: db.with_label_values(&["idle"]),
            db_in_use: db.with_label_values(&["in_use"]),
            db_max,
            redis_up,
            hub: crate::rooms::HubMetrics::new(&registry),
            registry,
            loopback_open: crate::config::DEFAULT_METRICS_LOOPBACK_OPEN,
        }
    }

    /// Sets whether loopback peers may scrape without a token.
    pub fn with_loopback_open(mut self, open: bool) -> Self {
        self.loopback_open = open;
        self
    }

    /// A new counter in this hub's registry, for the parts that own their counters
    /// (readiness probes).
    pub fn new_counter(&self, name: &str, help: &str) -> IntCounter {
        let counter = counter(name, help);
        self.register(Box::new(counter.clone()));
        counter
    }

    /// Adds a metric made elsewhere (the JWKS counters) to this hub's registry.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry
            .register(collector)
            .expect("metric names are unique and valid");
    }

    /// The `eventide_ws_connections_by_role` child of `role`.
    pub fn connections_of(&self, role: Role) -> &IntGauge {
        &self.connections_by_role[match role {
            Role::Admin => 0,
            Role::Service => 1,
            Role::Provider => 2,
            Role::Client => 3,
        }]
    }

    /// The `eventide_events_published_total` child of `origin`.
    pub fn published(&self, origin: Origin) -> &IntCounter {
        &self.published[origin as usize]
    }

    /// The `eventide_ws_handshakes_rejected_total` child of `reason`.
    pub fn rejected(&self, reason: Rejection) -> &IntCounter {
        &self.rejected[reason as usize]
    }

    /// Counts one HTTP request. `route` is the matched pattern (`/api/availability/{id}`,
    /// never the raw path, so ids cannot multiply the series) or `unmatched`.
    pub fn observe_http(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let digits = itoa_status(status);
        let status = std::str::from_utf8(&digits).unwrap_or("000");
        self.http_requests
            .with_label_values(&[method, route, status])
            .inc();
        self.http_seconds
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// Reads the pool and Redis state, then renders every metric in the text format.
    pub fn render(&self, pool: &DbPool, backplane: Option<&Backplane>) -> String {
        let state = pool.state();
        self.db_idle.set(i64::from(state.idle_connections));
        self.db_in_use
            .set(i64::from(state.connections - state.idle_connections));
        self.db_max.set(i64::from(pool.max_size()));
        if let Some(gauge) = &self.redis_up {
            gauge.set(backplane.is_some_and(Backplane::is_subscribed) as i64);
        }
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

/// Known methods by name; anything else is `other`, so a client cannot mint series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A status code as three ASCII digits, without allocating.
fn itoa_status(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_digits() {
        assert_eq!(&itoa_status(200), b"200");
        assert_eq!(&itoa_status(404), b"404");
        assert_eq!(&itoa_status(101), b"101");
    }

    #[test]
    fn two_instances_do_not_share_counts() {
        let a = Metrics::new(false);
        let b = Metrics::new(true);
        a.joins.inc();
        a.rejected(Rejection::Token).inc();
        assert_eq!(a.joins.get(), 1);
        assert_eq!(b.joins.get(), 0);
        assert_eq!(b.rejected(Rejection::Token).get(), 0);
        assert_eq!(a.rejected(Rejection::Token).get(), 1);
    }

    #[test]
    fn only_cluster_nodes_report_redis() {
        assert!(Metrics::new(false).redis_up.is_none());
        assert!(Metrics::new(true).redis_up.is_some());
    }

    #[test]
    fn labels_resolve_to_the_right_children() {
        let m = Metrics::new(false);
        m.published(Origin::Backplane).inc();
        m.connections_of(Role::Client).inc();
        let text = {
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&m.registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(text.contains("eventide_events_published_total{origin=\"backplane\"} 1"));
        assert!(text.contains("eventide_events_published_total{origin=\"rest\"} 0"));
        assert!(text.contains("eventide_ws_connections_by_role{role=\"client\"} 1"));
        assert!(text.contains("eventide_ws_handshakes_rejected_total{reason=\"not_websocket\"} 0"));
    }
}
