//! The shared test harness, one file per concern: a real hub on port 0 with fresh
//! data ([`app`]), which database it runs on ([`backends`]), a WebSocket client
//! ([`ws`]), tokens ([`tokens`]), and the other processes a test drives
//! ([`processes`]: the hub binary, a private Redis).
//!
//! Start a hub with `TestApp::builder()`:
//!
//! ```ignore
//! let app = TestApp::builder()
//!     .backend(Backend::Postgres)
//!     .configure(|s| s.limits.max_rooms_per_connection = 3)
//!     .spawn()
//!     .await;
//! ```

pub mod app;
pub mod backends;
pub mod processes;
pub mod tokens;
pub mod ws;

pub use app::{slot_at, test_settings, TestApp};
pub use backends::{fresh_data, Backend};
pub use processes::{free_port, HubProcess, PrivateRedis};
pub use tokens::{admin, claims, client_with_rooms, now, provider, service, sign, SECRET};
pub use ws::{Ending, WsClient};

// The old entry points, kept only for `cluster.rs` until it moves to the builder and
// to `#[ignore]`: they forward to the builder and to the skip-on-missing behaviour
// that file still relies on.

use eventide_hub::config::Settings;

/// Old entry point for `cluster.rs`: `TestApp::builder().backend(..).configure(..)`.
pub async fn spawn_app_on_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::builder()
        .backend(backend)
        .configure(configure)
        .spawn()
        .await
}

/// Old entry point for `cluster.rs`: a hub with exactly these settings on `dir`.
pub async fn spawn_with_settings(settings: Settings, dir: backends::Resources) -> TestApp {
    TestApp::builder().same_data(settings, dir).spawn().await
}

impl Backend {
    /// Old entry point for `cluster.rs`: PostgreSQL if `EVENTIDE_TEST_PG_URL` names a
    /// server, else `None` after saying why the test is skipped.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("EVENTIDE_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres),
            _ => {
                eprintln!("skipping PostgreSQL variant: set EVENTIDE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)");
                None
            }
        }
    }
}
