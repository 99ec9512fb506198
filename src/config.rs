//! Configuration: one typed [`Settings`] struct read from environment variables and
//! matching command-line flags.
//!
//! Every knob of the hub lives here so that `main`, the tests and the docs agree on
//! names and defaults. The defaults are constants so tests can build a `Settings`
//! without reading the environment of the machine they run on.
//!
//! A bad value is reported with the name the operator typed, e.g.
//! `EVENTIDE_ADDR: invalid socket address "abc"`: the value parsers here say what is
//! wrong with the value, and [`describe_invalid_value`] turns clap's error (which names
//! the flag) into one line that names the variable (or the flag, if one was given).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod delivery;
mod parse;

pub use delivery::*;
#[cfg(test)]
use parse::find_env;
pub use parse::{describe_invalid_value, number, parse_addr};

// Every default, once. The clap attributes, `Limits::default` and
// `Settings::with_database` all read these, so `--help`, the tests and the docs agree.

/// Default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default database: an embedded SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://eventide.db";
/// Default clock leeway for `exp` and `nbf`, in seconds.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 5;
/// Default seconds between two reads of the JWKS (`EVENTIDE_JWT_JWKS_REFRESH_SECS`).
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;
/// Whether loopback callers may scrape `/metrics` without a token by default.
pub const DEFAULT_METRICS_LOOPBACK_OPEN: bool = true;
/// Default allowlist of browser origins, for CORS and WebSocket upgrades.
pub const DEFAULT_ALLOWED_ORIGINS: &str =
    "http://localhost:8080,http://127.0.0.1:8080,http://localhost:4200";
/// Default prefix of the cluster's Redis keys and channel.
pub const DEFAULT_REDIS_PREFIX: &str = "eventide:";

/// Default largest client WebSocket message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The largest `EVENTIDE_MAX_MESSAGE_BYTES` accepted: a client frame is read whole, so
/// this bounds what one socket can make the node buffer.
pub const MAX_MESSAGE_BYTES_CEILING: usize = 16 * 1024 * 1024;
/// Default most frames one client message may come in.
pub const DEFAULT_MAX_FRAGMENTS: usize = 64;
/// Default rooms per connection.
pub const DEFAULT_MAX_ROOMS_PER_CONNECTION: usize = 100;
/// Default sustained client frames per second.
pub const DEFAULT_MAX_FRAMES_PER_SEC: u32 = 50;
/// Default burst of client frames.
pub const DEFAULT_MAX_FRAME_BURST: u32 = 100;
/// Default refused frames within 10 s before a flooding client is closed.
pub const DEFAULT_MAX_RATE_LIMITED_FRAMES: u32 = 100;
/// Default unsent outgoing bytes per connection before it is a slow consumer.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 1024 * 1024;
/// Default open sockets per token subject on a node.
pub const DEFAULT_MAX_CONNECTIONS_PER_SUB: usize = 100;
/// Default largest REST request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default (and least) number of changes kept per provider for recovery.
pub const DEFAULT_MAX_HISTORY_PER_PROVIDER: i64 = 1000;
/// Default seconds between server pings.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 10;
/// Default seconds of client silence before the socket is closed.
pub const DEFAULT_CLIENT_TIMEOUT_SECS: u64 = 30;
/// Default longest database statement (and wait for a pooled connection), in
/// milliseconds: well below the recovery deadline, so a join can retry once.
pub const DEFAULT_DB_STATEMENT_TIMEOUT_MS: u64 = 4_000;
/// Default open connections a node accepts in all.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Everything `eventide-hub serve` needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Listen address; port 0 picks a free port.
    #[arg(long, env = "EVENTIDE_ADDR", default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    pub addr: SocketAddr,

    /// `sqlite://PATH` (embedded default) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Longest database statement, in milliseconds (PostgreSQL `statement_timeout`,
    /// SQLite busy timeout); also bounds the wait for a pooled connection and for
    /// connecting to PostgreSQL.
    #[arg(long, env = "EVENTIDE_DB_STATEMENT_TIMEOUT_MS", default_value_t = DEFAULT_DB_STATEMENT_TIMEOUT_MS, value_parser = number::<u64>)]
    pub db_statement_timeout_ms: u64,

    /// HS256 secret. Unset: a random one is generated and kept beside the SQLite file.
    #[arg(long, env = "EVENTIDE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA or EC P-256); when set, RS256/ES256 tokens are verified with it
    /// and HS256 is refused.
    #[arg(long, env = "EVENTIDE_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JSON Web Key Set (`http://`, `https://` or `file:///`); when set, RS256/ES256/EdDSA
    /// tokens are verified with the key their `kid` names, and HS256 is refused.
    #[arg(long, env = "EVENTIDE_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Seconds between two reads of the JWKS (an unknown `kid` also triggers a read, at
    /// most one per 10 s).
    #[arg(long, env = "EVENTIDE_JWT_JWKS_REFRESH_SECS", default_value_t = DEFAULT_JWKS_REFRESH_SECS, value_parser = number::<u64>)]
    pub jwt_jwks_refresh_secs: u64,

    /// When set, the token's `iss` must equal it.
    #[arg(long, env = "EVENTIDE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, the token's `aud` must contain it.
    #[arg(long, env = "EVENTIDE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp` and `nbf`, in seconds.
    #[arg(long, env = "EVENTIDE_JWT_LEEWAY_SECS", default_value_t = DEFAULT_JWT_LEEWAY_SECS, value_parser = number::<u64>)]
    pub jwt_leeway_secs: u64,

    /// Comma-separated browser origins allowed by CORS and on WebSocket upgrades
    /// (`*` allows any).
    #[arg(
        long,
        env = "EVENTIDE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = DEFAULT_ALLOWED_ORIGINS
    )]
    pub allowed_origins: Vec<String>,

    /// `true`: loopback callers may read `/metrics` without a token. Set `false` behind a
    /// reverse proxy on the same host, where every caller looks like loopback.
    #[arg(
        long,
        env = "EVENTIDE_METRICS_LOOPBACK_OPEN",
        default_value_t = DEFAULT_METRICS_LOOPBACK_OPEN,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub metrics_loopback_open: bool,

    /// When set, the node joins a cluster through this Redis.
    #[arg(long, env = "EVENTIDE_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Comma-separated seed nodes of a Redis Cluster (`redis://host:port,…`): the node
    /// joins a cluster through it, rooms on sharded pub/sub. Instead of
    /// `EVENTIDE_REDIS_URL`.
    #[arg(long, env = "EVENTIDE_REDIS_CLUSTER_URLS", value_delimiter = ',')]
    pub redis_cluster_urls: Vec<String>,

    /// Prefix of the cluster's Redis keys and channel; nodes of one cluster share it.
    #[arg(long, env = "EVENTIDE_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX)]
    pub redis_prefix: String,

    /// Limits that protect the hub from its clients.
    #[command(flatten)]
    pub limits: Limits,

    /// How versioned rooms are delivered and recovered.
    #[command(flatten)]
    pub delivery: Delivery,
}

/// Limits that keep one client from hurting the others. All are configurable through
/// `EVENTIDE_MAX_…` variables and listed in the README.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Largest client WebSocket message, continuation frames included (larger: close 1009).
    #[arg(long, env = "EVENTIDE_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_parser = number::<usize>)]
    pub max_message_bytes: usize,

    /// Most frames one client WebSocket message may come in (more: close 1009).
    #[arg(long, env = "EVENTIDE_MAX_FRAGMENTS", default_value_t = DEFAULT_MAX_FRAGMENTS, value_parser = number::<usize>)]
    pub max_fragments: usize,

    /// Rooms one connection may be in at once (beyond: `too_many_rooms`).
    #[arg(long, env = "EVENTIDE_MAX_ROOMS_PER_CONNECTION", default_value_t = DEFAULT_MAX_ROOMS_PER_CONNECTION, value_parser = number::<usize>)]
    pub max_rooms_per_connection: usize,

    /// Sustained client frames per second per connection (beyond: `rate_limited`).
    #[arg(long, env = "EVENTIDE_MAX_FRAMES_PER_SEC", default_value_t = DEFAULT_MAX_FRAMES_PER_SEC, value_parser = number::<u32>)]
    pub max_frames_per_sec: u32,

    /// Burst of client frames allowed above the sustained rate.
    #[arg(long, env = "EVENTIDE_MAX_FRAME_BURST", default_value_t = DEFAULT_MAX_FRAME_BURST, value_parser = number::<u32>)]
    pub max_frame_burst: u32,

    /// Refused frames within 10 s after which a flooding client is closed with 1008.
    #[arg(long, env = "EVENTIDE_MAX_RATE_LIMITED_FRAMES", default_value_t = DEFAULT_MAX_RATE_LIMITED_FRAMES, value_parser = number::<u32>)]
    pub max_rate_limited_frames: u32,

    /// Unsent outgoing bytes per connection before it is closed as a slow consumer.
    #[arg(long, env = "EVENTIDE_MAX_PENDING_BYTES", default_value_t = DEFAULT_MAX_PENDING_BYTES, value_parser = number::<usize>)]
    pub max_pending_bytes: usize,

    /// Open WebSocket connections one token subject (`sub`) may hold on a node.
    #[arg(long, env = "EVENTIDE_MAX_CONNECTIONS_PER_SUB", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_SUB, value_parser = number::<usize>)]
    pub max_connections_per_sub: usize,

    /// Largest REST request body (larger: 413).
    #[arg(long, env = "EVENTIDE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES, value_parser = number::<usize>)]
    pub max_body_bytes: usize,

    /// Changes kept per provider for `joinRoom` recovery (at least 1,000).
    #[arg(long, env = "EVENTIDE_MAX_HISTORY_PER_PROVIDER", default_value_t = DEFAULT_MAX_HISTORY_PER_PROVIDER, value_parser = number::<i64>)]
    pub max_history_per_provider: i64,

    /// Seconds between server pings.
    #[arg(long, env = "EVENTIDE_HEARTBEAT_SECS", default_value_t = DEFAULT_HEARTBEAT_SECS, value_parser = number::<u64>)]
    pub heartbeat_secs: u64,

    /// Seconds of client silence after which the server closes the socket.
    #[arg(long, env = "EVENTIDE_CLIENT_TIMEOUT_SECS", default_value_t = DEFAULT_CLIENT_TIMEOUT_SECS, value_parser = number::<u64>)]
    pub client_timeout_secs: u64,

    /// Open connections a node accepts in all (sockets and HTTP).
    #[arg(long, env = "EVENTIDE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = number::<usize>)]
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            max_rooms_per_connection: DEFAULT_MAX_ROOMS_PER_CONNECTION,
            max_frames_per_sec: DEFAULT_MAX_FRAMES_PER_SEC,
            max_frame_burst: DEFAULT_MAX_FRAME_BURST,
            max_rate_limited_frames: DEFAULT_MAX_RATE_LIMITED_FRAMES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_connections_per_sub: DEFAULT_MAX_CONNECTIONS_PER_SUB,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_history_per_provider: DEFAULT_MAX_HISTORY_PER_PROVIDER,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            client_timeout_secs: DEFAULT_CLIENT_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// Interval between server pings.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    /// Silence after which a client is considered gone.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_secs.max(1))
    }
}

impl Settings {
    /// Settings with every default and the given database, without reading the
    /// environment: what tests start from.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        Settings {
            addr: DEFAULT_ADDR.parse().expect("default address parses"),
            database_url: database_url.into(),
            db_statement_timeout_ms: DEFAULT_DB_STATEMENT_TIMEOUT_MS,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh_secs: DEFAULT_JWKS_REFRESH_SECS,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: DEFAULT_JWT_LEEWAY_SECS,
            allowed_origins: DEFAULT_ALLOWED_ORIGINS
                .split(',')
                .map(str::to_owned)
                .collect(),
            metrics_loopback_open: DEFAULT_METRICS_LOOPBACK_OPEN,
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            redis_prefix: DEFAULT_REDIS_PREFIX.into(),
            limits: Limits::default(),
            delivery: Delivery::default(),
        }
    }

    /// The longest a database statement (or the wait for a connection) may take.
    pub fn db_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.db_statement_timeout_ms)
    }

    /// Checks what clap cannot: values that parse but make no sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.limits.max_history_per_provider < DEFAULT_MAX_HISTORY_PER_PROVIDER {
            return Err(format!(
                "EVENTIDE_MAX_HISTORY_PER_PROVIDER: must be at least {DEFAULT_MAX_HISTORY_PER_PROVIDER}, got {}",
                self.limits.max_history_per_provider
            ));
        }
        if self.limits.max_frames_per_sec == 0 || self.limits.max_frame_burst == 0 {
            return Err(
                "EVENTIDE_MAX_FRAMES_PER_SEC and EVENTIDE_MAX_FRAME_BURST: must be at least 1"
                    .into(),
            );
        }
        if self.limits.max_message_bytes < 1024 {
            return Err(format!(
                "EVENTIDE_MAX_MESSAGE_BYTES: must be at least 1024, got {}",
                self.limits.max_message_bytes
            ));
        }
        if self.limits.max_message_bytes > MAX_MESSAGE_BYTES_CEILING {
            return Err(format!(
                "EVENTIDE_MAX_MESSAGE_BYTES: must be at most {MAX_MESSAGE_BYTES_CEILING}, got {}",
                self.limits.max_message_bytes
            ));
        }
        if self.limits.max_fragments == 0 {
            return Err("EVENTIDE_MAX_FRAGMENTS: must be at least 1".into());
        }
        if self.limits.max_pending_bytes < self.limits.max_message_bytes {
            return Err(format!(
                "EVENTIDE_MAX_PENDING_BYTES: must be at least EVENTIDE_MAX_MESSAGE_BYTES ({}), got {}",
                self.limits.max_message_bytes, self.limits.max_pending_bytes
            ));
        }
        if self.jwt_jwks_url.is_some() && self.jwt_public_key_file.is_some() {
            return Err(
                "EVENTIDE_JWT_JWKS_URL and EVENTIDE_JWT_PUBLIC_KEY_FILE: set one or the other"
                    .into(),
            );
        }
        if self.db_statement_timeout_ms < 100 {
            return Err(format!(
                "EVENTIDE_DB_STATEMENT_TIMEOUT_MS: must be at least 100, got {}",
                self.db_statement_timeout_ms
            ));
        }
        if self.jwt_jwks_refresh_secs == 0 {
            return Err("EVENTIDE_JWT_JWKS_REFRESH_SECS: must be at least 1".into());
        }
        if self.jwt_secret.as_deref() == Some("") {
            return Err("EVENTIDE_JWT_SECRET: must not be empty".into());
        }
        if self.redis_url.is_some() && !self.redis_seeds().is_empty() {
            return Err(
                "EVENTIDE_REDIS_URL and EVENTIDE_REDIS_CLUSTER_URLS: set one or the other \
                 (one Redis, or the seed nodes of a Redis Cluster)"
                    .into(),
            );
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "EVENTIDE_ALLOWED_ORIGINS: invalid origin {bad:?} (expected scheme://host[:port], \
                 e.g. http://localhost:8080, or *)"
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// The Redis Cluster seed nodes that are set (an empty variable means none).
    pub fn redis_seeds(&self) -> Vec<String> {
        self.redis_cluster_urls
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether this node joins a cluster through Redis (one Redis or a Redis Cluster).
    pub fn clustered(&self) -> bool {
        self.redis_url.is_some() || !self.redis_seeds().is_empty()
    }
}

/// `*`, `null`, or `scheme://host[:port]` (a trailing `/` is tolerated): what a browser
/// sends as `Origin`. Anything else in the allowlist is a typo that would match nothing.
fn is_origin(origin: &str) -> bool {
    let origin = origin.trim();
    if origin == "*" || origin == "null" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && !rest.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests;
