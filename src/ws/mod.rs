//! The WebSocket endpoint: the handshake (origin, token, per-subject limit), the
//! session actor that owns one socket, and the frames they speak.
//!
//! An upgrade request never reaches the HTTP routes: [`upgrade`] answers it, and once
//! the checks in [`handshake`] pass, the connection leaves the HTTP/1 dispatcher (and
//! its buffers) for a [`WsSession`] that reads and writes the socket itself
//! ([`socket`], [`outbox`], the [`frame`] codec and the vectored [`writer`]).

mod connections;
mod context;
pub mod frame;
mod handshake;
mod joins;
mod origins;
mod outbox;
pub mod protocol;
mod rate_limit;
mod route;
mod session;
mod socket;
pub mod upgrade;
pub mod writer;

pub use connections::{ConnectionCounter, ConnectionSlot, Full};
pub use context::{SessionIds, WsContext};
pub use origins::Origins;
pub use rate_limit::{RateLimiter, Verdict};
pub use route::websocket;
// The OpenAPI description of `websocket`, for `crate::openapi`.
#[doc(hidden)]
pub use route::__path_websocket;
pub use session::WsSession;

/// The close codes the hub sends.
pub mod close_code {
    /// The session ended normally (or the client sent no code).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const AWAY: u16 = 1001;
    /// The client broke a policy (the rate limit).
    pub const POLICY: u16 = 1008;
    /// Try again later: a slow consumer, or a room's history out of reach.
    pub const AGAIN: u16 = 1013;
    /// The token expired without `refreshToken`.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// An operator disconnected the token's subject.
    pub const REVOKED: u16 = 4003;
}
