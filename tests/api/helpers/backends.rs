//! Which database a test hub runs on, and the fresh data each test gets: a temp dir
//! (the SQLite file lives there) and, for PostgreSQL, a database of its own that is
//! dropped after the last hub using it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use tempfile::TempDir;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temp SQLite file (always available).
    Sqlite,
    /// A fresh database on the server named by `EVENTIDE_TEST_PG_URL`.
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests: on SQLite, and on PostgreSQL.
/// The PostgreSQL variant is ignored by a plain `cargo test` (so it shows as ignored,
/// not as passed) and fails without `EVENTIDE_TEST_PG_URL` when run.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[actix_web::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Sqlite).await
            })*
        }
        mod on_postgres {
            $(#[actix_web::test]
            #[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
            async fn $name() {
                super::$name($crate::helpers::Backend::Postgres).await
            })*
        }
    };
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database on the `EVENTIDE_TEST_PG_URL` server; panics, saying
    /// what to set, when there is none.
    pub fn create() -> TestDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = std::env::var("EVENTIDE_TEST_PG_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .expect(
                "this test needs PostgreSQL: set EVENTIDE_TEST_PG_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
            );
        let name = format!(
            "eventide_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut conn = diesel::PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at EVENTIDE_TEST_PG_URL: {e}"));
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        TestDatabase {
            url,
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = conn.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// What a test hub's data lives in: kept alive as long as any hub uses it.
pub struct TestResources {
    tempdir: TempDir,
    /// Held so the database is dropped after the last hub using it.
    _database: Option<TestDatabase>,
}

impl TestResources {
    /// The temp directory (the SQLite file lives here).
    pub fn path(&self) -> &std::path::Path {
        self.tempdir.path()
    }
}

/// Shared ownership of a test's data, so a restarted hub or a second node finds the
/// same data.
pub type Resources = Arc<TestResources>;

/// Fresh data on `backend`: a temp dir, and a new database for PostgreSQL; returns
/// it with the `DATABASE_URL` to use. Blocking (PostgreSQL): call it off the async
/// thread.
pub fn fresh_data(backend: Backend) -> (Resources, String) {
    let tempdir = tempfile::tempdir().expect("temp dir");
    let (database, url) = match backend {
        Backend::Sqlite => (
            None,
            format!("sqlite://{}/hub.db", tempdir.path().display()),
        ),
        Backend::Postgres => {
            let database = TestDatabase::create();
            let url = database.url.clone();
            (Some(database), url)
        }
    };
    (
        Arc::new(TestResources {
            tempdir,
            _database: database,
        }),
        url,
    )
}
