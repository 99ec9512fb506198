//! More than one node: Redis carries the news of every event to the nodes that serve
//! its room; the change log in the database stays the truth.
//!
//! A node publishes after commit, outside every lock, through a bounded relay that
//! retries ([`relay`]); it delivers its own events itself, at once. It subscribes only
//! to the rooms it has members in (plus one channel for broadcasts and user events)
//! ([`subscriber`]). Order and exactly-once come from versions, not from Redis: every
//! versioned event goes through its room's sequencer on every node, and the
//! anti-entropy tick finds whatever Redis lost. So a Redis that is slow, paused or down
//! delays delivery across nodes by at most a few seconds and loses nothing that was
//! committed; events of rooms without history published while Redis is unreachable
//! are lost for the other nodes.
//!
//! Channels are `{prefix}room:{room}` and `{prefix}all`. One owner holds the Redis
//! connections and names ([`link`]), for one Redis or a Redis Cluster; on a cluster
//! every channel is a shard channel (SSUBSCRIBE/SPUBLISH), so a room's traffic goes
//! only to the master that owns its slot. The relay, the census and the subscriber are
//! its clients; the backplane puts them together.

mod backplane;
mod census;
mod envelope;
mod link;
mod relay;
mod subscriber;
mod subscription;

pub use backplane::{Backplane, BackplaneError, RedisTarget};
pub use census::{Census, Presence};
