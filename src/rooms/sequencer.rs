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
//! This is a plain state machine: the registry shard owns one per versioned room, does
//! the reads it asks for, and fans the frames it releases out to the room's members.

use std::collections::BTreeMap;

use bytestring::ByteString;

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
    /// A change-log read is in flight; no second one starts meanwhile.
    reading: bool,
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
            reading: false,
            limits,
        }
    }

    /// The last version delivered, once the head is known.
    pub fn delivered(&self) -> Option<i64> {
        self.delivered
    }

    /// Versions held while a gap is filled.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether versions are known to be missing (a read will be needed).
    pub fn has_gap(&self) -> bool {
        match self.delivered {
            None => true,
            Some(delivered) => self.known > delivered,
        }
    }

    /// A version arrived: releases what is now in order.
    pub fn offer(&mut self, version: i64, frame: ByteString) -> Delivery {
        self.known = self.known.max(version);
        match self.delivered {
            Some(delivered) if version <= delivered => Delivery::default(),
            Some(delivered) if version == delivered + 1 => {
                let mut frames = vec![(version, frame)];
                self.delivered = Some(version);
                self.drain(&mut frames);
                Delivery {
                    frames,
                    lost: false,
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

    /// The read to start now, if one is needed and none is in flight.
    pub fn next_read(&mut self) -> Option<Read> {
        if self.reading || !self.has_gap() {
            return None;
        }
        self.reading = true;
        Some(match self.delivered {
            None => Read::Head,
            Some(delivered) => Read::After(delivered),
        })
    }

    /// The read started by [`Sequencer::next_read`] failed; a later call retries it.
    pub fn read_failed(&mut self) {
        self.reading = false;
    }

    /// The read started by [`Sequencer::next_read`] answered.
    pub fn read_done(&mut self, read: Read, result: ReadResult) -> Delivery {
        self.reading = false;
        self.known = self.known.max(result.head);
        match (read, self.delivered) {
            (Read::Head, None) => {
                // The stream starts here: what the head covers, members read themselves.
                self.delivered = Some(result.head);
                self.known = self.known.max(result.head);
                self.discard_through(result.head);
                let mut frames = Vec::new();
                self.drain(&mut frames);
                Delivery {
                    frames,
                    lost: false,
                }
            }
            (_, None) => Delivery::default(),
            (_, Some(_)) => self.fill(result),
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

    fn discard_through(&mut self, version: i64) {
        let keep = self.held.split_off(&(version + 1));
        for frame in std::mem::replace(&mut self.held, keep).into_values() {
            self.held_bytes -= frame.len();
        }
    }
}

#[cfg(test)]
mod tests;
