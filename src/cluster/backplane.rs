//! The backplane: this node's link to the cluster's Redis — the relay that publishes,
//! the subscriber that listens, and what readiness asks of them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::census::Census;
use super::envelope::{encode, Envelope, Message};
use super::relay::{Relay, REDIS_TIMEOUT};
use super::subscriber;
use crate::auth::Revocations;
use crate::metrics::Metrics;
use crate::rooms::{Event, Hub, RoomName, Target};
use crate::ws::ConnectionCounter;

/// The Redis URL is not one.
#[derive(Debug)]
pub struct BackplaneError(String);

impl std::fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackplaneError {}

/// One node's link to the cluster's Redis.
pub struct Backplane {
    client: redis::Client,
    prefix: String,
    /// This process's random id: receivers drop their own node's messages.
    node_id: u64,
    /// Counts this node's messages, so receivers can drop repeats. Held while a
    /// message is numbered and queued, so the relay's queue is in `seq` order.
    seq: Mutex<u64>,
    relay: OnceLock<Relay>,
    census: Arc<Census>,
    /// Whether the subscriber is connected now.
    pub(super) subscribed: AtomicBool,
}

impl Backplane {
    /// A backplane on `url`, with channels named `{prefix}…`.
    pub fn new(url: &str, prefix: &str) -> Result<Arc<Self>, BackplaneError> {
        let client = redis::Client::open(url)
            .map_err(|e| BackplaneError(format!("EVENTIDE_REDIS_URL: invalid Redis URL: {e}")))?;
        let node_id = RandomState::new().build_hasher().finish();
        Ok(Arc::new(Backplane {
            census: Arc::new(Census::new(client.clone(), prefix, node_id)),
            client,
            prefix: prefix.to_owned(),
            node_id,
            seq: Mutex::new(0),
            relay: OnceLock::new(),
            subscribed: AtomicBool::new(false),
        }))
    }

    pub(super) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(super) fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The channel of one room's events.
    pub(super) fn room_channel(&self, room: &RoomName) -> String {
        format!("{}room:{}", self.prefix, room.as_str())
    }

    /// The channel of broadcasts and user events, which every node listens to.
    pub(super) fn all_channel(&self) -> String {
        format!("{}all", self.prefix)
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
        let _ = self.relay.set(Relay::start(self.client.clone(), metrics));
        actix_web::rt::spawn(self.census.clone().run(hub.index().clone(), sockets));
        let first = subscriber::subscribe(self, &hub).await;
        actix_web::rt::spawn(subscriber::run(self.clone(), hub, revocations, first));
    }

    /// Queues an event of this node for the other nodes. Never waits.
    pub fn publish(&self, event: &Event) {
        let channel = match &event.target {
            Target::Room(room) => self.room_channel(room),
            Target::All | Target::User(_) => self.all_channel(),
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
        self.send(self.all_channel(), message);
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
        let mut conn = self
            .client
            .get_connection_with_timeout(REDIS_TIMEOUT)
            .map_err(|e| format!("cannot connect to Redis: {e}"))?;
        let _ = conn.set_read_timeout(Some(REDIS_TIMEOUT));
        let _ = conn.set_write_timeout(Some(REDIS_TIMEOUT));
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map(|_| ())
            .map_err(|e| format!("Redis did not answer PING: {e}"))
    }
}
