//! Graceful shutdown: what SIGTERM and Ctrl-C do. Stop accepting, send every socket a
//! close frame `1001`, let in-flight requests finish, stop.

use std::time::Duration;

use actix_web::dev::ServerHandle;

use crate::rooms::Hub;

/// How long in-flight requests may take to finish at shutdown (actix-web's
/// `shutdown_timeout`).
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 5;
/// How long sockets get to receive their close frame at shutdown.
const SOCKET_DRAIN: Duration = Duration::from_secs(3);

/// Stops a running hub: stop accepting, close every socket with 1001, let in-flight
/// requests finish, stop.
#[derive(Clone)]
pub struct Shutdown {
    server: ServerHandle,
    hub: Hub,
}

impl Shutdown {
    /// A shutdown of this server and the sessions of this hub.
    pub fn new(server: ServerHandle, hub: Hub) -> Self {
        Shutdown { server, hub }
    }

    /// Runs the shutdown; returns when the server has stopped.
    pub async fn run(self) {
        self.server.pause().await;
        let sockets = self.hub.close_all().await;
        log::info!("closing {sockets} socket(s) with 1001");
        if let Some(backplane) = self.hub.backplane() {
            // What cannot be published now, the other nodes' anti-entropy recovers.
            if !backplane.drain(SOCKET_DRAIN).await {
                log::warn!("shutdown: some events were not published to Redis");
            }
            backplane.census().leave().await;
        }
        let deadline = tokio::time::Instant::now() + SOCKET_DRAIN;
        while tokio::time::Instant::now() < deadline {
            match self.hub.stats().await {
                Ok(stats) if stats.sessions > 0 => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => break,
            }
        }
        // Let the writers flush the close frames they were just handed.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.server.stop(true).await;
    }

    /// Runs the shutdown when the process receives SIGTERM or Ctrl-C.
    pub async fn on_signal(self) {
        wait_for_signal().await;
        log::info!("shutdown signal received");
        self.run().await;
    }
}

async fn wait_for_signal() {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        _ = actix_web::rt::signal::ctrl_c() => {}
    }
}
