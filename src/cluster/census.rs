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
//!
//! The state heals when Redis loses it (a restart without persistence, a failover):
//! the rooms hash carries a mark, [`MARK`], that only a full rewrite sets, and a node
//! rewrites everything when a flush finds it missing, after a flush that failed, and
//! after a new connection ([`pending`]). So within a second or two of Redis answering
//! again every node's full state is back.

mod pending;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use self::pending::{Outcome, Pending, Plan};
use super::link::{Connection, RedisLink};
use crate::rooms::{Members, RoomIndex, RoomName};
use crate::ws::ConnectionCounter;

/// How often a node writes its heartbeat and what changed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// A node silent this long is counted out.
pub const NODE_TTL: Duration = Duration::from_secs(15);
/// How long a read for a handshake or a presence query may wait for Redis.
const READ_TIMEOUT: Duration = Duration::from_millis(300);
/// The field of a node's rooms hash that says the hash holds the node's whole state:
/// written by a full rewrite only, and never a room name (`#` is not allowed in one).
const MARK: &str = "#complete";
/// Fields per `HSET` in a full rewrite.
const REWRITE_BATCH: usize = 500;
/// How long a flush of what changed may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(1);
/// How long a full rewrite may take: a node with tens of thousands of rooms writes
/// megabytes, and a rewrite cut short is only started again.
const REWRITE_DEADLINE: Duration = Duration::from_secs(5);

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
    /// The connection in use, with its number (see `connections_made`).
    connection: Mutex<Option<(Connection, u64)>>,
    /// Connections made so far: a flush over a new one rewrites the node's state
    /// next, since what Redis holds behind a reconnect is unknown.
    connections_made: AtomicU64,
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
            connections_made: AtomicU64::new(0),
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

    /// The connection in use, or a new one; with its number.
    async fn connection(&self) -> redis::RedisResult<(Connection, u64)> {
        if let Some(conn) = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(conn);
        }
        let conn = self.link.connect().await?;
        let number = self.connections_made.fetch_add(1, Ordering::Relaxed) + 1;
        let made = (conn, number);
        *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(made.clone());
        Ok(made)
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
        self.query_on(pipe, deadline).await.map(|(value, _)| value)
    }

    /// [`Census::query`], also answering the number of the connection it went over.
    async fn query_on<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        deadline: Duration,
    ) -> Option<(T, u64)> {
        let attempt = async {
            let (mut conn, number) = self.connection().await?;
            let value = pipe.query_async::<T>(&mut conn).await?;
            Ok::<_, redis::RedisError>((value, number))
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

    /// Writes the heartbeat and what changed (or everything, when Redis may have lost
    /// it), every [`FLUSH_EVERY`], forever.
    pub async fn run(self: Arc<Self>, index: Arc<RoomIndex>, sockets: ConnectionCounter) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut pending = Pending::new();
        loop {
            tick.tick().await;
            let mut pipe = redis::pipe();
            let now = now_ms();
            pipe.zadd(self.nodes_key(), self.node_id, now).ignore();
            pipe.zrembyscore(
                self.nodes_key(),
                "-inf",
                now - 4 * NODE_TTL.as_millis() as i64,
            )
            .ignore();
            let deadline = match pending.plan(index.take_dirty(), sockets.take_dirty()) {
                Plan::Rewrite => {
                    self.rewrite(&mut pipe, index.snapshot(), sockets.snapshot());
                    REWRITE_DEADLINE
                }
                Plan::Changes => {
                    self.changes(&mut pipe, &pending);
                    FLUSH_DEADLINE
                }
            };
            // 1 when the mark was missing: set now, by a rewrite or by this check.
            pipe.hset_nx(self.rooms_key(self.node_id), MARK, 1);
            let ttl = (NODE_TTL * 2).as_secs() as i64;
            for key in [self.subs_key(self.node_id), self.rooms_key(self.node_id)] {
                pipe.expire(key, ttl).ignore();
            }
            let since = now - NODE_TTL.as_millis() as i64;
            pipe.zrangebyscore(self.nodes_key(), since, "+inf");
            let flushed: Option<((i64, Vec<u64>), u64)> = self.query_on(&pipe, deadline).await;
            match flushed {
                None => pending.flushed(Outcome::Failed),
                Some(((mark_set, live), connection)) => {
                    pending.flushed(Outcome::Written {
                        connection,
                        mark_found: mark_set == 0,
                    });
                    let peers: Vec<u64> = live.into_iter().filter(|n| *n != self.node_id).collect();
                    *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
                }
            }
        }
    }

    /// Commands replacing this node's keys with `rooms` and `subs` (everything it
    /// holds). Not a transaction: a reader may see the keys empty for a moment, which
    /// happens only when Redis may have lost them anyway.
    fn rewrite(
        &self,
        pipe: &mut redis::Pipeline,
        rooms: Vec<(RoomName, Members)>,
        subs: Vec<(String, usize)>,
    ) {
        let (rooms_key, subs_key) = (self.rooms_key(self.node_id), self.subs_key(self.node_id));
        pipe.del(&rooms_key).ignore();
        pipe.del(&subs_key).ignore();
        let rooms: Vec<(String, String)> = rooms
            .iter()
            .map(|(room, members)| (room.as_str().to_owned(), room_value(members)))
            .collect();
        for batch in rooms.chunks(REWRITE_BATCH) {
            pipe.hset_multiple(&rooms_key, batch).ignore();
        }
        for batch in subs.chunks(REWRITE_BATCH) {
            pipe.hset_multiple(&subs_key, batch).ignore();
        }
    }

    /// Commands writing what changed since the last flush.
    fn changes(&self, pipe: &mut redis::Pipeline, pending: &Pending) {
        let (rooms_key, subs_key) = (self.rooms_key(self.node_id), self.subs_key(self.node_id));
        for (room, members) in pending.rooms() {
            if members.is_empty() {
                pipe.hdel(&rooms_key, room.as_str()).ignore();
            } else {
                pipe.hset(&rooms_key, room.as_str(), room_value(members))
                    .ignore();
            }
        }
        for (sub, count) in pending.subs() {
            if *count == 0 {
                pipe.hdel(&subs_key, sub).ignore();
            } else {
                pipe.hset(&subs_key, sub, *count).ignore();
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

/// A room's value in a node's rooms hash: `"{sockets} {subjects as JSON}"`.
fn room_value(members: &Members) -> String {
    let presence = Presence::of(members);
    let subs = serde_json::to_string(&presence.subs).unwrap_or_default();
    format!("{} {subs}", presence.connections)
}
