//! `/healthz` (the process serves) and `/readyz` (its dependencies answer).
//!
//! Readiness must fail when the hub could not serve a request that needs the database.
//! On SQLite a pooled connection proves little: it keeps working on a file that was
//! deleted, moved or made unreadable (the descriptor stays open), and `SELECT 1` touches
//! no file at all. So the SQLite probe (1) reads the schema through a pooled connection,
//! which takes a read lock and reads a page, and (2) opens the file at `DATABASE_URL`
//! afresh, without creating it, and reads the hub's migration table: what the pool does
//! when it opens its next connection, and proof that the file there is still the hub's
//! database. On PostgreSQL a pooled `SELECT 1` is a round trip to the server.
//!
//! `/readyz` needs no token, so a probe is never run per request: [`ReadinessCheck`]
//! runs at most one at a time and shares its result (see `check.rs`).

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{AnyConnection, DatabaseTarget, DbPool, Manager};

mod check;
pub use check::ReadinessCheck;

/// A query that makes SQLite take a read lock and read the first page.
const SQLITE_PROBE: &str = "SELECT count(*) FROM sqlite_master";
/// A query that only the hub's own (migrated) database answers: a file that was
/// replaced by an empty one fails it.
const SQLITE_REOPEN_PROBE: &str = "SELECT count(*) FROM __diesel_schema_migrations";

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok`.
    pub status: HealthStatus,
}

/// The only status `/healthz` reports: the process answered.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The process serves.
    Ok,
}

/// The body of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "not ready", "database": "ok", "redis": "not subscribed to the cluster channel"}))]
pub struct Readiness {
    /// `ready` (200) or `not ready` (503).
    pub status: ReadyStatus,
    /// `ok`, or why the database did not answer.
    pub database: String,
    /// In a cluster: `ok`, or why Redis did not answer. Absent on a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

/// Whether the node should get traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ReadyStatus {
    /// Every dependency answered.
    #[serde(rename = "ready")]
    Ready,
    /// At least one did not.
    #[serde(rename = "not ready")]
    NotReady,
}

/// Checks that the database answers, the way each backend needs (see the module doc).
pub struct DatabaseProbe {
    pool: DbPool,
    target: DatabaseTarget,
}

impl DatabaseProbe {
    /// A probe of `pool`, which was opened on `target`.
    pub fn new(pool: DbPool, target: &DatabaseTarget) -> Self {
        DatabaseProbe {
            pool,
            target: target.clone(),
        }
    }

    /// Runs the probe. Blocking: call it from the blocking pool.
    pub fn check(&self) -> Result<(), String> {
        use diesel::connection::SimpleConnection;
        let mut conn = self.pool.get().map_err(|e| e.to_string())?;
        match &mut *conn {
            AnyConnection::Sqlite(conn) => conn.batch_execute(SQLITE_PROBE),
            AnyConnection::Postgresql(conn) => conn.batch_execute("SELECT 1"),
        }
        .map_err(|e| e.to_string())?;
        drop(conn);
        if self.target.sqlite_path().is_some() {
            reopen_sqlite(&self.target)?;
        }
        Ok(())
    }
}

/// Opens the SQLite file the way the pool opens its next connection (read-write,
/// never creating it) and reads the hub's migration table from it.
fn reopen_sqlite(target: &DatabaseTarget) -> Result<(), String> {
    use diesel::connection::SimpleConnection;
    use diesel::r2d2::ManageConnection;
    let mut conn = Manager::new(target.clone())
        .connect()
        .map_err(|e| format!("cannot open the database file: {e}"))?;
    // A checkpoint may hold the WAL index for a moment; that is not an outage.
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = 1000; {SQLITE_REOPEN_PROBE}"
    ))
    .map_err(|e| format!("cannot read the database file: {e}"))
}

/// `GET /healthz`: 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: HealthStatus::Ok,
    })
}

/// `GET /readyz`: 200 when the database (and Redis, in a cluster) answer within 2 s,
/// else 503 with the reason. Concurrent callers share one probe and its result is
/// reused for about a second (see [`ReadinessCheck`]).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database (and Redis, in a cluster) answer", body = Readiness),
        (status = 503, description = "A dependency does not answer; the body says which", body = Readiness),
    )
)]
pub async fn readyz(check: web::Data<ReadinessCheck>) -> HttpResponse {
    let report = check.report().await;
    let body = Readiness {
        status: if report.ready() {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        },
        database: report.database.clone().err().unwrap_or_else(|| "ok".into()),
        redis: report
            .redis
            .clone()
            .map(|r| r.err().unwrap_or_else(|| "ok".into())),
    };
    if report.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
