//! A session's rooms: the requests it runs in the order the client sent them, and, per
//! room, whether it is joining (holding live events while it reads what it missed) or
//! live (the last version the client has).
//!
//! Join and leave requests run one at a time, in order: a join waits for the registry
//! (and the change log), and a leave sent behind it waits its turn. So the registry's
//! memberships and this session's rooms always agree, however a client pipelines.
//! This is a plain state machine; the session actor only moves messages through it.

use std::collections::{HashSet, VecDeque};

use bytestring::ByteString;
use serde_json::Value;

use crate::rooms::sequencer::Epoch;
use crate::rooms::RoomName;

/// Requests that may wait behind a running join: more than a client can send in one
/// burst at the default rate limit, so only a client that ignores its replies for a
/// long time meets it.
pub const MAX_QUEUED: usize = 128;

/// A client request about rooms.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomRequest {
    /// `joinRoom`.
    Join {
        /// The room.
        room: RoomName,
        /// The client's `since`.
        since: Option<i64>,
        /// The epoch the client's `since` belongs to.
        epoch: Option<String>,
        /// The client's `ref`.
        reference: Option<Value>,
    },
    /// `leaveRoom`.
    Leave {
        /// The room.
        room: RoomName,
        /// The client's `ref`.
        reference: Option<Value>,
    },
}

/// Why a request was refused before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The connection would be in more rooms than allowed.
    TooManyRooms,
    /// Too many requests wait already.
    QueueFull,
}

/// The next request to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Join `room`: ask the registry, then replay after `replay_from` if set.
    Join {
        /// The room.
        room: RoomName,
        /// The client's `since`.
        since: Option<i64>,
        /// Where the replay starts: the client's `since`, or, for a room it is
        /// already in, the last version it has.
        replay_from: Option<i64>,
        /// The epoch the client's `since` belongs to.
        epoch: Option<String>,
        /// The client's `ref`.
        reference: Option<Value>,
    },
    /// Leave `room` (done at once).
    Leave {
        /// The room.
        room: RoomName,
        /// The client's `ref`.
        reference: Option<Value>,
        /// Whether the session was in it.
        was_member: bool,
    },
}

/// How a join ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The frames to send after `joinedRoom`, in order.
    pub frames: Vec<ByteString>,
    /// The version the client has once they are sent.
    pub version: Option<i64>,
    /// The stream skipped versions (or moved back, under the epoch given) during the
    /// join and resumes after this version: the replay was dropped and the client
    /// must re-fetch (`recovered: false`).
    pub skipped: Option<Skip>,
}

/// Where a stream resumes after a notice: the version, and the epoch if it changed.
pub type Skip = (i64, Option<Epoch>);

/// What to do with a live event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Send it now.
    Send,
    /// Held until the join finishes.
    Held,
    /// Already sent, or not for this session.
    Drop,
    /// The held events passed the cap: the session is a slow consumer.
    Overflow,
}

#[derive(Debug)]
enum Membership {
    /// The join runs; live events wait here, bounded in bytes.
    Joining {
        held: Vec<(Option<i64>, ByteString)>,
        held_bytes: usize,
        /// The stream skipped versions (or moved back) meanwhile and resumes after
        /// this one: the join ends with `recovered: false` whatever its replay found.
        /// The latest notice wins, since the shard sends them in stream order.
        skipped: Option<Skip>,
    },
    /// The client has every version up to `version`.
    Live { version: Option<i64> },
}

/// The rooms of one session.
#[derive(Debug)]
pub struct Rooms {
    /// Rooms joined or joining. Exactly the rooms the registry has this session in,
    /// once the messages already sent to it are handled.
    rooms: RoomMap,
    /// Requests waiting for the running join, in the client's order.
    queue: VecDeque<RoomRequest>,
    /// A join is running.
    busy: bool,
    max_rooms: usize,
    max_held_bytes: usize,
}

impl Rooms {
    /// No rooms; at most `max_rooms` at once, holding at most `max_held_bytes` per join.
    pub fn new(max_rooms: usize, max_held_bytes: usize) -> Self {
        Rooms {
            rooms: RoomMap::default(),
            queue: VecDeque::new(),
            busy: false,
            max_rooms,
            max_held_bytes,
        }
    }

    /// The rooms the session will be in once every queued request has run.
    fn projected(&self) -> HashSet<&RoomName> {
        let mut rooms: HashSet<&RoomName> = self.rooms.names().collect();
        for request in &self.queue {
            match request {
                RoomRequest::Join { room, .. } => rooms.insert(room),
                RoomRequest::Leave { room, .. } => rooms.remove(room),
            };
        }
        rooms
    }

    /// Queues a request, refusing a join past the room cap.
    pub fn request(&mut self, request: RoomRequest) -> Result<(), Refusal> {
        if self.queue.len() >= MAX_QUEUED {
            return Err(Refusal::QueueFull);
        }
        if let RoomRequest::Join { room, .. } = &request {
            let projected = self.projected();
            if !projected.contains(room) && projected.len() >= self.max_rooms {
                return Err(Refusal::TooManyRooms);
            }
        }
        self.queue.push_back(request);
        Ok(())
    }

    /// The next request to run, unless a join is running.
    pub fn next(&mut self) -> Option<Step> {
        if self.busy {
            return None;
        }
        let request = self.queue.pop_front()?;
        if self.queue.is_empty() {
            // Most sessions send a request or two and then nothing for hours: an idle
            // one keeps no queue.
            self.queue = VecDeque::new();
        }
        Some(match request {
            RoomRequest::Join {
                room,
                since,
                epoch,
                reference,
            } => {
                let had = match self.rooms.get(&room) {
                    Some(Membership::Live { version }) => *version,
                    _ => None,
                };
                let joining = Membership::Joining {
                    held: Vec::new(),
                    held_bytes: 0,
                    skipped: None,
                };
                self.rooms.insert(room.clone(), joining);
                self.busy = true;
                Step::Join {
                    room,
                    since,
                    replay_from: since.or(had),
                    epoch,
                    reference,
                }
            }
            RoomRequest::Leave { room, reference } => Step::Leave {
                was_member: self.rooms.remove(&room).is_some(),
                room,
                reference,
            },
        })
    }

    /// A live event of `room` arrived.
    pub fn arrive(&mut self, room: &RoomName, version: Option<i64>, frame: &ByteString) -> Arrival {
        match self.rooms.get_mut(room) {
            None => Arrival::Drop,
            Some(Membership::Live { version: seen }) => {
                if advance(seen, version) {
                    Arrival::Send
                } else {
                    Arrival::Drop
                }
            }
            Some(Membership::Joining {
                held, held_bytes, ..
            }) => {
                *held_bytes += frame.len();
                held.push((version, frame.clone()));
                if *held_bytes > self.max_held_bytes {
                    Arrival::Overflow
                } else {
                    Arrival::Held
                }
            }
        }
    }

    /// A live event of `room`, offered without the session: `Some(true)` to send it
    /// (the room's version is advanced), `Some(false)` if it is not for the client (it
    /// has that version, or is not in the room), `None` if the room is joining and the
    /// session must hold the event itself.
    pub fn arrive_live(&mut self, room: &RoomName, version: Option<i64>) -> Option<bool> {
        match self.rooms.get_mut(room) {
            None => Some(false),
            Some(Membership::Live { version: seen }) => Some(advance(seen, version)),
            Some(Membership::Joining { .. }) => None,
        }
    }

    /// The running join of `room` finished: the stream stands at `version` on this
    /// node, the client had `client_has` (its `since`, or what it had) and `replay`
    /// are the versions it missed, in (`client_has`, `version`]. Answers the frames to
    /// send after `joinedRoom`, in order, and the version the client then has; `None`
    /// if the room was left meanwhile (a narrowed token): nothing is to be answered.
    pub fn joined(
        &mut self,
        room: &RoomName,
        version: Option<i64>,
        client_has: Option<i64>,
        replay: Vec<(i64, ByteString)>,
    ) -> Option<Ended> {
        self.busy = false;
        let (held, skipped) = match self.rooms.get_mut(room) {
            Some(Membership::Joining { held, skipped, .. }) => {
                (std::mem::take(held), skipped.take())
            }
            _ => return None,
        };
        let mut last = match &skipped {
            // What was replayed has a hole after it: the client re-fetches, and the
            // stream goes on after the skip.
            Some((skip, _)) => Some(*skip),
            // A client ahead of this node's stream (its `since` came from a node that
            // saw more) gets nothing it already has.
            None => version.map(|v| client_has.map_or(v, |has| has.max(v))),
        };
        let mut frames = Vec::with_capacity(replay.len() + held.len());
        if skipped.is_none() {
            frames.extend(replay.into_iter().map(|(_, frame)| frame));
        }
        for (v, frame) in held {
            match (v, last) {
                (Some(v), Some(l)) if v <= l => continue,
                (Some(v), _) => last = Some(v),
                _ => {}
            }
            frames.push(frame);
        }
        self.rooms
            .insert(room.clone(), Membership::Live { version: last });
        Some(Ended {
            frames,
            version: last,
            skipped,
        })
    }

    /// Whether `room` is joining still: not left meanwhile (a narrowed token).
    pub fn is_joining(&self, room: &RoomName) -> bool {
        matches!(self.rooms.get(room), Some(Membership::Joining { .. }))
    }

    /// The running join of `room` failed: the session is not in it.
    pub fn join_failed(&mut self, room: &RoomName) {
        self.busy = false;
        self.rooms.remove(room);
    }

    /// The room's stream skipped versions and resumes after `version`. Answers whether
    /// to tell the client now: yes if it is live in the room; a join still running
    /// ends with `recovered: false` instead.
    pub fn resync(&mut self, room: &RoomName, version: i64, epoch: Option<Epoch>) -> bool {
        match self.rooms.get_mut(room) {
            Some(Membership::Live { version: seen }) => {
                *seen = Some(version);
                true
            }
            Some(Membership::Joining {
                held,
                held_bytes,
                skipped,
            }) => {
                // What was held came before the notice: from before the skip, or from
                // the stream's old epoch. The client re-fetches instead.
                held.retain(|(v, _)| v.is_none());
                *held_bytes = held.iter().map(|(_, f)| f.len()).sum();
                *skipped = Some((version, epoch));
                false
            }
            None => false,
        }
    }

    /// Removes every room `allowed` refuses; answers them.
    pub fn retain(&mut self, allowed: impl Fn(&RoomName) -> bool) -> Vec<RoomName> {
        let gone: Vec<RoomName> = self
            .rooms
            .names()
            .filter(|r| !allowed(r))
            .cloned()
            .collect();
        for room in &gone {
            self.rooms.remove(room);
        }
        gone
    }

    /// Rooms joined or joining.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether the session is in no room.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

/// Whether a live event of `version` is new to a client that has `seen`; if so, the
/// client has it from now on.
fn advance(seen: &mut Option<i64>, version: Option<i64>) -> bool {
    match (version, *seen) {
        (Some(v), Some(s)) if v <= s => false,
        (Some(v), _) => {
            *seen = Some(v);
            true
        }
        (None, _) => true,
    }
}

/// A session's rooms by name. A session is in a few rooms (at most
/// `EVENTIDE_MAX_ROOMS_PER_CONNECTION`) and looks one up for every event it gets: a
/// scan of a short vector beats hashing the name each time.
#[derive(Debug, Default)]
struct RoomMap(Vec<(RoomName, Membership)>);

impl RoomMap {
    fn position(&self, room: &RoomName) -> Option<usize> {
        self.0.iter().position(|(name, _)| name == room)
    }

    fn get(&self, room: &RoomName) -> Option<&Membership> {
        self.position(room).map(|at| &self.0[at].1)
    }

    fn get_mut(&mut self, room: &RoomName) -> Option<&mut Membership> {
        self.position(room).map(|at| &mut self.0[at].1)
    }

    fn insert(&mut self, room: RoomName, membership: Membership) {
        match self.position(&room) {
            Some(at) => self.0[at].1 = membership,
            None => {
                // Grown one room at a time: most sessions are in one or two, and every
                // idle socket would keep the spare room a doubling leaves.
                self.0.reserve_exact(1);
                self.0.push((room, membership));
            }
        }
    }

    fn remove(&mut self, room: &RoomName) -> Option<Membership> {
        self.position(room).map(|at| self.0.swap_remove(at).1)
    }

    fn names(&self) -> impl Iterator<Item = &RoomName> {
        self.0.iter().map(|(name, _)| name)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests;
