//! The `Hub`: the one door into this node's room registry. Sessions connect, join and
//! leave through it; REST handlers, the availability store and the cluster publish
//! through it.
//!
//! The registry is sharded: one [`RoomRegistry`] per worker thread, started the first
//! time a session of that thread connects. A session only ever talks to its own
//! thread's shard; a published event is handed once to every shard.
//!
//! Publishing is one path whatever the origin: the event goes to this node's shards at
//! once (each versioned room's sequencer puts it in order) and, in a cluster, to the
//! relay that publishes it to Redis for the other nodes. Nothing here waits on Redis.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;
use tokio::sync::Notify;

use super::backlog::{self, Backlog, Handed};
use super::direct::{self, DirectSocket};
use super::index::RoomIndex;
use super::messages::*;
use super::replay::{self, Replay};
use super::sequencer::{HoldLimits, Read};
use super::tail::TailBudget;
use super::{frame_to, FrameTarget, RoomName, RoomRegistry};
use crate::changelog::{ChangeLog, LogError};
use crate::cluster::{Backplane, Presence};
use crate::metrics::{Metrics, Origin};

/// The registry is gone: the hub is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubError;

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the room registry has stopped")
    }
}

impl std::error::Error for HubError {}

/// Why an event could not be emitted.
#[derive(Debug)]
pub enum EmitError {
    /// The hub is shutting down.
    Stopped(HubError),
    /// A history room's change log could not be written.
    Log(LogError),
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::Stopped(e) => e.fmt(f),
            EmitError::Log(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for EmitError {}

/// How each shard delivers versioned rooms.
#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    /// How often the node compares its versioned rooms with the change log.
    pub anti_entropy_interval: Duration,
    /// How long a room's change log may stay unreadable before its sockets close.
    pub recovery_deadline: Duration,
    /// What one room's sequencer holds at most while a gap is read.
    pub hold: HoldLimits,
    /// How often every session is told to ping its client and check that it is
    /// still heard from: one timer per shard rather than one per socket.
    pub heartbeat_interval: Duration,
    /// What the rooms keep of their recent frames for rejoins.
    pub tail: TailLimits,
}

/// Bounds of the recent frames versioned rooms keep in memory.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    /// Frame bytes per room and shard.
    pub room_bytes: usize,
    /// Frame bytes of every room of the node together.
    pub node_bytes: usize,
}

/// Gives every hub of the process its own key in the per-thread shard table.
static NEXT_HUB: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard of each hub running in the process.
    static LOCAL_SHARDS: RefCell<HashMap<u64, Addr<RoomRegistry>>> = RefCell::new(HashMap::new());
}

struct Inner {
    id: u64,
    /// Every shard started so far, each with its backlog of events from other nodes;
    /// a shard whose thread stopped is dropped on the next publish that finds it closed.
    shards: Mutex<Vec<Shard>>,
    index: Arc<RoomIndex>,
    changelog: ChangeLog,
    backplane: Option<Arc<Backplane>>,
    config: ShardConfig,
    metrics: Arc<Metrics>,
    /// Runs the anti-entropy tick now (a Redis resubscribe).
    recheck: Arc<Notify>,
    /// The anti-entropy tick's task is running (started with the first shard).
    ticking: Arc<AtomicBool>,
    /// What every shard's room tails draw from.
    tails: TailBudget,
}

/// A handle that does not keep the hub alive (its anti-entropy tick holds one).
pub(super) struct WeakHub(Weak<Inner>);

impl WeakHub {
    pub(super) fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

/// A shard, and the events from other nodes waiting for its mailbox.
#[derive(Clone)]
struct Shard {
    addr: Addr<RoomRegistry>,
    backlog: Arc<Backlog>,
}

/// A cheap, clonable handle to this node's rooms (and the cluster, if any).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    /// A hub with no shard yet (each worker thread starts its own on first use).
    pub fn new(
        config: ShardConfig,
        changelog: ChangeLog,
        backplane: Option<Arc<Backplane>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Hub {
            inner: Arc::new(Inner {
                id: NEXT_HUB.fetch_add(1, Ordering::Relaxed),
                shards: Mutex::new(Vec::new()),
                // Only the cluster census reads which rooms changed.
                index: Arc::new(match backplane {
                    Some(_) => RoomIndex::recording_changes(),
                    None => RoomIndex::default(),
                }),
                changelog,
                backplane,
                config,
                metrics,
                recheck: Arc::default(),
                ticking: Arc::default(),
                tails: TailBudget::new(config.tail.node_bytes),
            }),
        }
    }

    pub(super) fn changelog(&self) -> &ChangeLog {
        &self.inner.changelog
    }

    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The cluster backplane, when this node is part of one.
    pub fn backplane(&self) -> Option<&Arc<Backplane>> {
        self.inner.backplane.as_ref()
    }

    /// The rooms with members on this node.
    pub fn index(&self) -> &Arc<RoomIndex> {
        &self.inner.index
    }

    /// Registers a session with this thread's shard; with `direct`, the shard writes
    /// its events straight into its socket whenever the session has nothing else to do.
    pub fn connect(
        &self,
        id: SessionId,
        sub: Arc<str>,
        mailbox: Mailbox,
        direct: Option<DirectSocket>,
    ) -> Link {
        let shard = self.local_shard();
        if let Some(socket) = direct {
            direct::hand_over(id, socket);
        }
        shard.do_send(Connect { id, sub, mailbox });
        Link {
            id,
            shard,
            hub: self.clone(),
        }
    }

    /// This thread's shard, started on first use.
    fn local_shard(&self) -> Addr<RoomRegistry> {
        LOCAL_SHARDS.with(|shards| {
            let mut shards = shards.borrow_mut();
            if let Some(shard) = shards.get(&self.inner.id).filter(|s| s.connected()) {
                return shard.clone();
            }
            let inner = &self.inner;
            let shard = RoomRegistry::new(
                inner.config,
                inner.tails.clone(),
                inner.changelog.clone(),
                inner.index.clone(),
                inner.metrics.clone(),
            )
            .start();
            self.lock_shards().push(Shard {
                addr: shard.clone(),
                backlog: Arc::default(),
            });
            shards.insert(inner.id, shard.clone());
            if !inner.ticking.swap(true, Ordering::AcqRel) {
                let weak = WeakHub(Arc::downgrade(inner));
                let interval = inner.config.anti_entropy_interval;
                let (wake, running) = (inner.recheck.clone(), inner.ticking.clone());
                actix_web::rt::spawn(super::anti_entropy::run(weak, interval, wake, running));
            }
            shard
        })
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, Vec<Shard>> {
        self.inner.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn shards(&self) -> Vec<Addr<RoomRegistry>> {
        self.shards_and_backlogs()
            .into_iter()
            .map(|s| s.addr)
            .collect()
    }

    fn shards_and_backlogs(&self) -> Vec<Shard> {
        let mut shards = self.lock_shards();
        shards.retain(|s| s.addr.connected());
        shards.clone()
    }

    /// Sends `{"event", "room", "data"}` to every session in `room`, or, for a room
    /// with history, appends it to the room's change log first and sends it with the
    /// room's next `version`.
    pub async fn emit_to_room(
        &self,
        room: &RoomName,
        event: &str,
        data: &Value,
    ) -> Result<(), EmitError> {
        let (version, frame) = if self.inner.changelog.is_history_room(room) {
            let (version, frame) = self
                .inner
                .changelog
                .append(room, event, data)
                .await
                .map_err(EmitError::Log)?;
            (Some(version), frame)
        } else {
            let target = FrameTarget {
                room: Some(room.as_str()),
                ..FrameTarget::default()
            };
            (None, frame_to(event, target, data))
        };
        let event = Event {
            target: Target::Room(room.clone()),
            version,
            frame,
        };
        self.publish(event, Origin::Emit)
            .await
            .map_err(EmitError::Stopped)
    }

    /// Sends `{"event", "data"}` to every session.
    pub async fn emit_to_all(&self, event: &str, data: &Value) -> Result<(), HubError> {
        let frame = frame_to(event, FrameTarget::default(), data);
        let event = Event {
            target: Target::All,
            version: None,
            frame,
        };
        self.publish(event, Origin::Emit).await
    }

    /// Sends `{"event", "user", "data"}` to every session of the subject `sub`.
    pub async fn emit_to_user(&self, sub: &str, event: &str, data: &Value) -> Result<(), HubError> {
        let target = FrameTarget {
            user: Some(sub),
            ..FrameTarget::default()
        };
        let frame = frame_to(event, target, data);
        let event = Event {
            target: Target::User(Arc::from(sub)),
            version: None,
            frame,
        };
        self.publish(event, Origin::Emit).await
    }

    /// Publishes an event produced on this node: to this node's shards at once and, in
    /// a cluster, through the relay to the other nodes. Never waits on Redis.
    pub async fn publish(&self, event: Event, origin: Origin) -> Result<(), HubError> {
        self.inner.metrics.published(origin).inc();
        if let Some(backplane) = &self.inner.backplane {
            backplane.publish(&event);
        }
        self.to_shards(event).await
    }

    /// Delivers an event another node published. Never waits: a shard whose mailbox
    /// is full gets it through its backlog (see [`Backlog`]), so one busy shard does not
    /// hold up this node's only subscriber, and with it every room.
    pub async fn deliver_from_cluster(&self, event: Event) -> Result<(), HubError> {
        let metrics = &self.inner.metrics;
        metrics.published(Origin::Backplane).inc();
        for shard in self.shards_and_backlogs() {
            if shard.backlog.hand_over(&shard.addr, event.clone()) == Handed::Dropped {
                metrics.hub.cluster_events_dropped.inc();
            }
        }
        Ok(())
    }

    /// Hands `event` to every shard, waiting (briefly, repeatedly) while a mailbox is
    /// full, so the queue stays bounded without dropping anything.
    async fn to_shards(&self, event: Event) -> Result<(), HubError> {
        for shard in self.shards() {
            // A shard that stopped (its worker ended) is skipped.
            backlog::publish_waiting(&shard, event.clone()).await;
        }
        Ok(())
    }

    /// Closes every socket of `sub` with 4003, on this node and (through Redis) on
    /// every other; with `revoked_before`, tells the other nodes its tokens up to that
    /// second are revoked.
    pub fn disconnect_user(&self, sub: &str, revoked_before: Option<i64>) {
        if let Some(backplane) = &self.inner.backplane {
            backplane.publish_disconnect(sub, revoked_before);
        }
        self.disconnect_local(sub);
    }

    /// Closes every socket of `sub` on this node with 4003.
    pub fn disconnect_local(&self, sub: &str) {
        let sub: Arc<str> = Arc::from(sub);
        for shard in self.shards() {
            shard.do_send(DisconnectUser(sub.clone()));
        }
    }

    /// Sockets and subjects in `room`, over every node.
    pub async fn presence(&self, room: &RoomName) -> Presence {
        let mut presence = Presence::of(&self.inner.index.members(room));
        if let Some(backplane) = &self.inner.backplane {
            let elsewhere = backplane.census().presence_elsewhere(room).await;
            presence.connections += elsewhere.connections;
            presence.subs.extend(elsewhere.subs);
        }
        presence
    }

    /// Compares the node's versioned rooms with the change log now.
    pub fn recheck(&self) {
        self.inner.recheck.notify_one();
    }

    /// Tells every session to close with 1001; answers how many there were.
    pub async fn close_all(&self) -> usize {
        let mut closed = 0;
        for shard in self.shards() {
            closed += shard.send(CloseAll).await.unwrap_or(0);
        }
        closed
    }

    /// The registry's counters, over every shard.
    pub async fn stats(&self) -> Result<RegistryStats, HubError> {
        let mut total = RegistryStats::default();
        for shard in self.shards() {
            total = total + shard.send(Stats).await.map_err(|_| HubError)?;
        }
        total.rooms = self.inner.index.len();
        Ok(total)
    }
}

/// A session's membership in its shard: the only way a session reaches the registry.
pub struct Link {
    id: SessionId,
    shard: Addr<RoomRegistry>,
    hub: Hub,
}

impl Link {
    /// Joins `room`; answers where its stream stands on this node and, for a `since`
    /// the shard still holds in memory, the frames after it.
    pub async fn join(&self, room: RoomName, since: Option<i64>) -> Result<Joined, JoinError> {
        let join = Join {
            id: self.id,
            room,
            since,
        };
        self.shard.send(join).await.unwrap_or(Err(JoinError::Gone))
    }

    /// Leaves `room`. Sent in order after any earlier join of the same session.
    pub fn leave(&self, room: RoomName) {
        self.shard.do_send(Leave { id: self.id, room });
    }

    /// Reads the versions of `room` in (`after`, `upto`] from the change log, where
    /// `upto` is a version this node has delivered (so it is committed).
    pub async fn replay(&self, room: &RoomName, after: i64, upto: i64) -> Result<Replay, LogError> {
        let changelog = &self.hub.inner.changelog;
        let Some(stream) = changelog.stream_of(room) else {
            return Ok(Replay::default());
        };
        self.hub.inner.metrics.hub.replay_reads.inc();
        replay::assemble(after, upto, |from| {
            changelog.read(stream.clone(), Read::After(from))
        })
        .await
    }

    /// Deregisters the session. A direct socket the shard never took (its `Connect`
    /// was not handled: the shard stopped) is let go here, and with it the socket.
    pub fn disconnect(&self) {
        drop(direct::take(self.id));
        self.shard.do_send(Disconnect { id: self.id });
    }
}
