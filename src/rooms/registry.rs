//! The `RoomRegistry` actor: room → sessions and session → rooms, and the fan-out of
//! events to the sessions of a room.
//!
//! Invariants:
//! - a session is registered exactly while its actor lives (it sends [`Connect`] when
//!   it starts and [`Disconnect`] when it stops); a room with no member is removed;
//! - delivery never waits for a session: it uses `try_send`, and a session whose
//!   mailbox is full is evicted from every room and told to close (a slow consumer must
//!   not hold the others back, nor grow the hub's memory).
//!
//! It also keeps the room metrics (`eventide_rooms`, joins, leaves, fan-out time): it
//! is the one place that sees every membership change and every fan-out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytestring::ByteString;

use super::RoomName;
use crate::metrics::{Metrics, Origin};

/// Identifies one WebSocket session for the life of the process.
pub type SessionId = u64;

/// Mailbox capacity of the registry: publishers wait (`send().await`) past it.
const REGISTRY_MAILBOX: usize = 4096;

/// One event for one session: the room it was sent to, its version (provider rooms)
/// and the frame bytes, shared with every other recipient.
#[derive(Debug, Clone)]
pub struct Deliver {
    /// The room, or `None` for a broadcast.
    pub room: Option<RoomName>,
    /// The provider's availability version, for `availabilityUpdated`.
    pub version: Option<i64>,
    /// The serialized frame.
    pub frame: ByteString,
}

/// What the registry tells a session.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum SessionMsg {
    /// An event to send to the client.
    Event(Deliver),
    /// The session fell behind and was evicted from every room: close it.
    Evicted,
    /// The hub is shutting down: close with 1001.
    GoingAway,
    /// This node may have missed events of the room (its cluster subscription was
    /// down): replay from the change log what the client has not seen.
    CatchUp(RoomName),
}

/// A new session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    /// The session's id.
    pub id: SessionId,
    /// Where its events go.
    pub recipient: Recipient<SessionMsg>,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// The session's id.
    pub id: SessionId,
}

/// Adds a session to a room; answers `false` if the session is no longer registered.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Join {
    /// The session.
    pub id: SessionId,
    /// The room.
    pub room: RoomName,
}

/// Removes a session from a room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The session.
    pub id: SessionId,
    /// The room.
    pub room: RoomName,
}

/// An event received from the cluster backplane: sends the frame to the members of a
/// room (or to every session); answers how many sessions it was handed to. Counted as
/// `eventide_events_published_total{origin="backplane"}`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "usize")]
pub struct Publish(pub Deliver);

/// An event produced on this node and delivered here directly (no cluster, or Redis
/// unreachable): the same fan-out as [`Publish`], kept apart so the backplane count
/// stays exact. The [`Hub`](super::Hub) sends it; its origin was counted there.
#[derive(Debug, Clone, Message)]
#[rtype(result = "usize")]
pub struct Fanout(pub Deliver);

/// Tells every session in a provider room to replay what it may have missed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp;

/// Tells every session to close with 1001 (shutdown).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

/// Asks for the registry's counters.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct Stats;

/// The registry's size, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, MessageResponse)]
pub struct RegistryStats {
    /// Registered sessions.
    pub sessions: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Session-in-room memberships.
    pub memberships: usize,
    /// Sessions evicted as slow consumers since start.
    pub evicted: u64,
}

struct Member {
    recipient: Recipient<SessionMsg>,
    rooms: HashSet<RoomName>,
}

/// The actor that owns room membership on this node.
pub struct RoomRegistry {
    sessions: HashMap<SessionId, Member>,
    rooms: HashMap<RoomName, HashSet<SessionId>>,
    evicted: u64,
    metrics: Arc<Metrics>,
}

impl RoomRegistry {
    /// An empty registry that counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        RoomRegistry {
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            evicted: 0,
            metrics,
        }
    }

    /// Removes a session from every room, forgetting rooms left empty.
    fn remove_session(&mut self, id: SessionId) -> Option<Member> {
        let member = self.sessions.remove(&id)?;
        for room in &member.rooms {
            self.leave_room(id, room);
        }
        Some(member)
    }

    fn leave_room(&mut self, id: SessionId, room: &RoomName) {
        if let Some(members) = self.rooms.get_mut(room) {
            if members.remove(&id) {
                self.metrics.leaves.inc();
            }
            if members.is_empty() {
                self.rooms.remove(room);
                self.metrics.rooms.set(self.rooms.len() as i64);
            }
        }
    }

    /// Hands `deliver` to the members of its room (or to every session), evicting the
    /// sessions that cannot take it; answers how many took it.
    fn fan_out(&mut self, deliver: &Deliver) -> usize {
        let started = Instant::now();
        let mut refused = Vec::new();
        let mut delivered = 0;
        match &deliver.room {
            Some(room) => {
                if let Some(members) = self.rooms.get(room) {
                    for id in members {
                        if let Some(member) = self.sessions.get(id) {
                            let event = SessionMsg::Event(deliver.clone());
                            delivered += Self::offer(*id, member, event, &mut refused) as usize;
                        }
                    }
                }
            }
            None => {
                for (id, member) in &self.sessions {
                    let event = SessionMsg::Event(deliver.clone());
                    delivered += Self::offer(*id, member, event, &mut refused) as usize;
                }
            }
        }
        self.drop_refused(refused);
        self.metrics
            .fanout_seconds
            .observe(started.elapsed().as_secs_f64());
        delivered
    }

    /// Offers `msg` to one session without waiting; a session that cannot take it is
    /// noted in `refused` (`true`: its mailbox is full; `false`: it is gone).
    fn offer(
        id: SessionId,
        member: &Member,
        msg: SessionMsg,
        refused: &mut Vec<(SessionId, bool)>,
    ) -> bool {
        match member.recipient.try_send(msg) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                refused.push((id, true));
                false
            }
            Err(SendError::Closed(_)) => {
                refused.push((id, false));
                false
            }
        }
    }

    /// Forgets the sessions that refused a message. A full mailbox is a slow consumer:
    /// it is evicted and told to close.
    fn drop_refused(&mut self, refused: Vec<(SessionId, bool)>) {
        for (id, slow) in refused {
            if let Some(member) = self.remove_session(id) {
                if slow {
                    self.evicted += 1;
                    log::warn!("session {id} evicted: its mailbox is full (slow consumer)");
                    // One message past capacity, once per eviction: the session is no
                    // longer registered, so nothing else is ever queued for it.
                    member.recipient.do_send(SessionMsg::Evicted);
                }
            }
        }
    }
}

impl Actor for RoomRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
    }
}

impl Handler<Connect> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        self.sessions.insert(
            msg.id,
            Member {
                recipient: msg.recipient,
                rooms: HashSet::new(),
            },
        );
    }
}

impl Handler<Disconnect> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        self.remove_session(msg.id);
    }
}

impl Handler<Join> for RoomRegistry {
    type Result = bool;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> bool {
        let Some(member) = self.sessions.get_mut(&msg.id) else {
            return false;
        };
        member.rooms.insert(msg.room.clone());
        if self.rooms.entry(msg.room).or_default().insert(msg.id) {
            self.metrics.joins.inc();
            self.metrics.rooms.set(self.rooms.len() as i64);
        }
        true
    }
}

impl Handler<Leave> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        if let Some(member) = self.sessions.get_mut(&msg.id) {
            member.rooms.remove(&msg.room);
        }
        self.leave_room(msg.id, &msg.room);
    }
}

impl Handler<Publish> for RoomRegistry {
    type Result = usize;

    fn handle(&mut self, Publish(deliver): Publish, _: &mut Self::Context) -> usize {
        self.metrics.published(Origin::Backplane).inc();
        self.fan_out(&deliver)
    }
}

impl Handler<Fanout> for RoomRegistry {
    type Result = usize;

    fn handle(&mut self, Fanout(deliver): Fanout, _: &mut Self::Context) -> usize {
        self.fan_out(&deliver)
    }
}

impl Handler<CloseAll> for RoomRegistry {
    type Result = usize;

    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) -> usize {
        for member in self.sessions.values() {
            member.recipient.do_send(SessionMsg::GoingAway);
        }
        self.sessions.len()
    }
}

impl Handler<CatchUp> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, _: CatchUp, _: &mut Self::Context) {
        let mut refused = Vec::new();
        for (room, members) in &self.rooms {
            if room.provider_id().is_none() {
                continue;
            }
            for id in members {
                if let Some(member) = self.sessions.get(id) {
                    Self::offer(*id, member, SessionMsg::CatchUp(room.clone()), &mut refused);
                }
            }
        }
        self.drop_refused(refused);
    }
}

impl Handler<Stats> for RoomRegistry {
    type Result = RegistryStats;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> RegistryStats {
        RegistryStats {
            sessions: self.sessions.len(),
            rooms: self.rooms.len(),
            memberships: self.rooms.values().map(HashSet::len).sum(),
            evicted: self.evicted,
        }
    }
}
