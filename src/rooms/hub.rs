//! The `Hub` handle: how REST handlers and services send events to rooms (the seed's
//! `WebsocketsService` with `emitToRoom` / `emitToAll`).
//!
//! Every event is serialized once, here or in the availability store, and the same
//! bytes reach every recipient. In a cluster the event goes to Redis and every node
//! (this one included) delivers it on receipt; if Redis cannot be reached it is
//! delivered to this node's sockets only.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::{event_frame, Deliver, Fanout, RegistryStats, RoomName, RoomRegistry, Stats};
use crate::cluster::Backplane;
use crate::metrics::{Metrics, Origin};

/// How long a publisher waits before trying a full registry mailbox again.
const FULL_MAILBOX_BACKOFF: Duration = Duration::from_millis(1);

/// The registry is gone: the hub is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubError;

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the room registry has stopped")
    }
}

/// A cheap, clonable handle to this node's room registry (and the cluster, if any).
#[derive(Clone)]
pub struct Hub {
    registry: Addr<RoomRegistry>,
    backplane: Option<Arc<Backplane>>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// Starts a registry on the current arbiter and returns its handle.
    pub fn start(backplane: Option<Arc<Backplane>>, metrics: Arc<Metrics>) -> Self {
        Hub {
            registry: RoomRegistry::new(metrics.clone()).start(),
            backplane,
            metrics,
        }
    }

    /// This hub's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The registry actor, for sessions.
    pub fn registry(&self) -> &Addr<RoomRegistry> {
        &self.registry
    }

    /// The cluster backplane, when this node is part of one.
    pub fn backplane(&self) -> Option<&Arc<Backplane>> {
        self.backplane.as_ref()
    }

    /// Sends `{"event", "room", "data"}` to every session in `room`.
    pub async fn emit_to_room(
        &self,
        room: &RoomName,
        event: &str,
        data: &Value,
    ) -> Result<(), HubError> {
        self.metrics.published(Origin::Emit).inc();
        let frame = event_frame(event, Some(room.as_str()), data);
        self.publish(Deliver {
            room: Some(room.clone()),
            version: None,
            frame,
        })
        .await
    }

    /// Sends `{"event", "data"}` to every session.
    pub async fn emit_to_all(&self, event: &str, data: &Value) -> Result<(), HubError> {
        self.metrics.published(Origin::Emit).inc();
        let frame = event_frame(event, None, data);
        self.publish(Deliver {
            room: None,
            version: None,
            frame,
        })
        .await
    }

    /// Hands a serialized event to the cluster or, alone, to the registry (waiting
    /// while its mailbox is full).
    pub async fn publish(&self, deliver: Deliver) -> Result<(), HubError> {
        if let Some(backplane) = self.backplane.clone() {
            let copy = deliver.clone();
            match actix_web::web::block(move || backplane.publish_blocking(&copy)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => log::warn!("{e}; delivering to this node only"),
                Err(e) => log::warn!("cannot publish to Redis: {e}; delivering to this node only"),
            }
        }
        // Enqueue, not `send().await`: the caller (an emit request) must not wait for
        // the fan-out to every member, only for room in the bounded mailbox.
        let mut msg = Fanout(deliver);
        while let Some(back) = self.enqueue(msg)? {
            msg = back;
            tokio::time::sleep(FULL_MAILBOX_BACKOFF).await;
        }
        Ok(())
    }

    /// The same as [`Hub::publish`], for blocking-pool threads: it waits (sleeping
    /// briefly) while the registry's mailbox is full, so the queue stays bounded.
    /// This is the availability store's path, so it counts the event as
    /// `origin="rest"`.
    pub fn publish_blocking(&self, deliver: Deliver) -> Result<(), HubError> {
        self.metrics.published(Origin::Rest).inc();
        if let Some(backplane) = &self.backplane {
            match backplane.publish_blocking(&deliver) {
                Ok(()) => return Ok(()),
                Err(e) => log::warn!("{e}; delivering to this node only"),
            }
        }
        let mut msg = Fanout(deliver);
        while let Some(back) = self.enqueue(msg)? {
            msg = back;
            std::thread::sleep(FULL_MAILBOX_BACKOFF);
        }
        Ok(())
    }

    /// One attempt to put `msg` in the registry's bounded mailbox; gives it back when
    /// the mailbox is full.
    fn enqueue(&self, msg: Fanout) -> Result<Option<Fanout>, HubError> {
        match self.registry.try_send(msg) {
            Ok(()) => Ok(None),
            Err(SendError::Full(back)) => Ok(Some(back)),
            Err(SendError::Closed(_)) => Err(HubError),
        }
    }

    /// The registry's counters.
    pub async fn stats(&self) -> Result<RegistryStats, HubError> {
        self.registry.send(Stats).await.map_err(|_| HubError)
    }
}
