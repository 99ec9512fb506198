//! The backplane: this node's part in the cluster — the relay that publishes, the
//! subscriber that listens and the census, all on one [`RedisLink`], and what readiness
//! asks of them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::census::Census;
use super::envelope::{encode, Envelope, Message};
use super::link::{LinkError, RedisLink};
use super::relay::Relay;
use super::subscriber::{self, Listener};
use crate::auth::Revocations;
use crate::metrics::Metrics;
use crate::rooms::{Event, Hub, Target};
use crate::ws::ConnectionCounter;

/// The Redis URL is not one.
pub type BackplaneError = LinkError;

/// Where the cluster's Redis is.
pub enum RedisTarget<'a> {
    /// One Redis (`EVENTIDE_REDIS_URL`).
    Single(&'a str),
    /// A Redis Cluster, by its seed nodes (`EVENTIDE_REDIS_CLUSTER_URLS`).
    Cluster(&'a [String]),
}

/// One node's link to the cluster's Redis.
pub struct Backplane {
    link: RedisLink,
    /// This process's random id: receivers drop their own node's messages.
    node_id: u64,
    /// Counts this node's messages, so receivers can drop repeats. Held while a
    /// message is numbered and queued, so the relay's queue is in `seq` order.
    seq: Mutex<u64>,
    relay: OnceLock<Relay>,
    census: Arc<Census>,
    /// Whether the subscriber is connected now.
    subscribed: Arc<AtomicBool>,
}

impl Backplane {
    /// A backplane on `target`, with channels and keys named `{prefix}…`.
    pub fn new(target: RedisTarget<'_>, prefix: &str) -> Result<Arc<Self>, BackplaneError> {
        let link = match target {
            RedisTarget::Single(url) => RedisLink::single(url, prefix)?,
            RedisTarget::Cluster(seeds) => RedisLink::cluster(seeds, prefix)?,
        };
        let node_id = RandomState::new().build_hasher().finish();
        Ok(Arc::new(Backplane {
            census: Arc::new(Census::new(link.clone(), &link.census_prefix(), node_id)),
            link,
            node_id,
            seq: Mutex::new(0),
            relay: OnceLock::new(),
            subscribed: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// What the other nodes say about their sockets.
    pub fn census(&self) -> &Census {
        &self.census
    }

    /// Whether this node currently receives the cluster's events.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Starts the relay and subscribes (waiting for the first attempt, so a node that
    /// starts with Redis up hears its peers from its first request on), then keeps the
    /// subscription alive in the background.
    pub async fn start(
        self: &Arc<Self>,
        hub: Hub,
        revocations: Arc<Revocations>,
        sockets: ConnectionCounter,
        metrics: Arc<Metrics>,
    ) {
        let _ = self.relay.set(Relay::start(self.link.clone(), metrics));
        actix_web::rt::spawn(self.census.clone().run(hub.index().clone(), sockets));
        let listener = Listener {
            link: self.link.clone(),
            node_id: self.node_id,
            subscribed: self.subscribed.clone(),
        };
        let first = subscriber::subscribe(&listener, &hub).await;
        actix_web::rt::spawn(subscriber::run(listener, hub, revocations, first));
    }

    /// Queues an event of this node for the other nodes. Never waits.
    pub fn publish(&self, event: &Event) {
        let channel = match &event.target {
            Target::Room(room) => self.link.room_channel(room),
            Target::All | Target::User(_) => self.link.all_channel(),
        };
        self.send(channel, Message::Event(event.clone()));
    }

    /// Tells the other nodes to close `sub`'s sockets (and that its tokens up to
    /// `revoked_before` are revoked). Never waits.
    pub fn publish_disconnect(&self, sub: &str, revoked_before: Option<i64>) {
        let message = Message::Disconnect {
            sub: Arc::from(sub),
            revoked_before,
        };
        self.send(self.link.all_channel(), message);
    }

    fn send(&self, channel: String, message: Message) {
        let Some(relay) = self.relay.get() else {
            return;
        };
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        let envelope = Envelope {
            origin: self.node_id,
            seq: *seq,
            message,
        };
        relay.send(channel, encode(&envelope));
    }

    /// Waits until the relay has published what it holds, or `timeout`.
    pub async fn drain(&self, timeout: Duration) -> bool {
        match self.relay.get() {
            Some(relay) => relay.drain(timeout).await,
            None => true,
        }
    }

    /// Checks that Redis answers. Blocking: call it from the blocking pool.
    pub fn ping_blocking(&self) -> Result<(), String> {
        self.link.ping_blocking()
    }
}
