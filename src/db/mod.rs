//! The database: which backend a `DATABASE_URL` names, the r2d2 pool of diesel
//! connections, and the embedded migrations applied at start.
//!
//! Every query in the hub is written once against [`AnyConnection`], diesel's
//! `MultiConnection` over SQLite and PostgreSQL. All of it is blocking: callers run
//! it on the blocking pool (`web::block`), never on an actor or async thread.

mod connection;
mod deadlines;
pub mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::r2d2::ManageConnection;

pub use connection::{AnyConnection, Manager};
pub use deadlines::{with_libpq_deadlines, StatementTimeout};

/// A pool of database connections.
pub type DbPool = diesel::r2d2::Pool<Manager>;

/// A connection checked out of the pool.
pub type PooledConnection = diesel::r2d2::PooledConnection<Manager>;

/// The database a `DATABASE_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL server, by its `postgres://` URL.
    Postgres(String),
}

/// What went wrong opening the database.
#[derive(Debug)]
pub enum DbError {
    /// The URL names no backend the hub speaks.
    UnsupportedUrl(String),
    /// The first connection could not be opened.
    Connect(String),
    /// The pool could not open its first connection.
    Pool(diesel::r2d2::PoolError),
    /// A migration failed.
    Migration(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::UnsupportedUrl(url) => write!(
                f,
                "DATABASE_URL: expected sqlite://PATH or postgres://…, got \"{url}\""
            ),
            DbError::Connect(e) => write!(f, "cannot connect to the database: {e}"),
            DbError::Pool(e) => write!(f, "cannot connect to the database: {e}"),
            DbError::Migration(e) => write!(f, "database migration failed: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl DatabaseTarget {
    /// Reads a `DATABASE_URL`: `sqlite://PATH`, `sqlite:PATH`, or `postgres(ql)://…`.
    pub fn parse(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| DbError::UnsupportedUrl(url.to_owned()))?;
        if path.is_empty() {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        }
        Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
    }

    /// The SQLite file, for an embedded database.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DatabaseTarget::Sqlite(path) => Some(path),
            DatabaseTarget::Postgres(_) => None,
        }
    }
}

/// Opens the pool and applies pending migrations. Every pooled connection bounds its
/// statements by `statement_timeout`, and waiting for a free connection is bounded by
/// it too. Blocking: call it from the blocking pool or before the server starts.
pub fn connect_and_migrate(
    target: &DatabaseTarget,
    statement_timeout: Duration,
) -> Result<DbPool, DbError> {
    let size = match target {
        // SQLite serializes writers anyway; a few connections serve concurrent readers.
        DatabaseTarget::Sqlite(_) => 8,
        DatabaseTarget::Postgres(_) => 16,
    };
    // Only this first connection may create the SQLite file; the pool's connections
    // open it read-write but never create it, so a file deleted under a running hub
    // is reported (readiness fails) instead of silently replaced by an empty one.
    let mut first = Manager::creating(target.clone())
        .connect()
        .map_err(|e| DbError::Connect(e.to_string()))?;
    first.run_migrations().map_err(DbError::Migration)?;
    drop(first);
    diesel::r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(statement_timeout)
        .connection_customizer(Box::new(StatementTimeout(statement_timeout)))
        .build(Manager::new(target.clone()).with_connect_timeout(statement_timeout))
        .map_err(DbError::Pool)
}

/// Runs `f` in a transaction that, on PostgreSQL, sees one snapshot throughout.
pub fn read_transaction<T, E: From<diesel::result::Error>>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E> {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    conn.transaction(|conn| {
        if let AnyConnection::Postgresql(pg) = conn {
            pg.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
        }
        f(conn)
    })
}
