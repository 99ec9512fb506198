//! A node's subscription to its channels, on one Redis (SUBSCRIBE on one pub/sub
//! connection) or on a Redis Cluster (SSUBSCRIBE, one SSUBSCRIBE per slot, over the
//! cluster connection's link to each master). Made by [`RedisLink::subscribe`].
//!
//! When it says it is lost — a connection closed, a master gave up a channel's slot,
//! the subscriber fell behind — the subscriber drops it and makes a new one, which
//! finds where the channels live now; what was published meanwhile is in the log.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::try_join_all;
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Msg, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::link::{no_answer, RedisLink, REDIS_TIMEOUT};

/// Channels named in one SUBSCRIBE or UNSUBSCRIBE.
const CHANNELS_PER_COMMAND: usize = 512;
/// Messages a cluster subscription holds for the subscriber; past it the subscription
/// counts as lost (the subscriber starts over and reads what it missed from the log).
const PUSHES_QUEUED: usize = 16_384;

/// A node's subscription to its channels. When [`Subscription::next`] says it is lost,
/// it is dropped and a new one is made: what was published meanwhile is in the log.
pub enum Subscription {
    Single {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Cluster(Box<ClusterSubscription>),
}

/// A subscription to shard channels, one connection per master.
pub struct ClusterSubscription {
    conn: ClusterConnection,
    /// Bounded: past [`PUSHES_QUEUED`] pushes `overflowed` is set and the subscription
    /// counts as lost.
    pushes: mpsc::Receiver<PushInfo>,
    overflowed: Arc<AtomicBool>,
    /// The shard channels subscribed to: the server dropping one of them (its slot
    /// moved to another master) loses the subscription.
    channels: HashSet<Vec<u8>>,
    link: RedisLink,
}

impl Subscription {
    /// A subscription on one Redis.
    pub(super) async fn single(client: &redis::Client) -> redis::RedisResult<Self> {
        let (sink, stream) = client.get_async_pubsub().await?.split();
        Ok(Subscription::Single { sink, stream })
    }

    /// A subscription on the Redis Cluster of `builder`: RESP3, its pushes into a
    /// bounded queue.
    pub(super) async fn cluster(
        link: RedisLink,
        builder: ClusterClientBuilder,
    ) -> redis::RedisResult<Self> {
        let (tx, pushes) = mpsc::channel(PUSHES_QUEUED);
        let overflowed = Arc::new(AtomicBool::new(false));
        let full = overflowed.clone();
        let sender = move |push: PushInfo| {
            if tx.try_send(push).is_err() {
                full.store(true, Ordering::Relaxed);
            }
            Ok::<(), ()>(())
        };
        let client = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(sender)
            .build()?;
        let connect = client.get_async_connection();
        let conn = match tokio::time::timeout(REDIS_TIMEOUT * 3, connect).await {
            Ok(conn) => conn?,
            Err(_) => return Err(no_answer()),
        };
        Ok(Subscription::Cluster(Box::new(ClusterSubscription {
            conn,
            pushes,
            overflowed,
            channels: HashSet::new(),
            link,
        })))
    }

    /// Subscribes to `channels`.
    pub async fn subscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            Subscription::Single { sink, .. } => {
                for chunk in channels.chunks(CHANNELS_PER_COMMAND) {
                    sink.subscribe(chunk).await?;
                }
                Ok(())
            }
            Subscription::Cluster(cluster) => {
                let added = channels.iter().map(|c| c.as_bytes().to_vec());
                cluster.channels.extend(added);
                by_slot(&cluster.link, &cluster.conn, channels, true).await
            }
        }
    }

    /// Unsubscribes from `channels`.
    pub async fn unsubscribe(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            Subscription::Single { sink, .. } => {
                for chunk in channels.chunks(CHANNELS_PER_COMMAND) {
                    sink.unsubscribe(chunk).await?;
                }
                Ok(())
            }
            Subscription::Cluster(cluster) => {
                for channel in channels {
                    cluster.channels.remove(channel.as_bytes());
                }
                by_slot(&cluster.link, &cluster.conn, channels, false).await
            }
        }
    }

    /// The next message; `None` once the subscription is lost.
    pub async fn next(&mut self) -> Option<Msg> {
        match self {
            Subscription::Single { stream, .. } => stream.next().await,
            Subscription::Cluster(cluster) => loop {
                let push = cluster.pushes.recv().await?;
                if cluster.overflowed.load(Ordering::Relaxed) {
                    log::warn!("the Redis Cluster subscription fell behind");
                    return None;
                }
                if let Some(why) = lost_by(&push, &cluster.channels) {
                    log::warn!("lost the Redis Cluster subscription: {why}");
                    return None;
                }
                // Messages; confirmations and anything else are not for the subscriber.
                if let Some(message) = Msg::from_push_info(push) {
                    return Some(message);
                }
            },
        }
    }
}

/// Why `push` loses a subscription to `channels`, if it does: a connection to a node
/// closed, or a master gave up the slot of a channel still subscribed to (it moved to
/// another master). The confirmation of an UNSUBSCRIBE of ours names a channel that is
/// no longer in `channels`.
fn lost_by(push: &PushInfo, channels: &HashSet<Vec<u8>>) -> Option<&'static str> {
    match push.kind {
        PushKind::Disconnection => Some("a node closed its connection"),
        PushKind::SUnsubscribe => match push.data.first() {
            Some(Value::BulkString(channel)) if channels.contains(channel) => {
                Some("a master gave up a channel's slot")
            }
            _ => None,
        },
        _ => None,
    }
}

/// (Un)subscribes a cluster connection to `channels`, one SSUBSCRIBE per slot, all
/// slots at once.
async fn by_slot(
    link: &RedisLink,
    conn: &ClusterConnection,
    channels: &[String],
    subscribe: bool,
) -> redis::RedisResult<()> {
    let groups = link.groups(channels.iter().map(String::as_str));
    try_join_all(groups.into_iter().map(|group| {
        let mut conn = conn.clone();
        let names: Vec<&str> = group.iter().map(|i| channels[*i].as_str()).collect();
        async move {
            for chunk in names.chunks(CHANNELS_PER_COMMAND) {
                if subscribe {
                    conn.ssubscribe(chunk).await?;
                } else {
                    conn.sunsubscribe(chunk).await?;
                }
            }
            Ok::<_, redis::RedisError>(())
        }
    }))
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, channel: &str) -> PushInfo {
        PushInfo {
            kind,
            data: vec![
                Value::BulkString(channel.as_bytes().to_vec()),
                Value::Int(1),
            ],
        }
    }

    #[test]
    fn a_closed_connection_or_a_slot_given_up_loses_the_subscription() {
        let channels: HashSet<Vec<u8>> = [b"eventide:room:a".to_vec()].into();
        let closed = PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        };
        assert!(lost_by(&closed, &channels).is_some());
        let given_up = push(PushKind::SUnsubscribe, "eventide:room:a");
        assert!(lost_by(&given_up, &channels).is_some());
    }

    #[test]
    fn messages_confirmations_and_our_own_unsubscribes_do_not() {
        let channels: HashSet<Vec<u8>> = [b"eventide:room:a".to_vec()].into();
        for kind in [PushKind::SMessage, PushKind::SSubscribe, PushKind::Message] {
            assert_eq!(lost_by(&push(kind, "eventide:room:a"), &channels), None);
        }
        // Left already: the confirmation of our own SUNSUBSCRIBE.
        let ours = push(PushKind::SUnsubscribe, "eventide:room:b");
        assert_eq!(lost_by(&ours, &channels), None);
    }
}
