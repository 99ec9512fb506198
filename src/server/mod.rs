//! The HTTP server around the handlers: the route table, the application state, the
//! middleware every request passes, socket tuning and graceful shutdown.
//! [`crate::startup`] puts them together.

pub mod middleware;
pub mod network;
pub mod routes;
pub mod shutdown;
pub mod state;

pub use routes::{endpoints, Endpoint};
pub use shutdown::Shutdown;
pub use state::AppState;
