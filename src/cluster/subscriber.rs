//! The subscriber: one Redis pub/sub connection per node, subscribed to the channel of
//! every room this node has members in (and to the channel for broadcasts and user
//! events), delivering what arrives to the node's shards.
//!
//! It follows the node's [`RoomIndex`](crate::rooms::RoomIndex), batching SUBSCRIBE
//! and UNSUBSCRIBE, so a node's Redis traffic grows with its own rooms. When the
//! connection drops it reconnects with backoff, subscribes to everything again and
//! has every shard compare its rooms with the change log: what was published while
//! the node was deaf is read from there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};

use super::backplane::Backplane;
use super::envelope::{decode, Message};
use super::relay::REDIS_TIMEOUT;
use crate::auth::Revocations;
use crate::rooms::{Hub, RoomName};

/// Longest wait between two resubscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Channels named in one SUBSCRIBE or UNSUBSCRIBE.
const CHANNELS_PER_COMMAND: usize = 512;

/// Connects and subscribes to the broadcast channel and every room of `hub`.
pub async fn subscribe(
    backplane: &Backplane,
    hub: &Hub,
) -> Option<(PubSubSink, PubSubStream, HashSet<RoomName>)> {
    let attempt = async {
        let (mut sink, stream) = backplane.client().get_async_pubsub().await?.split();
        sink.subscribe(backplane.all_channel()).await?;
        let rooms: HashSet<RoomName> = hub.index().rooms().into_iter().collect();
        let channels: Vec<String> = rooms.iter().map(|r| backplane.room_channel(r)).collect();
        for chunk in channels.chunks(CHANNELS_PER_COMMAND) {
            sink.subscribe(chunk).await?;
        }
        Ok::<_, redis::RedisError>((sink, stream, rooms))
    };
    match tokio::time::timeout(REDIS_TIMEOUT * 3, attempt).await {
        Ok(Ok(subscribed)) => Some(subscribed),
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

/// Keeps the node subscribed for as long as the hub runs.
pub async fn run(
    backplane: Arc<Backplane>,
    hub: Hub,
    revocations: Arc<Revocations>,
    mut first: Option<(PubSubSink, PubSubStream, HashSet<RoomName>)>,
) {
    let mut backoff = Duration::from_millis(100);
    // Messages already delivered, per publishing node: a retried PUBLISH may arrive twice.
    let mut last_seen: HashMap<u64, u64> = HashMap::new();
    loop {
        let subscribed = match first.take() {
            Some(s) => Some(s),
            None => subscribe(&backplane, &hub).await,
        };
        if let Some((mut sink, mut stream, mut rooms)) = subscribed {
            backplane.subscribed.store(true, Ordering::Relaxed);
            backoff = Duration::from_millis(100);
            log::info!("subscribed to the cluster's Redis ({} rooms)", rooms.len());
            // Whatever was published while this node was not listening is in the log.
            hub.recheck();
            loop {
                tokio::select! {
                    message = stream.next() => {
                        let Some(message) = message else { break };
                        let Some(envelope) = decode(message.get_payload_bytes()) else {
                            log::warn!("ignored a malformed message on {}", message.get_channel_name());
                            continue;
                        };
                        if envelope.origin == backplane.node_id() {
                            continue;
                        }
                        let seen = last_seen.entry(envelope.origin).or_insert(0);
                        if envelope.seq <= *seen {
                            continue;
                        }
                        *seen = envelope.seq;
                        match envelope.message {
                            Message::Event(event) => {
                                if hub.deliver_from_cluster(event).await.is_err() {
                                    return;
                                }
                            }
                            Message::Disconnect { sub, revoked_before } => {
                                if let Some(before) = revoked_before {
                                    revocations.note(&sub, before);
                                }
                                hub.disconnect_local(&sub);
                            }
                        }
                    }
                    _ = hub.index().changed() => {
                        if let Err(e) = follow(&backplane, &hub, &mut sink, &mut rooms).await {
                            log::warn!("cannot update the Redis subscriptions: {e}");
                            break;
                        }
                    }
                }
            }
            backplane.subscribed.store(false, Ordering::Relaxed);
            log::warn!("lost the Redis subscription; serving local sockets only, retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Subscribes to the rooms that gained members and unsubscribes from those that lost
/// them, in batches.
async fn follow(
    backplane: &Backplane,
    hub: &Hub,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<RoomName>,
) -> Result<(), String> {
    let wanted: HashSet<RoomName> = hub.index().rooms().into_iter().collect();
    let added: Vec<String> = wanted
        .difference(subscribed)
        .map(|r| backplane.room_channel(r))
        .collect();
    let removed: Vec<String> = subscribed
        .difference(&wanted)
        .map(|r| backplane.room_channel(r))
        .collect();
    let update = async {
        for chunk in added.chunks(CHANNELS_PER_COMMAND) {
            sink.subscribe(chunk).await?;
        }
        for chunk in removed.chunks(CHANNELS_PER_COMMAND) {
            sink.unsubscribe(chunk).await?;
        }
        Ok::<_, redis::RedisError>(())
    };
    match tokio::time::timeout(REDIS_TIMEOUT * 3, update).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no answer".into()),
    }
    *subscribed = wanted;
    if !added.is_empty() {
        // A change published between a room's head read and its SUBSCRIBE reached
        // nobody here: look at the log once the channel is live.
        hub.recheck();
    }
    Ok(())
}
