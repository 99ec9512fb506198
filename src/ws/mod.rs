//! The WebSocket endpoint: the handshake (origin, token, per-subject limit), the
//! session actor that owns one socket, and the frames they speak.
//!
//! Sessions write through actix-ws today. [`frame`] and [`writer`] are the codec and
//! the vectored socket writer for a session that owns its socket once the connection
//! leaves the HTTP/1 dispatcher; they are tested on their own and not yet wired in.

mod connections;
pub mod frame;
mod joins;
mod origins;
mod outbox;
pub mod protocol;
mod rate_limit;
mod route;
mod session;
pub mod writer;

pub use connections::{ConnectionCounter, ConnectionSlot};
pub use origins::Origins;
pub use rate_limit::{RateLimiter, Verdict};
pub use route::{websocket, SessionIds, WsContext};
// The OpenAPI description of `websocket`, for `crate::openapi`.
#[doc(hidden)]
pub use route::__path_websocket;
pub use session::WsSession;

/// Close code sent when a token expires without `refreshToken`.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Close code: an operator disconnected the token's subject.
pub const CLOSE_REVOKED: u16 = 4003;
