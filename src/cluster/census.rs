//! The census: what each node tells the others about its sockets, through Redis, so
//! that presence and the per-subject socket limit hold across the cluster.
//!
//! Every node keeps, under its own random id:
//! - a heartbeat, its score in the sorted set `{prefix}nodes` (milliseconds);
//! - `{prefix}node:{id}:subs`, a hash of subject → its sockets on that node;
//! - `{prefix}node:{id}:rooms`, a hash of room → `"{sockets} {subjects as JSON}"`.
//!
//! It writes what changed every [`FLUSH_EVERY`], so others see joins and leaves
//! within a second. Readers count only nodes whose heartbeat is younger than
//! [`NODE_TTL`], and a node's keys expire after it, so a node that dies is forgotten
//! within that time. When Redis does not answer, a node counts its own sockets only.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::link::{Connection, RedisLink};
use crate::rooms::{Members, RoomIndex, RoomName};
use crate::ws::ConnectionCounter;

/// How often a node writes its heartbeat and what changed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// A node silent this long is counted out.
pub const NODE_TTL: Duration = Duration::from_secs(15);
/// How long a read for a handshake or a presence query may wait for Redis.
const READ_TIMEOUT: Duration = Duration::from_millis(300);

/// Sockets and subjects in a room, summed over nodes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Sockets joined to the room.
    pub connections: u64,
    /// Distinct subjects among them.
    pub subs: BTreeSet<String>,
}

impl Presence {
    /// This node's part, from its room index.
    pub fn of(members: &Members) -> Presence {
        Presence {
            connections: members.values().map(|c| u64::from(*c)).sum(),
            subs: members.keys().map(|s| s.to_string()).collect(),
        }
    }

    fn add(&mut self, other: Presence) {
        self.connections += other.connections;
        self.subs.extend(other.subs);
    }
}

/// One node's census writer and reader.
pub struct Census {
    link: RedisLink,
    /// On a Redis Cluster a hash tag: every census key is in one slot.
    prefix: String,
    node_id: u64,
    connection: Mutex<Option<Connection>>,
    /// The other nodes alive at the last heartbeat.
    peers: Mutex<Vec<u64>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Census {
    /// A census of node `node_id` on `link`, with keys named `{prefix}…`.
    pub fn new(link: RedisLink, prefix: &str, node_id: u64) -> Self {
        Census {
            link,
            prefix: prefix.to_owned(),
            node_id,
            connection: Mutex::new(None),
            peers: Mutex::new(Vec::new()),
        }
    }

    fn nodes_key(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    fn subs_key(&self, node: u64) -> String {
        format!("{}node:{node}:subs", self.prefix)
    }

    fn rooms_key(&self, node: u64) -> String {
        format!("{}node:{node}:rooms", self.prefix)
    }

    async fn connection(&self) -> redis::RedisResult<Connection> {
        if let Some(conn) = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(conn);
        }
        let conn = self.link.connect().await?;
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    fn forget_connection(&self) {
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn peers(&self) -> Vec<u64> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `pipe` with a deadline; a failure drops the connection for the next try.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        deadline: Duration,
    ) -> Option<T> {
        let attempt = async {
            let mut conn = self.connection().await?;
            pipe.query_async::<T>(&mut conn).await
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                log::warn!("census: Redis: {e}");
                self.forget_connection();
                None
            }
            Err(_) => {
                self.forget_connection();
                None
            }
        }
    }

    /// Sockets of `sub` on the other live nodes (0 when Redis does not answer).
    pub async fn sockets_elsewhere(&self, sub: &str) -> usize {
        let peers = self.peers();
        if peers.is_empty() {
            return 0;
        }
        let mut pipe = redis::pipe();
        for peer in &peers {
            pipe.hget(self.subs_key(*peer), sub);
        }
        let counts: Option<Vec<Option<i64>>> = self.query(&pipe, READ_TIMEOUT).await;
        counts
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.unwrap_or(0).max(0) as usize)
            .sum()
    }

    /// The room's presence on the other live nodes (nothing when Redis does not answer).
    pub async fn presence_elsewhere(&self, room: &RoomName) -> Presence {
        let mut total = Presence::default();
        let peers = self.peers();
        if peers.is_empty() {
            return total;
        }
        let mut pipe = redis::pipe();
        for peer in &peers {
            pipe.hget(self.rooms_key(*peer), room.as_str());
        }
        let parts: Option<Vec<Option<String>>> = self.query(&pipe, READ_TIMEOUT).await;
        for part in parts.unwrap_or_default().into_iter().flatten() {
            if let Some((count, subs)) = part.split_once(' ') {
                total.add(Presence {
                    connections: count.parse().unwrap_or(0),
                    subs: serde_json::from_str(subs).unwrap_or_default(),
                });
            }
        }
        total
    }

    /// Writes the heartbeat and what changed, every [`FLUSH_EVERY`], forever.
    pub async fn run(self: Arc<Self>, index: Arc<RoomIndex>, sockets: ConnectionCounter) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        // What could not be written yet, retried at the next tick.
        let mut rooms: HashMap<RoomName, Members> = HashMap::new();
        let mut subs: HashMap<String, usize> = HashMap::new();
        loop {
            tick.tick().await;
            rooms.extend(index.take_dirty());
            subs.extend(sockets.take_dirty());
            let now = now_ms();
            let ttl = NODE_TTL.as_secs() * 2;
            let mut pipe = redis::pipe();
            pipe.zadd(self.nodes_key(), self.node_id, now).ignore();
            pipe.zrembyscore(
                self.nodes_key(),
                "-inf",
                now - 4 * NODE_TTL.as_millis() as i64,
            )
            .ignore();
            for (room, members) in &rooms {
                let key = self.rooms_key(self.node_id);
                if members.is_empty() {
                    pipe.hdel(key, room.as_str()).ignore();
                } else {
                    let presence = Presence::of(members);
                    let subs = serde_json::to_string(&presence.subs).unwrap_or_default();
                    let value = format!("{} {subs}", presence.connections);
                    pipe.hset(key, room.as_str(), value).ignore();
                }
            }
            for (sub, count) in &subs {
                let key = self.subs_key(self.node_id);
                if *count == 0 {
                    pipe.hdel(key, sub).ignore();
                } else {
                    pipe.hset(key, sub, *count).ignore();
                }
            }
            for key in [self.subs_key(self.node_id), self.rooms_key(self.node_id)] {
                pipe.expire(key, ttl as i64).ignore();
            }
            let since = now - NODE_TTL.as_millis() as i64;
            pipe.zrangebyscore(self.nodes_key(), since, "+inf");
            let live: Option<(Vec<u64>,)> = self.query(&pipe, Duration::from_secs(1)).await;
            if let Some((live,)) = live {
                rooms.clear();
                subs.clear();
                let peers: Vec<u64> = live.into_iter().filter(|n| *n != self.node_id).collect();
                *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
            }
        }
    }

    /// Removes this node from the census (at shutdown).
    pub async fn leave(&self) {
        let mut pipe = redis::pipe();
        pipe.zrem(self.nodes_key(), self.node_id).ignore();
        pipe.del(self.subs_key(self.node_id)).ignore();
        pipe.del(self.rooms_key(self.node_id)).ignore();
        let _: Option<()> = self.query(&pipe, Duration::from_secs(1)).await;
    }
}
