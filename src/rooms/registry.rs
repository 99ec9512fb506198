//! The `RoomRegistry` actor: one shard per worker thread, holding room → sessions and
//! session → rooms for the sessions of its thread, and one [`Sequencer`] per versioned
//! room. Sessions talk only to their own thread's shard, so handing an event to a
//! recipient never wakes another thread; a published event reaches each shard once.
//!
//! Every path by which a shard learns of a version (this node's commit, Redis, the
//! anti-entropy tick, a gap read) ends in the room's sequencer, so members get each
//! version once and in order whatever Redis did. A gap is read from the change log
//! once per room and shard, not once per session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::index::RoomIndex;
use super::messages::*;
use super::sequencer::{Delivery, Read, ReadResult, Sequencer};
use super::{RoomName, ShardConfig};
use crate::changelog::{ChangeLog, LogError, Stream};
use crate::metrics::Metrics;

/// Mailbox capacity of a shard: publishers that find it full back off and retry.
const REGISTRY_MAILBOX: usize = 4096;
/// How long an out-of-order version waits for the versions before it before the gap
/// is read from the change log: events published by two nodes race through Redis.
const GAP_GRACE: Duration = Duration::from_millis(150);
/// The first retry of a failed change-log read; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

struct Member {
    sub: Arc<str>,
    recipient: Recipient<SessionMsg>,
    /// The rooms this session is in: always exactly the rooms whose `members` hold it.
    rooms: HashSet<RoomName>,
}

/// A versioned room's delivery state on this shard.
struct RoomStream {
    stream: Stream,
    sequencer: Sequencer,
    /// Joins waiting for the head read, answered as soon as it returns.
    waiting: Vec<oneshot::Sender<Result<Joined, JoinError>>>,
    /// A delayed gap check is scheduled.
    check_scheduled: bool,
    /// Since when reads of this room have been failing, and how many times.
    failing: Option<(Instant, u32)>,
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
    /// An anti-entropy pass is reading heads; no second one starts meanwhile.
    ticking: bool,
    config: ShardConfig,
    changelog: ChangeLog,
    index: Arc<RoomIndex>,
    metrics: Arc<Metrics>,
}

impl RoomRegistry {
    /// An empty shard.
    pub fn new(
        config: ShardConfig,
        changelog: ChangeLog,
        index: Arc<RoomIndex>,
        metrics: Arc<Metrics>,
    ) -> Self {
        RoomRegistry {
            sessions: HashMap::new(),
            rooms: HashMap::new(),
            evicted: 0,
            ticking: false,
            config,
            changelog,
            index,
            metrics,
        }
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

    /// Hands `msg` to every member of `room` (or every session) without waiting.
    fn fan_out(&mut self, target: &Target, msg: impl Fn() -> SessionMsg) -> usize {
        let started = Instant::now();
        let mut refused = Vec::new();
        let mut delivered = 0;
        match target {
            Target::Room(room) => {
                if let Some(entry) = self.rooms.get(room) {
                    for id in &entry.members {
                        if let Some(member) = self.sessions.get(id) {
                            delivered += offer(*id, member, msg(), &mut refused) as usize;
                        }
                    }
                }
            }
            Target::All => {
                for (id, member) in &self.sessions {
                    delivered += offer(*id, member, msg(), &mut refused) as usize;
                }
            }
            Target::User(sub) => {
                for (id, member) in &self.sessions {
                    if member.sub == *sub {
                        delivered += offer(*id, member, msg(), &mut refused) as usize;
                    }
                }
            }
        }
        self.drop_refused(refused);
        if delivered > 0 {
            self.metrics
                .fanout_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        delivered
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

    /// Sends what a sequencer released to the room's members.
    fn deliver(&mut self, room: &RoomName, delivery: Delivery) {
        let target = Target::Room(room.clone());
        if delivery.lost {
            let resume = delivery.frames.first().map(|(v, _)| v - 1);
            let resume = resume.or_else(|| self.stream_of(room).and_then(|s| s.delivered()));
            if let Some(version) = resume {
                self.metrics.hub.history_lost.inc();
                log::warn!("{room}: versions up to {version} are no longer kept; members re-fetch");
                self.fan_out(&target, || SessionMsg::Resync {
                    room: room.clone(),
                    version,
                });
            }
        }
        for (version, frame) in delivery.frames {
            self.fan_out(&target, || {
                SessionMsg::Event(Event {
                    target: target.clone(),
                    version: Some(version),
                    frame: frame.clone(),
                })
            });
        }
    }

    fn stream_of(&self, room: &RoomName) -> Option<&Sequencer> {
        self.rooms
            .get(room)
            .and_then(|r| r.stream.as_ref())
            .map(|s| &s.sequencer)
    }

    /// Starts the change-log read the room's sequencer needs, if any.
    fn pump(&mut self, room: &RoomName, ctx: &mut Context<Self>) {
        let Some(stream) = self.rooms.get_mut(room).and_then(|r| r.stream.as_mut()) else {
            return;
        };
        let Some(read) = stream.sequencer.next_read() else {
            return;
        };
        let changelog = self.changelog.clone();
        let key = stream.stream.clone();
        let room = room.clone();
        ctx.spawn(
            async move { changelog.read(key, read).await }
                .into_actor(self)
                .map(move |result, act, ctx| act.read_done(room, read, result, ctx)),
        );
    }

    /// Reads the gap after a short grace, unless it closes by itself meanwhile.
    fn schedule_check(&mut self, room: &RoomName, ctx: &mut Context<Self>) {
        let Some(stream) = self.rooms.get_mut(room).and_then(|r| r.stream.as_mut()) else {
            return;
        };
        if stream.check_scheduled || !stream.sequencer.has_gap() {
            return;
        }
        stream.check_scheduled = true;
        let room = room.clone();
        ctx.run_later(GAP_GRACE, move |act, ctx| {
            if let Some(stream) = act.rooms.get_mut(&room).and_then(|r| r.stream.as_mut()) {
                stream.check_scheduled = false;
                act.pump(&room, ctx);
            }
        });
    }

    fn read_done(
        &mut self,
        room: RoomName,
        read: Read,
        result: Result<Arc<ReadResult>, LogError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(stream) = self.rooms.get_mut(&room).and_then(|r| r.stream.as_mut()) else {
            return; // everyone left meanwhile
        };
        let result = match result {
            Ok(result) => result,
            Err(e) => return self.read_failed(room, e, ctx),
        };
        stream.failing = None;
        self.metrics.hub.gap_reads_ok.inc();
        let delivery = stream.sequencer.read_done(read, ReadResult::clone(&result));
        if read == Read::Head {
            let answer = Ok(Joined {
                version: Some(result.head),
            });
            for waiting in stream.waiting.drain(..) {
                let _ = waiting.send(answer);
            }
        } else {
            self.metrics
                .hub
                .versions_filled
                .inc_by(delivery.frames.len() as u64);
        }
        self.deliver(&room, delivery);
        self.pump(&room, ctx);
    }

    fn read_failed(&mut self, room: RoomName, error: LogError, ctx: &mut Context<Self>) {
        self.metrics.hub.gap_reads_failed.inc();
        let Some(stream) = self.rooms.get_mut(&room).and_then(|r| r.stream.as_mut()) else {
            return;
        };
        stream.sequencer.read_failed();
        if stream.sequencer.delivered().is_none() {
            // Nobody has been served yet: the joins waiting for the head answer
            // `unavailable` now (their clients retry), and each session leaves again.
            log::warn!("{room}: cannot read its head: {error}");
            for waiting in stream.waiting.drain(..) {
                let _ = waiting.send(Err(JoinError::Unavailable));
            }
            return;
        }
        let (since, attempts) = stream.failing.get_or_insert((Instant::now(), 0));
        *attempts += 1;
        let (since, attempts) = (*since, *attempts);
        if since.elapsed() < self.config.recovery_deadline {
            log::warn!("{room}: {error}; retrying");
            let wait = (FIRST_RETRY * 2u32.saturating_pow(attempts.min(8))).min(MAX_RETRY);
            ctx.run_later(wait, move |act, ctx| act.pump(&room, ctx));
            return;
        }
        // Past the deadline the members' sockets close: their clients reconnect and
        // recover with `since` once the database answers again.
        log::error!("{room}: {error} for {since:?}; closing the room's sockets (1013)");
        for waiting in stream.waiting.drain(..) {
            let _ = waiting.send(Err(JoinError::Unavailable));
        }
        stream.failing = None;
        let target = Target::Room(room.clone());
        self.fan_out(&target, || SessionMsg::Unavailable);
        let members: Vec<SessionId> = self
            .rooms
            .get(&room)
            .map(|r| r.members.iter().copied().collect())
            .unwrap_or_default();
        for id in members {
            self.remove_session(id);
        }
    }

    /// Anti-entropy: reads the heads of every versioned room with members in one
    /// batched query, and fills the gaps it finds.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.ticking {
            return;
        }
        let streams: Vec<(RoomName, Stream)> = self
            .rooms
            .iter()
            .filter_map(|(room, r)| {
                let s = r.stream.as_ref()?;
                s.sequencer.delivered()?;
                Some((room.clone(), s.stream.clone()))
            })
            .collect();
        if streams.is_empty() {
            return;
        }
        self.ticking = true;
        self.metrics.hub.anti_entropy_runs.inc();
        let changelog = self.changelog.clone();
        let keys = streams.iter().map(|(_, s)| s.clone()).collect();
        ctx.spawn(
            async move { changelog.heads(keys).await }
                .into_actor(self)
                .map(move |heads, act, ctx| {
                    act.ticking = false;
                    let heads = match heads {
                        Ok(heads) => heads,
                        Err(e) => return log::warn!("anti-entropy: {e}"),
                    };
                    for (room, stream) in streams {
                        let Some(head) = heads.get(&stream) else {
                            continue;
                        };
                        let Some(s) = act.rooms.get_mut(&room).and_then(|r| r.stream.as_mut())
                        else {
                            continue;
                        };
                        s.sequencer.note_head(*head);
                        if s.sequencer.has_gap() {
                            act.metrics.hub.anti_entropy_gaps.inc();
                            act.pump(&room, ctx);
                        }
                    }
                }),
        );
    }
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

impl Actor for RoomRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(REGISTRY_MAILBOX);
        ctx.run_interval(self.config.anti_entropy_interval, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Connect> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        let member = Member {
            sub: msg.sub,
            recipient: msg.recipient,
            rooms: HashSet::new(),
        };
        self.sessions.insert(msg.id, member);
    }
}

impl Handler<Disconnect> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        self.remove_session(msg.id);
    }
}

impl Handler<Join> for RoomRegistry {
    type Result = ResponseFuture<Result<Joined, JoinError>>;

    fn handle(&mut self, Join { id, room }: Join, ctx: &mut Self::Context) -> Self::Result {
        let Some(member) = self.sessions.get_mut(&id) else {
            return Box::pin(async { Err(JoinError::Gone) });
        };
        member.rooms.insert(room.clone());
        let sub = member.sub.clone();
        let entry = self.rooms.entry(room.clone()).or_insert_with(|| Room {
            members: HashSet::new(),
            stream: self.changelog.stream_of(&room).map(|stream| RoomStream {
                stream,
                sequencer: Sequencer::new(self.config.hold),
                waiting: Vec::new(),
                check_scheduled: false,
                failing: None,
            }),
        });
        if entry.members.insert(id) {
            self.metrics.joins.inc();
            let rooms = self.index.join(&room, &sub);
            self.metrics.rooms.set(rooms as i64);
        }
        let Some(stream) = entry.stream.as_mut() else {
            return Box::pin(async { Ok(Joined { version: None }) });
        };
        if let Some(version) = stream.sequencer.delivered() {
            return Box::pin(async move {
                Ok(Joined {
                    version: Some(version),
                })
            });
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
        let Some(member) = self.sessions.get_mut(&msg.id) else {
            return;
        };
        member.rooms.remove(&msg.room);
        let sub = member.sub.clone();
        self.leave_room(msg.id, &sub, &msg.room);
    }
}

impl Handler<Publish> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, Publish(event): Publish, ctx: &mut Self::Context) {
        let (Some(room), Some(version)) = (event.room(), event.version) else {
            let target = event.target.clone();
            self.fan_out(&target, || SessionMsg::Event(event.clone()));
            return;
        };
        let Some(entry) = self.rooms.get_mut(room) else {
            return; // no member here
        };
        let Some(stream) = entry.stream.as_mut() else {
            // Versioned elsewhere (another node's EVENTIDE_HISTORY_ROOMS): pass it on.
            let target = event.target.clone();
            self.fan_out(&target, || SessionMsg::Event(event.clone()));
            return;
        };
        let delivery = stream.sequencer.offer(version, event.frame.clone());
        let room = room.clone();
        self.deliver(&room, delivery);
        self.schedule_check(&room, ctx);
    }
}

impl Handler<Recheck> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, _: Recheck, ctx: &mut Self::Context) {
        self.tick(ctx);
    }
}

impl Handler<DisconnectUser> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, DisconnectUser(sub): DisconnectUser, _: &mut Self::Context) {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, m)| m.sub == sub)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(member) = self.remove_session(id) {
                member.recipient.do_send(SessionMsg::Revoked);
            }
        }
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

impl Handler<Stats> for RoomRegistry {
    type Result = RegistryStats;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> RegistryStats {
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
