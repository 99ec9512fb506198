//! How a shard hands events and signals to its sessions, and the wave that lets what
//! piles up go out together.
//!
//! An event is written straight into the socket of each member whose session has
//! nothing in progress (see [`super::super::direct`]); the others get it through their
//! inbox. Signals (a resync, a close) always go through the inbox.
//!
//! Events wait in the shard's **wave** until the end of the shard's turn, that is until
//! the messages already in its mailbox are handled. A shard that keeps up finds one
//! event per turn, and it goes out at once. A shard that falls behind finds several,
//! and each member then gets all of its frames of the wave in one system call rather
//! than one each: the hub coalesces exactly when it lags. Anything else the shard does
//! (a join, a leave, a signal, a heartbeat) ends the wave first, so members see events
//! and everything else in the order the shard handled them.

use std::time::Instant;

use actix::prelude::*;

use super::super::direct::Direct;
use super::super::inbox::Refused;
use super::super::messages::*;
use super::{Member, RoomRegistry};

/// Events of one wave at most: past it the wave goes out at once (a gap read can
/// release thousands of versions).
const MAX_WAVE: usize = 256;

/// Events handed over during this turn of the shard, not yet written.
#[derive(Default)]
pub(super) struct Wave {
    events: Vec<Event>,
    /// The end of the turn is scheduled: it writes `events`.
    ending: bool,
}

/// Ends the shard's wave: sent by the shard to itself, it runs after the messages
/// already in the mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct EndOfTurn;

impl Handler<EndOfTurn> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, _: EndOfTurn, _: &mut Self::Context) {
        self.wave.ending = false;
        self.end_wave();
    }
}

impl RoomRegistry {
    /// Adds `event` to the wave, written when the shard's turn ends.
    pub(super) fn send_event(&mut self, event: Event, ctx: &mut Context<Self>) {
        self.wave.events.push(event);
        if self.wave.events.len() >= MAX_WAVE {
            self.end_wave();
        } else if !std::mem::replace(&mut self.wave.ending, true) {
            ctx.notify(EndOfTurn);
        }
    }

    /// Writes the wave: for each run of events with one target, every recipient gets
    /// the whole run at once.
    pub(super) fn end_wave(&mut self) {
        let events = std::mem::take(&mut self.wave.events);
        let mut rest = &events[..];
        while let Some(first) = rest.first() {
            let run = rest.iter().take_while(|e| e.target == first.target).count();
            self.fan_out_events(&rest[..run]);
            rest = &rest[run..];
        }
        // The wave's buffer is kept for the next one.
        self.wave.events = events;
        self.wave.events.clear();
    }

    /// Hands `msg` to every recipient of `target` through its inbox, after the wave.
    pub(super) fn fan_out(&mut self, target: &Target, msg: impl Fn() -> SessionMsg) -> usize {
        self.end_wave();
        self.each_recipient(target, |id, member, refused| {
            offer(id, member, msg(), refused)
        })
    }

    /// Hands `events`, all for one target, to every recipient.
    fn fan_out_events(&mut self, events: &[Event]) {
        let mut written = 0;
        self.each_recipient(&events[0].target, |id, member, refused| {
            hand(id, member, events, refused, &mut written)
        });
        if written > 0 {
            self.metrics.frames_sent.inc_by(written);
        }
    }

    /// Runs `hand` for every recipient of `target`; forgets those it refused.
    fn each_recipient(
        &mut self,
        target: &Target,
        mut hand: impl FnMut(SessionId, &Member, &mut Vec<(SessionId, bool)>) -> bool,
    ) -> usize {
        let started = Instant::now();
        let mut refused = Vec::new();
        let mut delivered = 0;
        match target {
            Target::Room(room) => {
                if let Some(entry) = self.rooms.get(room) {
                    for id in &entry.members {
                        if let Some(member) = self.sessions.get(id) {
                            delivered += hand(*id, member, &mut refused) as usize;
                        }
                    }
                }
            }
            Target::All => {
                for (id, member) in &self.sessions {
                    delivered += hand(*id, member, &mut refused) as usize;
                }
            }
            Target::User(sub) => {
                for (id, member) in &self.sessions {
                    if member.sub == *sub {
                        delivered += hand(*id, member, &mut refused) as usize;
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

    /// Forgets the sessions that refused a message. A full inbox (or a socket queue
    /// at its cap) is a slow consumer: it is evicted and told to close.
    fn drop_refused(&mut self, refused: Vec<(SessionId, bool)>) {
        for (id, slow) in refused {
            if let Some(member) = self.remove_session(id) {
                if slow {
                    self.evicted += 1;
                    log::warn!("session {id} evicted: it cannot keep up (slow consumer)");
                    // One message past capacity, once per eviction: the session is no
                    // longer registered, so nothing else is ever queued for it.
                    member.mailbox.tell(SessionMsg::Evicted);
                }
            }
        }
    }
}

/// Hands `events` to one member: written straight into its socket if its session has
/// nothing in progress (its inbox empty, no join holding the room's events), else
/// offered to its inbox one by one. `written` counts the frames written.
fn hand(
    id: SessionId,
    member: &Member,
    events: &[Event],
    refused: &mut Vec<(SessionId, bool)>,
    written: &mut u64,
) -> bool {
    if let Some(socket) = member.direct.as_ref().filter(|_| member.mailbox.is_idle()) {
        match socket.write(events) {
            Direct::Written { frames, backlogged } => {
                *written += frames as u64;
                return !backlogged || offer(id, member, SessionMsg::Flush, refused);
            }
            Direct::Overflow => {
                refused.push((id, true));
                return false;
            }
            Direct::Declined => {}
        }
    }
    events
        .iter()
        .all(|event| offer(id, member, SessionMsg::Event(event.clone()), refused))
}

/// Offers `msg` to one session without waiting; a session that cannot take it is
/// noted in `refused` (`true`: its inbox is full; `false`: it is gone).
fn offer(
    id: SessionId,
    member: &Member,
    msg: SessionMsg,
    refused: &mut Vec<(SessionId, bool)>,
) -> bool {
    match member.mailbox.offer(msg) {
        Ok(()) => true,
        Err(Refused::Full) => {
            refused.push((id, true));
            false
        }
        Err(Refused::Gone) => {
            refused.push((id, false));
            false
        }
    }
}

#[cfg(test)]
#[path = "fanout_tests.rs"]
mod tests;
