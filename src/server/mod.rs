//! The HTTP server around the handlers: the route table, the application state, CORS,
//! request metrics, the server itself, socket tuning, graceful shutdown and giving
//! the heap back after connection bursts, one file each.
//! [`crate::startup`] puts them together.

pub mod cors;
pub mod heap;
pub mod http;
pub mod network;
pub mod request_metrics;
pub mod routes;
pub mod shutdown;
pub mod state;

pub use routes::{endpoints, Endpoint};
pub use shutdown::Shutdown;
pub use state::AppState;
