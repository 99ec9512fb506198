//! The `RoomRegistry` actor: one shard per worker thread, holding room → sessions and
//! session → rooms for the sessions of its thread, and one [`Sequencer`] per versioned
//! room. Sessions talk only to their own thread's shard, so handing an event to a
//! recipient never wakes another thread; a published event reaches each shard once,
//! which writes it into its members' sockets ([`fanout`]).
//!
//! Every path by which a shard learns of a version (this node's commit, Redis, the
//! anti-entropy tick, a gap read) ends in the room's sequencer, so members get each
//! version once and in order whatever Redis did. A gap is read from the change log
//! once per room and shard, not once per session.

mod fanout;
mod streams;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use self::streams::RoomStream;
use super::direct::{self, DirectSocket};
use super::index::RoomIndex;
use super::messages::*;
use super::sequencer::Sequencer;
use super::tail::{Tail, TailBudget};
use super::{RoomName, ShardConfig};
use crate::changelog::ChangeLog;
use crate::metrics::Metrics;

/// Mailbox capacity of a shard: publishers that find it full back off and retry.
const REGISTRY_MAILBOX: usize = 4096;

struct Member {
    sub: Arc<str>,
    mailbox: Mailbox,
    /// The session's socket, for events it need not see (see [`super::direct`]).
    direct: Option<DirectSocket>,
    /// The rooms this session is in: always exactly the rooms whose `members` hold it,
    /// each once. A few at most, so a vector grown one at a time: every idle socket
    /// would keep the spare room of a hash set.
    rooms: Vec<RoomName>,
}
struct Room {
    /// Sessions in the room. The room exists exactly while this is not empty.
    members: HashSet<SessionId>,
    /// For versioned rooms, the sequencer and its reads.
    stream: Option<RoomStream>,
}

/// One shard of this node's room registry.
pub struct RoomRegistry {
    sessions: HashMap<SessionId, Member>,
    rooms: HashMap<RoomName, Room>,
    evicted: u64,
    /// Events handed over this turn, written when it ends.
    wave: fanout::Wave,
    config: ShardConfig,
    /// What the rooms' tails draw from, shared with every shard of the node.
    tails: TailBudget,
    changelog: ChangeLog,
    index: Arc<RoomIndex>,
    metrics: Arc<Metrics>,
}

impl RoomRegistry {
    /// An empty shard.
    pub fn new(
        config: ShardConfig,
        tails: TailBudget,
        changelog: ChangeLog,
        index: Arc<RoomIndex>,
        metrics: Arc<Metrics>,
    ) -> Self {
        RoomRegistry {
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            evicted: 0,
            wave: fanout::Wave::default(),
            config,
            tails,
            changelog,
            index,
            metrics,
        }
    }

    /// A shard on a fresh SQLite database in `dir`, with test-sized limits.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &std::path::Path) -> Self {
        use std::time::Duration;

        use super::sequencer::HoldLimits;
        use super::TailLimits;
        use crate::db::{connect_and_migrate, DatabaseTarget};

        let target = DatabaseTarget::Sqlite(dir.join("hub.db"));
        let pool = connect_and_migrate(&target, Duration::from_secs(4)).unwrap();
        let config = ShardConfig {
            anti_entropy_interval: Duration::from_secs(2),
            recovery_deadline: Duration::from_secs(10),
            hold: HoldLimits {
                count: 4096,
                bytes: 1 << 22,
            },
            heartbeat_interval: Duration::from_secs(10),
            tail: TailLimits {
                room_bytes: 1 << 16,
                node_bytes: 1 << 20,
            },
        };
        RoomRegistry::new(
            config,
            TailBudget::new(1 << 20),
            ChangeLog::new(pool, &[], 1000),
            Arc::new(RoomIndex::default()),
            Arc::new(Metrics::new(false)),
        )
    }

    fn remove_session(&mut self, id: SessionId) -> Option<Member> {
        let member = self.sessions.remove(&id)?;
        for room in &member.rooms {
            self.leave_room(id, &member.sub, room);
        }
        Some(member)
    }

    fn leave_room(&mut self, id: SessionId, sub: &Arc<str>, room: &RoomName) {
        let Some(entry) = self.rooms.get_mut(room) else {
            return;
        };
        if entry.members.remove(&id) {
            self.metrics.leaves.inc();
            let rooms = self.index.leave(room, sub);
            self.metrics.rooms.set(rooms as i64);
        }
        if entry.members.is_empty() {
            // Dropping the room forgets its sequencer; a later join reads the head
            // afresh. Its waiting joins (none can be left: they belong to members)
            // answer `Gone`.
            self.rooms.remove(room);
        }
    }

    /// Tells every session to ping its client. A session whose inbox is full misses
    /// this beat; the next event evicts it anyway.
    fn heartbeat(&mut self) {
        self.end_wave();
        for member in self.sessions.values() {
            let _ = member.mailbox.offer(SessionMsg::Heartbeat);
        }
    }
}

impl Actor for RoomRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
        ctx.run_interval(self.config.heartbeat_interval, |act, _| act.heartbeat());
    }
}

impl Handler<Connect> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        self.end_wave();
        let member = Member {
            sub: msg.sub,
            mailbox: msg.mailbox,
            direct: direct::take(msg.id),
            rooms: Vec::new(),
        };
        self.sessions.insert(msg.id, member);
    }
}

impl Handler<Disconnect> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        self.end_wave();
        self.remove_session(msg.id);
    }
}

impl Handler<Join> for RoomRegistry {
    type Result = ResponseFuture<Result<Joined, JoinError>>;

    fn handle(&mut self, join: Join, ctx: &mut Self::Context) -> Self::Result {
        self.end_wave();
        let Join { id, room, since } = join;
        let Some(member) = self.sessions.get_mut(&id) else {
            return Box::pin(async { Err(JoinError::Gone) });
        };
        if !member.rooms.contains(&room) {
            member.rooms.reserve_exact(1);
            member.rooms.push(room.clone());
        }
        let sub = member.sub.clone();
        let (changelog, config, tails) = (&self.changelog, &self.config, &self.tails);
        let entry = self.rooms.entry(room.clone()).or_insert_with(|| Room {
            members: HashSet::new(),
            stream: changelog.stream_of(&room).map(|stream| {
                let tail = Tail::new(config.tail.room_bytes, tails);
                RoomStream::new(stream, Sequencer::new(config.hold), tail)
            }),
        });
        if entry.members.insert(id) {
            self.metrics.joins.inc();
            let rooms = self.index.join(&room, &sub);
            self.metrics.rooms.set(rooms as i64);
        }
        let Some(stream) = entry.stream.as_mut() else {
            return Box::pin(async { Ok(Joined::default()) });
        };
        // While the stream is found to have moved back, the join waits for its new
        // start rather than be told a position that no longer exists.
        if let Some(version) = stream
            .sequencer
            .delivered()
            .filter(|_| !stream.sequencer.moving_back())
        {
            let recent = since.and_then(|since| stream.tail.between(since, version));
            if recent.is_some() {
                self.metrics.hub.replays_from_memory.inc();
            }
            let joined = Joined {
                version: Some(version),
                epoch: stream.sequencer.epoch().cloned(),
                recent,
            };
            return Box::pin(async move { Ok(joined) });
        }
        let (answer, answered) = oneshot::channel();
        stream.waiting.push(answer);
        self.pump(&room, ctx);
        Box::pin(async move { answered.await.unwrap_or(Err(JoinError::Gone)) })
    }
}

impl Handler<Leave> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        self.end_wave();
        let Some(member) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        member.rooms.retain(|room| *room != msg.room);
        let sub = member.sub.clone();
        self.leave_room(msg.id, &sub, &msg.room);
    }
}

impl Handler<Publish> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, Publish(event): Publish, ctx: &mut Self::Context) {
        // A versioned event of a room this shard sequences goes through the sequencer;
        // everything else (no version, or a room versioned only by another node's
        // EVENTIDE_HISTORY_ROOMS) is passed on as it is.
        if let (Some(room), Some(version)) = (event.room(), event.version) {
            if let Some(stream) = self.rooms.get_mut(room).and_then(|r| r.stream.as_mut()) {
                let delivery = stream.sequencer.offer(version, event.frame.clone());
                let room = room.clone();
                self.deliver(&room, delivery, ctx);
                self.schedule_check(&room, ctx);
                return;
            }
        }
        self.send_event(event, ctx);
    }
}

impl Handler<Heads> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, Heads(heads): Heads, ctx: &mut Self::Context) {
        self.compare_heads(&heads, ctx);
    }
}

impl Handler<DisconnectUser> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, DisconnectUser(sub): DisconnectUser, _: &mut Self::Context) {
        self.end_wave();
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, m)| m.sub == sub)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(member) = self.remove_session(id) {
                member.mailbox.tell(SessionMsg::Revoked);
            }
        }
    }
}

impl Handler<CloseAll> for RoomRegistry {
    type Result = usize;

    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) -> usize {
        self.end_wave();
        for member in self.sessions.values() {
            member.mailbox.tell(SessionMsg::GoingAway);
        }
        self.sessions.len()
    }
}

impl Handler<Stats> for RoomRegistry {
    type Result = RegistryStats;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> RegistryStats {
        self.end_wave();
        RegistryStats {
            sessions: self.sessions.len(),
            rooms: self.rooms.len(),
            memberships: self.rooms.values().map(|r| r.members.len()).sum(),
            evicted: self.evicted,
            held: self
                .rooms
                .values()
                .filter_map(|r| r.stream.as_ref())
                .map(|s| s.sequencer.held())
                .sum(),
        }
    }
}
