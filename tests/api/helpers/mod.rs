//! The shared test harness, one file per concern: a real hub on port 0 with fresh
//! data ([`app`]), which database it runs on ([`backends`]), a WebSocket client
//! ([`ws`]), tokens ([`tokens`]), and the other processes a test drives
//! ([`processes`]: the hub binary, a private Redis; [`redis_cluster`]: a private Redis
//! Cluster).
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
pub mod redis_cluster;
pub mod tokens;
pub mod ws;

pub use app::{slot_at, test_settings, TestApp};
pub use backends::{fresh_data, Backend};
pub use processes::{free_port, free_port_in, HubProcess, PrivateRedis};
pub use tokens::{admin, claims, client_with_rooms, now, provider, service, sign, SECRET};
pub use ws::{client_frame, server_frames, upgrade_by_hand, upgrade_request, Ending, WsClient};
