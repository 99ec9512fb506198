//! The subscriber: one Redis subscription per node (on a Redis Cluster, one connection
//! per master, through the [`link`](super::link)), to the channel of every room this
//! node has members in and to the channel for broadcasts and user events, delivering
//! what arrives to the node's [`Hub`].
//!
//! It follows the node's [`RoomIndex`](crate::rooms::RoomIndex), batching SUBSCRIBE
//! and UNSUBSCRIBE, so a node's Redis traffic grows with its own rooms. When the
//! subscription is lost (a connection dropped, a master failed over and its slots moved)
//! it starts over with backoff, subscribes to everything again where the channels live
//! now, and has every shard compare its rooms with the change log: what was published
//! while the node was deaf is read from there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::cluster_routing::Slot;

use super::envelope::{decode, Message};
use super::link::{slot, RedisLink, Subscription, REDIS_TIMEOUT};
use crate::auth::Revocations;
use crate::rooms::{Hub, RoomName};

/// Longest wait between two resubscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the subscriber needs of the node.
pub struct Listener {
    pub link: RedisLink,
    /// This node's id: its own messages are dropped.
    pub node_id: u64,
    /// Whether the subscription is up now.
    pub subscribed: Arc<AtomicBool>,
}

/// Subscribes to the broadcast channel and every room of `hub`.
pub async fn subscribe(
    listener: &Listener,
    hub: &Hub,
) -> Option<(Subscription, HashSet<RoomName>)> {
    let link = &listener.link;
    let attempt = async {
        let mut subscription = link.subscribe().await?;
        subscription.subscribe(&[link.all_channel()]).await?;
        let rooms: HashSet<RoomName> = hub.index().rooms().into_iter().collect();
        let channels: Vec<String> = rooms.iter().map(|r| link.room_channel(r)).collect();
        subscription.subscribe(&channels).await?;
        Ok::<_, redis::RedisError>((subscription, rooms))
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
    listener: Listener,
    hub: Hub,
    revocations: Arc<Revocations>,
    mut first: Option<(Subscription, HashSet<RoomName>)>,
) {
    let mut backoff = Duration::from_millis(100);
    // The last message delivered per publishing node and slot: a retried PUBLISH may
    // arrive twice. A node publishes each slot's messages in order, and each slot's
    // messages reach this node through one connection, so order holds per slot.
    let mut last_seen: HashMap<(u64, Slot), u64> = HashMap::new();
    loop {
        let subscribed = match first.take() {
            Some(s) => Some(s),
            None => subscribe(&listener, &hub).await,
        };
        if let Some((mut subscription, mut rooms)) = subscribed {
            listener.subscribed.store(true, Ordering::Relaxed);
            backoff = Duration::from_millis(100);
            log::info!("subscribed to the cluster's Redis ({} rooms)", rooms.len());
            // Whatever was published while this node was not listening is in the log.
            hub.recheck();
            loop {
                tokio::select! {
                    message = subscription.next() => {
                        let Some(message) = message else { break };
                        let channel = message.get_channel_name();
                        let Some(envelope) = decode(message.get_payload_bytes()) else {
                            log::warn!("ignored a malformed message on {channel}");
                            continue;
                        };
                        if envelope.origin == listener.node_id {
                            continue;
                        }
                        let seen = last_seen.entry((envelope.origin, slot(channel))).or_insert(0);
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
                        if let Err(e) = follow(&listener.link, &hub, &mut subscription, &mut rooms).await {
                            log::warn!("cannot update the Redis subscriptions: {e}");
                            break;
                        }
                    }
                }
            }
            listener.subscribed.store(false, Ordering::Relaxed);
            log::warn!("lost the Redis subscription; serving local sockets only, retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Subscribes to the rooms that gained members and unsubscribes from those that lost
/// them, in batches.
async fn follow(
    link: &RedisLink,
    hub: &Hub,
    subscription: &mut Subscription,
    subscribed: &mut HashSet<RoomName>,
) -> Result<(), String> {
    let wanted: HashSet<RoomName> = hub.index().rooms().into_iter().collect();
    let added: Vec<String> = wanted
        .difference(subscribed)
        .map(|r| link.room_channel(r))
        .collect();
    let removed: Vec<String> = subscribed
        .difference(&wanted)
        .map(|r| link.room_channel(r))
        .collect();
    let update = async {
        subscription.subscribe(&added).await?;
        subscription.unsubscribe(&removed).await
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
