//! What every session of a node shares ([`WsContext`]): the handshake, the upgrade
//! and the sessions read it, so it lives apart from all of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use super::ConnectionCounter;
use super::Origins;
use crate::auth::{Revocations, TokenVerifier};
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::rooms::Hub;

/// What every session of this node shares.
pub struct WsContext {
    /// The rooms.
    pub hub: Hub,
    /// For the handshake and `refreshToken`.
    pub verifier: web::Data<TokenVerifier>,
    /// The protocol limits.
    pub limits: Limits,
    /// How long a joining session retries reading what its client missed.
    pub recovery_deadline: Duration,
    /// Revoked subjects, refused at the handshake and on `refreshToken`.
    pub revocations: Arc<Revocations>,
    /// Browser origins allowed to connect.
    pub origins: Origins,
    /// Open sockets per token subject.
    pub connections: ConnectionCounter,
    /// This hub's metrics.
    pub metrics: Arc<Metrics>,
    /// Hands out session ids.
    pub ids: SessionIds,
}

/// Session ids, unique for the life of the process's hub.
#[derive(Debug)]
pub struct SessionIds(AtomicU64);

impl Default for SessionIds {
    fn default() -> Self {
        SessionIds(AtomicU64::new(1))
    }
}

impl SessionIds {
    pub(super) fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}
