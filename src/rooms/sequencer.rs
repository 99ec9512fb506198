//! The room sequencer: turns versions that arrive in any order, any number of times,
//! from any path (this node's commits, Redis, the anti-entropy tick, a change-log
//! read) into one stream that delivers each version of a room once, in order.
//!
//! The change log in the database is the truth. The sequencer never skips a version it
//! has not seen: a version ahead of the next expected one is held, and the caller is
//! asked to read the missing range from the change log ([`Sequencer::next_read`]).
//! Only a range the change log no longer keeps (older than the history bound) is
//! skipped, and then the members are told to re-fetch ([`Delivery::lost`]).
//!
//! A stream can also move back: a database restored from a backup, or a failover to a
//! replica that lacked the last commits, leaves the head below what was delivered, and
//! new commits reuse the old numbers. Each stream therefore has an *epoch*, stored with
//! its head. A head below what was delivered under the same epoch asks the caller to
//! replace the epoch in the database ([`Sequencer::next_rewind`]); a read that finds
//! another epoch restarts the stream at the head read ([`Delivery::rewound`]), and the
//! members are told to re-fetch. Versions at or below what was delivered are dropped,
//! but each such arrival asks for one read, so a rewind is found at the next commit
//! and not only by the anti-entropy tick.
//!
//! This is a plain state machine: the registry shard owns one per versioned room, does
//! the reads it asks for, and fans the frames it releases out to the room's members.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytestring::ByteString;

/// The identity of a room's stream: it changes whenever the stream's history is lost
/// or moves back, so that a version of one epoch is never taken for the same version of
/// another. Empty for a stream with no change yet (its epoch is made with its first).
pub type Epoch = Arc<str>;

/// A versioned frame: `(version, frame)`.
pub type Versioned = (i64, ByteString);

/// What the sequencer asks the change log for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    /// The room's current head, to know where the stream starts on this node.
    Head,
    /// Every kept change after `after` (the caller reads up to the current head).
    After(i64),
}

/// What a change-log read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// The room's version when the read ran.
    pub head: i64,
    /// The stream's epoch when the read ran.
    pub epoch: Epoch,
    /// The kept changes after the asked version, in version order.
    pub frames: Vec<Versioned>,
}

/// Frames released by a step, in order, and whether a range had to be skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Frames to hand to every member, in version order.
    pub frames: Vec<Versioned>,
    /// Versions were skipped because the change log no longer keeps them: members
    /// must re-fetch the room's state.
    pub lost: bool,
    /// The stream restarted under this epoch at a head below what was delivered (or
    /// another node restarted it): members must re-fetch the room's state. `frames`
    /// then follow the new head.
    pub rewound: Option<Epoch>,
}

/// Bounds of what a sequencer holds while it waits for a gap to be read.
#[derive(Debug, Clone, Copy)]
pub struct HoldLimits {
    /// Versions held at most.
    pub count: usize,
    /// Frame bytes held at most.
    pub bytes: usize,
}

/// The delivery state of one room on one node.
#[derive(Debug)]
pub struct Sequencer {
    /// The last version handed to the members; `None` until the head has been read.
    /// Every version after it is delivered exactly once, in order, or the room is
    /// marked lost.
    delivered: Option<i64>,
    /// Versions after `delivered + 1` waiting for the gap before them. Never holds
    /// `delivered + 1` (that one is released at once) nor anything at or below
    /// `delivered`. Bounded by `limits`: past them the highest versions are dropped,
    /// to be read again from the change log.
    held: BTreeMap<i64, ByteString>,
    held_bytes: usize,
    /// The highest version known to exist, from any path. `known > delivered` means a
    /// gap to fill.
    known: i64,
    /// The epoch `delivered` belongs to; `None` until the head has been read.
    epoch: Option<Epoch>,
    /// A version at or below `delivered` arrived, or the tick saw a lower head or
    /// another epoch: one read must confirm where the stream stands.
    suspect: bool,
    /// The last read found the head below `delivered` under the same epoch: the
    /// caller must replace that epoch in the database before anything else.
    stale: bool,
    /// A change-log read (or an epoch replacement) is in flight; no second one starts
    /// meanwhile.
    reading: bool,
    /// `delivered` and `known` when the read in flight was asked for. Versions keep
    /// arriving while it runs, so its head is compared with what was committed when
    /// it started, never with what was delivered since.
    asked: (i64, i64),
    limits: HoldLimits,
}

impl Sequencer {
    /// A sequencer that does not yet know where the room's stream stands.
    pub fn new(limits: HoldLimits) -> Self {
        Sequencer {
            delivered: None,
            held: BTreeMap::new(),
            held_bytes: 0,
            known: 0,
            epoch: None,
            suspect: false,
            stale: false,
            reading: false,
            asked: (0, 0),
            limits,
        }
    }

    /// The last version delivered, once the head is known.
    pub fn delivered(&self) -> Option<i64> {
        self.delivered
    }

    /// The epoch of the delivered versions, once the head is known.
    pub fn epoch(&self) -> Option<&Epoch> {
        self.epoch.as_ref()
    }

    /// Whether the stream was found below what was delivered, and waits for its epoch
    /// to be replaced ([`Sequencer::next_rewind`]).
    pub fn moving_back(&self) -> bool {
        self.stale
    }

    /// Versions held while a gap is filled.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether versions are known to be missing (a read will be needed).
    pub fn has_gap(&self) -> bool {
        match self.delivered {
            None => true,
            Some(delivered) => self.known > delivered || self.suspect,
        }
    }

    /// A version arrived: releases what is now in order.
    pub fn offer(&mut self, version: i64, frame: ByteString) -> Delivery {
        self.known = self.known.max(version);
        match self.delivered {
            Some(_) if self.stale => Delivery::default(), // read again after the rewind
            Some(delivered) if version <= delivered => {
                // A duplicate, or a commit reusing a number after the stream moved back.
                self.suspect = true;
                Delivery::default()
            }
            Some(delivered) if version == delivered + 1 => {
                let mut frames = vec![(version, frame)];
                self.delivered = Some(version);
                self.drain(&mut frames);
                // The stream's first change made its epoch: one read learns it.
                self.suspect |= self.epoch.as_deref() == Some("");
                Delivery {
                    frames,
                    ..Delivery::default()
                }
            }
            _ => {
                self.hold(version, frame);
                Delivery::default()
            }
        }
    }

    /// The room's head is at least `head` (the anti-entropy tick read it).
    pub fn note_head(&mut self, head: i64) {
        self.known = self.known.max(head);
    }

    /// The anti-entropy tick read the room's head and epoch: a head below what was
    /// delivered, or another epoch, asks for a read that settles it.
    pub fn note_position(&mut self, head: i64, epoch: &Epoch) {
        let (Some(delivered), Some(ours)) = (self.delivered, &self.epoch) else {
            return self.note_head(head);
        };
        if head < delivered || (ours != epoch && !ours.is_empty()) {
            self.suspect = true;
        } else {
            self.note_head(head);
        }
    }

    /// The read to start now, if one is needed and none is in flight.
    pub fn next_read(&mut self) -> Option<Read> {
        if self.reading || self.stale || !self.has_gap() {
            return None;
        }
        self.reading = true;
        self.suspect = false;
        self.asked = (self.delivered.unwrap_or(0), self.known);
        Some(match self.delivered {
            None => Read::Head,
            Some(delivered) => Read::After(delivered),
        })
    }

    /// The epoch to replace in the database now (the stream moved back under it), if
    /// that is needed and nothing is in flight. Answer with [`Sequencer::rewound`].
    pub fn next_rewind(&mut self) -> Option<Epoch> {
        if self.reading || !self.stale {
            return None;
        }
        self.reading = true;
        self.epoch.clone()
    }

    /// The read started by [`Sequencer::next_read`] (or the replacement started by
    /// [`Sequencer::next_rewind`]) failed; a later call retries it.
    pub fn read_failed(&mut self) {
        self.reading = false;
    }

    /// The epoch was replaced: the stream stands at `head` under `epoch` (whichever
    /// node's replacement won).
    pub fn rewound(&mut self, head: i64, epoch: Epoch) -> Delivery {
        self.reading = false;
        self.stale = false;
        self.restart(head, epoch)
    }

    /// The read started by [`Sequencer::next_read`] answered.
    pub fn read_done(&mut self, read: Read, result: ReadResult) -> Delivery {
        self.reading = false;
        let Some(delivered) = self.delivered else {
            if read != Read::Head {
                return Delivery::default();
            }
            // The stream starts here: what the head covers, members read themselves.
            self.known = self.known.max(result.head);
            self.delivered = Some(result.head);
            self.epoch = Some(result.epoch);
            self.discard_through(result.head);
            let mut frames = Vec::new();
            self.drain(&mut frames);
            return Delivery {
                frames,
                ..Delivery::default()
            };
        };
        let (delivered_when_asked, known_when_asked) = self.asked;
        let ours = self.epoch.clone().unwrap_or_default();
        if ours != result.epoch {
            if ours.is_empty() && result.head >= delivered_when_asked {
                // The stream's first change made its epoch: the same stream.
                self.epoch = Some(result.epoch.clone());
            } else {
                // Another node found the stream moved back and restarted it.
                return self.restart(result.head, result.epoch);
            }
        }
        if result.head < delivered_when_asked {
            // Below what was delivered (so committed) before the read began: moved
            // back under the same epoch. The caller replaces the epoch first.
            self.stale = true;
            self.known = result.head;
            self.clear_held();
            return Delivery::default();
        }
        if result.head < known_when_asked {
            // Versions announced before the read began are not in the database (they
            // were lost with a failover): forget them rather than wait for them
            // forever. What arrived since is kept.
            let beyond = self.held.split_off(&(result.head + 1));
            let (lost, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = beyond
                .into_iter()
                .partition(|(v, _)| *v <= known_when_asked);
            self.held_bytes -= lost.values().map(|f| f.len()).sum::<usize>();
            self.held.extend(kept);
            let newest_held = self.held.last_key_value().map_or(0, |(v, _)| *v);
            self.known = result.head.max(delivered).max(newest_held);
        }
        self.known = self.known.max(result.head);
        self.fill(result)
    }

    /// Starts the stream again at `head` under `epoch`, dropping whatever was held.
    fn restart(&mut self, head: i64, epoch: Epoch) -> Delivery {
        self.clear_held();
        self.delivered = Some(head);
        self.known = head;
        self.epoch = Some(epoch.clone());
        // Commits reusing numbers may have been dropped as duplicates meanwhile: one
        // more read brings them.
        self.suspect = true;
        Delivery {
            rewound: Some(epoch),
            ..Delivery::default()
        }
    }

    /// Delivers the frames of a gap read, skipping what the change log lost.
    fn fill(&mut self, result: ReadResult) -> Delivery {
        let mut out = Delivery::default();
        for (version, frame) in result.frames {
            let delivered = self.delivered.expect("fill runs once the head is known");
            if version <= delivered {
                continue;
            }
            if version > delivered + 1 {
                // The change log no longer keeps (delivered, version): skip it, loudly.
                out.lost = true;
                self.discard_through(version - 1);
            }
            self.delivered = Some(version);
            self.held_bytes -= self.held.remove(&version).map_or(0, |f| f.len());
            out.frames.push((version, frame));
            self.drain(&mut out.frames);
        }
        let delivered = self.delivered.expect("known");
        if out.frames.is_empty() && result.head > delivered {
            // The log keeps nothing after `delivered` although the head is past it:
            // that whole range is gone. Start again from the head.
            out.lost = true;
            self.delivered = Some(result.head);
            self.discard_through(result.head);
            self.drain(&mut out.frames);
        }
        out
    }

    fn hold(&mut self, version: i64, frame: ByteString) {
        if self.held.contains_key(&version) {
            return;
        }
        self.held_bytes += frame.len();
        self.held.insert(version, frame);
        while self.held.len() > self.limits.count || self.held_bytes > self.limits.bytes {
            // The highest versions are the cheapest to lose: the gap read brings them.
            let (_, dropped) = self.held.pop_last().expect("over the limit, so not empty");
            self.held_bytes -= dropped.len();
        }
    }

    /// Moves every held version that now follows `delivered` into `frames`.
    fn drain(&mut self, frames: &mut Vec<Versioned>) {
        let Some(mut delivered) = self.delivered else {
            return;
        };
        while let Some(frame) = self.held.remove(&(delivered + 1)) {
            self.held_bytes -= frame.len();
            delivered += 1;
            frames.push((delivered, frame));
        }
        self.delivered = Some(delivered);
    }

    fn clear_held(&mut self) {
        self.held.clear();
        self.held_bytes = 0;
    }

    fn discard_through(&mut self, version: i64) {
        let keep = self.held.split_off(&(version + 1));
        for frame in std::mem::replace(&mut self.held, keep).into_values() {
            self.held_bytes -= frame.len();
        }
    }
}

#[cfg(test)]
mod rewind_tests;
#[cfg(test)]
mod tests;
