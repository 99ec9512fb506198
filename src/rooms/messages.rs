//! The messages of the room registry: what sessions and the [`Hub`](super::Hub) ask of
//! a shard, and what a shard tells a session.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;

use super::inbox::{self, Weigh};
use super::sequencer::{Epoch, Versioned};
use super::RoomName;

/// Identifies one WebSocket session for the life of the process.
pub type SessionId = u64;

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The members of a room.
    Room(RoomName),
    /// Every session.
    All,
    /// Every session of one token subject.
    User(Arc<str>),
}

/// One serialized event: its frame bytes are shared by every recipient.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who gets it.
    pub target: Target,
    /// The room's version, for versioned rooms (provider rooms, history rooms).
    pub version: Option<i64>,
    /// The serialized frame.
    pub frame: ByteString,
}

impl Event {
    /// The room the event is for, if it is a room event.
    pub fn room(&self) -> Option<&RoomName> {
        match &self.target {
            Target::Room(room) => Some(room),
            _ => None,
        }
    }
}

/// What a shard tells a session (through its [`Inbox`]).
#[derive(Debug)]
pub enum SessionMsg {
    /// An event to send to the client. Versioned events of a room arrive in version
    /// order, each once.
    Event(Event),
    /// The room's stream skipped versions its change log no longer keeps, or moved
    /// back: the client must re-fetch the room's state; the stream goes on after
    /// `version`.
    Resync {
        /// The room.
        room: RoomName,
        /// The version the stream resumes after.
        version: i64,
        /// The stream's epoch from now on.
        epoch: Option<Epoch>,
    },
    /// The change log of a joined room stayed unreachable: close so that the client
    /// reconnects and recovers with `since`.
    Unavailable,
    /// The session fell behind and was evicted from every room: close it.
    Evicted,
    /// An operator disconnected the session's subject: close with 4003.
    Revoked,
    /// The hub is shutting down: close with 1001.
    GoingAway,
    /// Time to ping the client, and to close if it has been silent too long.
    Heartbeat,
    /// The shard wrote to the socket directly and the kernel left part of it queued:
    /// wait for the socket to take the rest.
    Flush,
}

impl Weigh for SessionMsg {
    fn frame_bytes(&self) -> usize {
        match self {
            SessionMsg::Event(event) => event.frame.len(),
            _ => 0,
        }
    }
}

/// The shard's end of a session's inbox.
pub type Mailbox = inbox::Mailbox<SessionMsg>;
/// The session's end of its inbox.
pub type Inbox = inbox::Inbox<SessionMsg>;

/// A new session. Its [`DirectSocket`](super::direct::DirectSocket), if it has one,
/// waits for the shard on this thread (see [`super::direct`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    /// The session's id.
    pub id: SessionId,
    /// Its token's subject.
    pub sub: Arc<str>,
    /// Where its events go.
    pub mailbox: Mailbox,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    /// The session's id.
    pub id: SessionId,
}

/// Where a room's stream stands when a session joins it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joined {
    /// For a versioned room, the last version delivered to the room's members on this
    /// node: the new member gets every version after it, and reads what it missed up
    /// to it from the change log.
    pub version: Option<i64>,
    /// For a versioned room, the epoch `version` belongs to.
    pub epoch: Option<Epoch>,
    /// The frames after the join's `since` up to `version`, when the shard still
    /// holds every one of them in memory (in `epoch`): the replay, without a read.
    pub recent: Option<Vec<Versioned>>,
}

/// Why a join failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The session is not registered (it is closing) or the hub is stopping.
    Gone,
    /// The room's change log cannot be read now.
    Unavailable,
}

/// Adds a session to a room.
#[derive(Message)]
#[rtype(result = "Result<Joined, JoinError>")]
pub struct Join {
    /// The session.
    pub id: SessionId,
    /// The room.
    pub room: RoomName,
    /// The version the client has, if it asks for a replay.
    pub since: Option<i64>,
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

/// An event for this shard's sessions.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Publish(pub Event);

/// The heads and epochs of the node's versioned rooms, as the node's anti-entropy
/// tick read them: each shard compares the rooms it delivers with them.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Heads(pub Arc<HashMap<RoomName, (i64, Epoch)>>);

/// Closes every session of a subject with 4003.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct DisconnectUser(pub Arc<str>);

/// Tells every session to close with 1001 (shutdown); answers how many there were.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

/// Asks for the shard's counters.
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
    /// Versions held by room sequencers while a gap is read.
    pub held: usize,
}

impl std::ops::Add for RegistryStats {
    type Output = RegistryStats;

    fn add(self, other: RegistryStats) -> RegistryStats {
        RegistryStats {
            sessions: self.sessions + other.sessions,
            rooms: self.rooms + other.rooms,
            memberships: self.memberships + other.memberships,
            evicted: self.evicted + other.evicted,
            held: self.held + other.held,
        }
    }
}
