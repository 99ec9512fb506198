//! The link: the one owner of this node's connections to Redis, one Redis or a Redis
//! Cluster, and of the names the cluster uses there. The relay, the census and the
//! subscriber ask it for a connection or a subscription and never ask which it is.
//!
//! On one Redis, rooms travel over `PUBLISH`/`SUBSCRIBE`. On a Redis Cluster every
//! channel is a shard channel (`SPUBLISH`/`SSUBSCRIBE`): a room's traffic goes only to
//! the master that owns its channel's slot, and the channel of broadcasts and user
//! events is one more shard channel, so it lives on one slot and never crosses the
//! cluster bus. The census keys share one hash tag on a cluster, so a pipeline of them
//! stays on one slot.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

pub use super::subscription::Subscription;
use crate::rooms::RoomName;

/// How long one Redis round trip may take before it counts as failed.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis URL that is not one.
#[derive(Debug)]
pub struct LinkError(String);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinkError {}

/// Where this node's Redis is.
#[derive(Clone)]
enum Target {
    Single(redis::Client),
    Cluster {
        /// For commands (RESP2, no pushes).
        commands: Box<ClusterClient>,
        seeds: Vec<String>,
    },
}

/// The owner of this node's Redis connections and names. Cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    target: Target,
    prefix: String,
}

impl RedisLink {
    /// A link to one Redis at `url`, with names starting with `prefix`.
    pub fn single(url: &str, prefix: &str) -> Result<Self, LinkError> {
        let client = redis::Client::open(url)
            .map_err(|e| LinkError(format!("EVENTIDE_REDIS_URL: invalid Redis URL: {e}")))?;
        Ok(RedisLink {
            target: Target::Single(client),
            prefix: prefix.to_owned(),
        })
    }

    /// A link to the Redis Cluster that `seeds` belong to.
    pub fn cluster(seeds: &[String], prefix: &str) -> Result<Self, LinkError> {
        let commands = cluster_builder(seeds).build().map_err(|e| {
            LinkError(format!(
                "EVENTIDE_REDIS_CLUSTER_URLS: invalid Redis URL: {e}"
            ))
        })?;
        Ok(RedisLink {
            target: Target::Cluster {
                commands: Box::new(commands),
                seeds: seeds.to_vec(),
            },
            prefix: prefix.to_owned(),
        })
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// The channel of one room's events.
    pub fn room_channel(&self, room: &RoomName) -> String {
        format!("{}room:{}", self.prefix, room.as_str())
    }

    /// The channel of broadcasts and user events, which every node listens to.
    pub fn all_channel(&self) -> String {
        format!("{}all", self.prefix)
    }

    /// What the census's keys start with: on a cluster a hash tag, so every census key
    /// (every node's state and the node list) is in one slot and one pipeline.
    pub fn census_prefix(&self) -> String {
        match self.target {
            Target::Single(_) => self.prefix.clone(),
            Target::Cluster { .. } => format!("{{{}census}}", self.prefix),
        }
    }

    /// A connection for commands; on a cluster it routes each command to its slot's
    /// master and follows MOVED and failovers itself.
    pub async fn connect(&self) -> redis::RedisResult<Connection> {
        match &self.target {
            Target::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT));
                let conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Connection::Single(conn))
            }
            Target::Cluster { commands, .. } => {
                let connect = commands.get_async_connection();
                match tokio::time::timeout(REDIS_TIMEOUT * 3, connect).await {
                    Ok(conn) => Ok(Connection::Cluster(conn?)),
                    Err(_) => Err(no_answer()),
                }
            }
        }
    }

    /// Adds the publication of `payload` on `channel` to `pipe`.
    pub fn publish(&self, pipe: &mut Pipeline, channel: &str, payload: &[u8]) {
        let command = if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        pipe.cmd(command).arg(channel).arg(payload).ignore();
    }

    /// Splits `channels` (in order) into groups that may share one pipeline or one
    /// SUBSCRIBE: everything at once on one Redis, one group per slot on a cluster
    /// (each group keeps the order it had in `channels`).
    pub fn groups<'a>(&self, channels: impl Iterator<Item = &'a str>) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_slot: HashMap<Slot, usize> = HashMap::new();
        for (i, channel) in channels.enumerate() {
            let group = if self.is_cluster() {
                *by_slot.entry(slot(channel)).or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                })
            } else {
                if groups.is_empty() {
                    groups.push(Vec::new());
                }
                0
            };
            groups[group].push(i);
        }
        groups
    }

    /// A new subscription with no channel yet.
    pub async fn subscribe(&self) -> redis::RedisResult<Subscription> {
        match &self.target {
            Target::Single(client) => Subscription::single(client).await,
            Target::Cluster { seeds, .. } => {
                Subscription::cluster(self.clone(), cluster_builder(seeds)).await
            }
        }
    }

    /// Checks that Redis answers. Blocking: call it from the blocking pool.
    pub fn ping_blocking(&self) -> Result<(), String> {
        let ping = redis::cmd("PING");
        match &self.target {
            Target::Single(client) => {
                let mut conn = client
                    .get_connection_with_timeout(REDIS_TIMEOUT)
                    .map_err(|e| format!("cannot connect to Redis: {e}"))?;
                let _ = conn.set_read_timeout(Some(REDIS_TIMEOUT));
                let _ = conn.set_write_timeout(Some(REDIS_TIMEOUT));
                ping.query::<String>(&mut conn).map(|_| ())
            }
            Target::Cluster { commands, .. } => {
                let mut conn = commands
                    .get_connection()
                    .map_err(|e| format!("cannot connect to the Redis Cluster: {e}"))?;
                ping.query::<Value>(&mut conn).map(|_| ())
            }
        }
        .map_err(|e| format!("Redis did not answer PING: {e}"))
    }
}

/// A channel's cluster slot: what decides which master carries it.
pub fn slot(channel: &str) -> Slot {
    Slot::for_key(channel)
}

pub(super) fn no_answer() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the Redis Cluster did not answer",
    ))
}

fn cluster_builder(seeds: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .connection_timeout(REDIS_TIMEOUT)
        .response_timeout(REDIS_TIMEOUT)
        // The callers retry themselves; a failed command should say so soon.
        .retries(2)
}

/// A connection for commands, to one Redis or a Redis Cluster. Cheap to clone.
#[derive(Clone)]
pub enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> RedisLink {
        RedisLink::cluster(&["redis://127.0.0.1:7000".into()], "eventide:").unwrap()
    }

    #[test]
    fn one_redis_publishes_everything_in_one_pipeline() {
        let link = RedisLink::single("redis://127.0.0.1:6379", "eventide:").unwrap();
        assert_eq!(
            link.groups(["a", "b", "a"].into_iter()),
            vec![vec![0, 1, 2]]
        );
        assert!(link.groups([].into_iter()).is_empty());
        assert_eq!(link.census_prefix(), "eventide:");
    }

    #[test]
    fn a_cluster_groups_by_slot_and_keeps_the_order_within_each() {
        let link = cluster();
        // "{x}…" names share the slot of "x"; "foo" and "bar" have slots of their own.
        let groups = link.groups(["{x}1", "foo", "{x}2", "bar", "{x}3"].into_iter());
        assert_eq!(groups.len(), 3);
        assert!(groups.contains(&vec![0, 2, 4]));
        assert!(groups.contains(&vec![1]));
        assert!(groups.contains(&vec![3]));
    }

    #[test]
    fn census_keys_share_one_slot_on_a_cluster() {
        let link = cluster();
        let prefix = link.census_prefix();
        assert_eq!(prefix, "{eventide:census}");
        assert_eq!(
            slot(&format!("{prefix}nodes")),
            slot(&format!("{prefix}node:42:subs"))
        );
        // Room channels are spread: their slots follow their names.
        assert_ne!(slot("eventide:room:a"), slot("eventide:room:b"));
    }

    #[test]
    fn bad_seed_urls_are_named() {
        let error = RedisLink::cluster(&["nope".into()], "p:").err().unwrap();
        assert!(
            error
                .to_string()
                .starts_with("EVENTIDE_REDIS_CLUSTER_URLS: invalid Redis URL"),
            "{error}"
        );
    }
}
