//! The Redis backplane: one pub/sub channel per cluster, one publisher connection
//! per node (used from blocking-pool threads), one subscriber task per node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use futures_util::StreamExt;

use crate::rooms::{CatchUp, Deliver, Publish, RoomName, RoomRegistry};

/// How long a publish or ping may take before Redis counts as unreachable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait between two resubscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One node's link to the cluster's Redis.
pub struct Backplane {
    client: redis::Client,
    channel: String,
    publisher: Mutex<Option<redis::Connection>>,
    subscribed: AtomicBool,
}

impl Backplane {
    /// A backplane on `url`, publishing on the channel `{prefix}events`.
    pub fn new(url: &str, prefix: &str) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("EVENTIDE_REDIS_URL: invalid Redis URL: {e}"))?;
        Ok(Arc::new(Backplane {
            client,
            channel: format!("{prefix}events"),
            publisher: Mutex::new(None),
            subscribed: AtomicBool::new(false),
        }))
    }

    /// Whether this node currently receives the cluster's events.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Publishes an event to every node. Blocking: call it from the blocking pool.
    pub fn publish_blocking(&self, deliver: &Deliver) -> Result<(), String> {
        let payload = encode(deliver);
        self.with_connection(|conn| {
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(&payload)
                .query::<i64>(conn)
                .map(|_| ())
        })
    }

    /// Checks that Redis answers. Blocking.
    pub fn ping_blocking(&self) -> Result<(), String> {
        self.with_connection(|conn| redis::cmd("PING").query::<String>(conn).map(|_| ()))
    }

    /// Runs `f` on the publisher connection, reconnecting once if it was broken.
    fn with_connection(
        &self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<()>,
    ) -> Result<(), String> {
        let mut slot = self.publisher.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_error = String::new();
        for _ in 0..2 {
            if slot.is_none() {
                match self.client.get_connection_with_timeout(REDIS_TIMEOUT) {
                    Ok(conn) => {
                        let _ = conn.set_read_timeout(Some(REDIS_TIMEOUT));
                        let _ = conn.set_write_timeout(Some(REDIS_TIMEOUT));
                        *slot = Some(conn);
                    }
                    Err(e) => return Err(format!("cannot connect to Redis: {e}")),
                }
            }
            let conn = slot.as_mut().expect("connected above");
            match f(conn) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last_error = e.to_string();
                    *slot = None;
                }
            }
        }
        Err(format!("Redis command failed: {last_error}"))
    }

    /// Subscribes (waiting for the first attempt, so a node that starts with Redis up
    /// never misses its own first events), then keeps the subscription alive in the
    /// background, delivering everything it receives to `registry`.
    pub async fn start(self: Arc<Self>, registry: Addr<RoomRegistry>) {
        let first = self.subscribe().await;
        actix_web::rt::spawn(self.run(first, registry));
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        let attempt = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 3, attempt).await {
            Ok(Ok(pubsub)) => Some(pubsub),
            Ok(Err(e)) => {
                log::warn!("cannot subscribe to Redis: {e}");
                None
            }
            Err(_) => {
                log::warn!("cannot subscribe to Redis: no answer");
                None
            }
        }
    }

    async fn run(
        self: Arc<Self>,
        mut pubsub: Option<redis::aio::PubSub>,
        registry: Addr<RoomRegistry>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut missed_events = false;
        loop {
            if let Some(subscription) = pubsub.take() {
                self.subscribed.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                log::info!("subscribed to the cluster channel {}", self.channel);
                if missed_events {
                    // Events published while this node was deaf: sessions replay them.
                    registry.do_send(CatchUp);
                }
                let mut messages = subscription.into_on_message();
                while let Some(message) = messages.next().await {
                    match decode(message.get_payload_bytes()) {
                        Some(deliver) => {
                            if registry.send(Publish(deliver)).await.is_err() {
                                return;
                            }
                        }
                        None => log::warn!("ignored a malformed message on {}", self.channel),
                    }
                }
                self.subscribed.store(false, Ordering::Relaxed);
                log::warn!("lost the Redis subscription; serving local sockets only, retrying");
            }
            missed_events = true;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pubsub = self.subscribe().await;
        }
    }
}

/// `room \n version \n frame`: room names and versions never hold a newline, so the
/// frame travels as is, with no escaping.
fn encode(deliver: &Deliver) -> Vec<u8> {
    let room = deliver.room.as_ref().map(RoomName::as_str).unwrap_or("");
    let version = deliver.version.map(|v| v.to_string()).unwrap_or_default();
    let mut out = Vec::with_capacity(room.len() + version.len() + 2 + deliver.frame.len());
    out.extend_from_slice(room.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(version.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(deliver.frame.as_bytes());
    out
}

fn decode(payload: &[u8]) -> Option<Deliver> {
    let text = std::str::from_utf8(payload).ok()?;
    let (room, rest) = text.split_once('\n')?;
    let (version, frame) = rest.split_once('\n')?;
    Some(Deliver {
        room: if room.is_empty() {
            None
        } else {
            Some(RoomName::parse(room).ok()?)
        },
        version: if version.is_empty() {
            None
        } else {
            Some(version.parse().ok()?)
        },
        frame: ByteString::from(frame.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        for deliver in [
            Deliver {
                room: Some(RoomName::parse("provider-1").unwrap()),
                version: Some(42),
                frame: ByteString::from_static("{\"event\":\"x\",\n\"data\":1}"),
            },
            Deliver {
                room: None,
                version: None,
                frame: ByteString::from_static("{}"),
            },
        ] {
            let back = decode(&encode(&deliver)).unwrap();
            assert_eq!(back.room, deliver.room);
            assert_eq!(back.version, deliver.version);
            assert_eq!(back.frame, deliver.frame);
        }
        assert!(decode(b"no newline").is_none());
        assert!(decode(b"bad room\n1\n{}").is_none());
    }
}
