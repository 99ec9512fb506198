//! One connection type over both backends, and the r2d2 manager that opens it.
//!
//! diesel's own `ConnectionManager<AnyConnection>` tries each backend in turn and
//! swallows their errors (a mistyped PostgreSQL URL would even create a SQLite file
//! named after it), so the manager here picks the backend from the URL scheme.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::ManageConnection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{with_libpq_deadlines, DatabaseTarget};

/// How long connecting may take unless the manager is told otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The PostgreSQL advisory lock that serializes migrations across nodes ("EVENTIDE").
const MIGRATION_LOCK: i64 = 0x4556_454E_5449_4445;

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// PostgreSQL, for clusters of hubs.
    Postgresql(PgConnection),
    /// Embedded SQLite, the default.
    Sqlite(SqliteConnection),
}

impl AnyConnection {
    /// Applies the pending migrations of this connection's backend.
    pub fn run_migrations(&mut self) -> Result<(), String> {
        let applied = match self {
            AnyConnection::Postgresql(conn) => {
                // Nodes of a cluster start together: without this lock two of them
                // would create the same tables at once and one would fail.
                conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                    .map_err(|e| e.to_string())?;
                let applied = conn
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len());
                let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
                applied
            }
            AnyConnection::Sqlite(conn) => conn
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.len()),
        }
        .map_err(|e| e.to_string())?;
        if applied > 0 {
            log::info!("applied {applied} database migration(s)");
        }
        Ok(())
    }
}

/// Opens connections for the pool, to the backend the URL names.
#[derive(Debug, Clone)]
pub struct Manager {
    target: DatabaseTarget,
    create: bool,
    /// Bounds connecting to PostgreSQL and a silent server (libpq parameters).
    connect_timeout: Duration,
}

impl Manager {
    /// A manager for an existing database (a SQLite file must already exist).
    pub fn new(target: DatabaseTarget) -> Self {
        Manager {
            target,
            create: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The same manager, giving up on connecting (and on a silent server) after about
    /// `timeout`.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A manager that creates the SQLite file if it is missing.
    pub fn creating(target: DatabaseTarget) -> Self {
        Manager {
            target,
            create: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// A SQLite URI for `path` that may (`rwc`) or may not (`rw`) create the file.
fn sqlite_uri(path: &std::path::Path, create: bool) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str(if create { "?mode=rwc" } else { "?mode=rw" });
    uri
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        match &self.target {
            DatabaseTarget::Postgres(url) => {
                PgConnection::establish(&with_libpq_deadlines(url, self.connect_timeout))
                    .map(AnyConnection::Postgresql)
                    .map_err(diesel::r2d2::Error::ConnectionError)
            }
            DatabaseTarget::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&sqlite_uri(path, self.create))
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the one writer; busy_timeout makes a second
                // writer wait for the lock instead of failing at once (pooled
                // connections then bound that wait by the statement timeout).
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn uri_escapes_what_sqlite_would_read_as_query() {
        assert_eq!(
            sqlite_uri(Path::new("/tmp/a b/x?.db"), false),
            "file:/tmp/a b/x%3f.db?mode=rw"
        );
        assert_eq!(
            sqlite_uri(Path::new("e%#.db"), true),
            "file:e%25%23.db?mode=rwc"
        );
    }
}
