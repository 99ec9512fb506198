//! How a shard delivers its versioned rooms: each room's sequencer, the change-log
//! reads it asks for (after a short grace, retried with backoff, bounded by a
//! deadline), the epoch replacement when a stream moved back, and the heads of the
//! node's anti-entropy tick that find what no message announced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::messages::*;
use super::super::sequencer::{Delivery, Epoch, Read, ReadResult, Sequencer};
use super::super::tail::Tail;
use super::super::RoomName;
use super::RoomRegistry;
use crate::changelog::{LogError, Stream};

/// How long an out-of-order version waits for the versions before it before the gap
/// is read from the change log: events published by two nodes race through Redis.
const GAP_GRACE: Duration = Duration::from_millis(150);
/// The first retry of a failed change-log read; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A versioned room's delivery state on this shard.
pub(super) struct RoomStream {
    pub(super) stream: Stream,
    pub(super) sequencer: Sequencer,
    /// Joins waiting for the head read, answered as soon as it returns.
    pub(super) waiting: Vec<oneshot::Sender<Result<Joined, JoinError>>>,
    /// A delayed gap check is scheduled.
    pub(super) check_scheduled: bool,
    /// Since when reads of this room have been failing, and how many times.
    pub(super) failing: Option<(Instant, u32)>,
    /// The last frames handed to the members, for joins whose `since` is recent:
    /// always a run of consecutive versions ending at what the sequencer delivered,
    /// in its current epoch (emptied when the stream skips or moves back).
    pub(super) tail: Tail,
}

impl RoomStream {
    /// A room whose head is not read yet.
    pub(super) fn new(stream: Stream, sequencer: Sequencer, tail: Tail) -> Self {
        RoomStream {
            stream,
            sequencer,
            tail,
            waiting: Vec::new(),
            check_scheduled: false,
            failing: None,
        }
    }

    /// Answers every join waiting for the stream's start: it starts after `head`, in
    /// `epoch`.
    fn answer_waiting(&mut self, head: i64, epoch: &Epoch) {
        let answer = Ok(Joined {
            version: Some(head),
            epoch: Some(epoch.clone()),
            recent: None,
        });
        for waiting in self.waiting.drain(..) {
            let _ = waiting.send(answer.clone());
        }
    }
}

impl RoomRegistry {
    /// Sends what a sequencer released to the room's members.
    pub(super) fn deliver(&mut self, room: &RoomName, delivery: Delivery, ctx: &mut Context<Self>) {
        let target = Target::Room(room.clone());
        let epoch = self.stream_of(room).and_then(|s| s.epoch().cloned());
        if let Some(fresh) = &delivery.rewound {
            if let Some(version) = self.stream_of(room).and_then(|s| s.delivered()) {
                self.metrics.hub.stream_rewinds.inc();
                log::warn!(
                    "{room}: the stream moved back; it goes on from {version} as epoch {fresh}"
                );
                self.fan_out(&target, || SessionMsg::Resync {
                    room: room.clone(),
                    version,
                    epoch: Some(fresh.clone()),
                });
            }
        }
        if delivery.lost {
            let resume = delivery.frames.first().map(|(v, _)| v - 1);
            let resume = resume.or_else(|| self.stream_of(room).and_then(|s| s.delivered()));
            if let Some(version) = resume {
                self.metrics.hub.history_lost.inc();
                log::warn!("{room}: versions up to {version} are no longer kept; members re-fetch");
                self.fan_out(&target, || SessionMsg::Resync {
                    room: room.clone(),
                    version,
                    epoch: epoch.clone(),
                });
            }
        }
        if let Some(stream) = self.rooms.get_mut(room).and_then(|r| r.stream.as_mut()) {
            if delivery.rewound.is_some() || delivery.lost {
                stream.tail.clear();
            }
            for released in &delivery.frames {
                stream.tail.push(released.clone());
            }
        }
        for (version, frame) in delivery.frames {
            let event = Event {
                target: target.clone(),
                version: Some(version),
                frame,
            };
            self.send_event(event, ctx);
        }
    }

    fn stream_of(&self, room: &RoomName) -> Option<&Sequencer> {
        self.rooms
            .get(room)
            .and_then(|r| r.stream.as_ref())
            .map(|s| &s.sequencer)
    }

    /// Starts the change-log read the room's sequencer needs, if any.
    pub(super) fn pump(&mut self, room: &RoomName, ctx: &mut Context<Self>) {
        let Some(stream) = self.rooms.get_mut(room).and_then(|r| r.stream.as_mut()) else {
            return;
        };
        if let Some(stale) = stream.sequencer.next_rewind() {
            let (changelog, key, room) =
                (self.changelog.clone(), stream.stream.clone(), room.clone());
            ctx.spawn(
                async move { changelog.replace_epoch(key, stale).await }
                    .into_actor(self)
                    .map(move |result, act, ctx| act.rewind_done(room, result, ctx)),
            );
            return;
        }
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
    pub(super) fn schedule_check(&mut self, room: &RoomName, ctx: &mut Context<Self>) {
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
            stream.answer_waiting(result.head, &result.epoch);
        } else {
            self.metrics
                .hub
                .versions_filled
                .inc_by(delivery.frames.len() as u64);
        }
        self.deliver(&room, delivery, ctx);
        self.pump(&room, ctx);
    }

    /// The stream's epoch was replaced (by this node or another): it goes on from the
    /// head under the epoch that won.
    fn rewind_done(
        &mut self,
        room: RoomName,
        result: Result<(i64, Epoch), LogError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(stream) = self.rooms.get_mut(&room).and_then(|r| r.stream.as_mut()) else {
            return;
        };
        let (head, epoch) = match result {
            Ok(position) => position,
            Err(e) => return self.read_failed(room, e, ctx),
        };
        stream.failing = None;
        stream.answer_waiting(head, &epoch);
        let delivery = stream.sequencer.rewound(head, epoch);
        self.deliver(&room, delivery, ctx);
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

    /// Anti-entropy: compares the rooms this shard delivers with the heads the node's
    /// tick read, and settles what differs (a gap, a head below what was delivered,
    /// another epoch) with the reads the sequencers ask for.
    pub(super) fn compare_heads(
        &mut self,
        heads: &HashMap<RoomName, (i64, Epoch)>,
        ctx: &mut Context<Self>,
    ) {
        let mut differ = Vec::new();
        for (room, entry) in &mut self.rooms {
            let Some(s) = entry.stream.as_mut() else {
                continue;
            };
            let Some((head, epoch)) = heads.get(room) else {
                continue;
            };
            if s.sequencer.delivered().is_none() {
                continue; // its head read is in flight
            }
            s.sequencer.note_position(*head, epoch);
            if s.sequencer.has_gap() {
                differ.push(room.clone());
            }
        }
        for room in differ {
            self.metrics.hub.anti_entropy_gaps.inc();
            self.pump(&room, ctx);
        }
    }
}
