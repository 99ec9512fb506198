//! The `Hub` handle: how REST handlers and services send events to rooms (the seed's
//! `WebsocketsService` with `emitToRoom` / `emitToAll`).
//!
//! Every event is serialized once, here, and the same bytes reach every recipient.

use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::{event_frame, Deliver, Publish, RegistryStats, RoomName, RoomRegistry, Stats};

/// The registry is gone: the hub is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubError;

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the room registry has stopped")
    }
}

/// A cheap, clonable handle to this node's room registry.
#[derive(Clone)]
pub struct Hub {
    registry: Addr<RoomRegistry>,
}

impl Hub {
    /// A handle to `registry`.
    pub fn new(registry: Addr<RoomRegistry>) -> Self {
        Hub { registry }
    }

    /// Starts a registry and returns its handle.
    pub fn start() -> Self {
        Hub::new(RoomRegistry::default().start())
    }

    /// The registry actor, for sessions.
    pub fn registry(&self) -> &Addr<RoomRegistry> {
        &self.registry
    }

    /// Sends `{"event", "room", "data"}` to every session in `room`; answers how many
    /// sessions it was handed to.
    pub async fn emit_to_room(
        &self,
        room: &RoomName,
        event: &str,
        data: &Value,
    ) -> Result<usize, HubError> {
        let frame = event_frame(event, Some(room.as_str()), data);
        self.publish(Deliver {
            room: Some(room.clone()),
            version: None,
            frame,
        })
        .await
    }

    /// Sends `{"event", "data"}` to every session on this node.
    pub async fn emit_to_all(&self, event: &str, data: &Value) -> Result<usize, HubError> {
        let frame = event_frame(event, None, data);
        self.publish(Deliver {
            room: None,
            version: None,
            frame,
        })
        .await
    }

    /// Hands a serialized event to the registry, waiting while its mailbox is full.
    pub async fn publish(&self, deliver: Deliver) -> Result<usize, HubError> {
        self.registry
            .send(Publish(deliver))
            .await
            .map_err(|_| HubError)
    }

    /// The same as [`Hub::publish`], for blocking-pool threads: it waits (sleeping
    /// briefly) while the registry's mailbox is full, so the queue stays bounded.
    pub fn publish_blocking(&self, deliver: Deliver) -> Result<(), HubError> {
        let mut msg = Publish(deliver);
        loop {
            match self.registry.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(back)) => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(SendError::Closed(_)) => return Err(HubError),
            }
        }
    }

    /// The registry's counters.
    pub async fn stats(&self) -> Result<RegistryStats, HubError> {
        self.registry.send(Stats).await.map_err(|_| HubError)
    }
}
