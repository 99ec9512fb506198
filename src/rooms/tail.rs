//! The tail of a versioned room: the frames a shard delivered last, kept in memory so
//! that a client rejoining with a `since` inside it is answered without reading the
//! change log.
//!
//! Reconnect storms are the reason: a thousand clients that dropped together rejoin
//! with positions a few versions behind the head, and each of them would otherwise be
//! a change-log read queued behind the few read permits. The tail holds exactly the
//! frames the sequencer released, which are the bytes the change log stores for those
//! versions (every path into the sequencer carries the stored frame), so a replay from
//! the tail and one from the database are the same bytes.
//!
//! Memory is bounded twice: per room ([`Tail`] trims its oldest frames past its own
//! cap) and per node (a [`TailBudget`] that every tail of every shard draws from; a
//! tail that cannot get room gives up its oldest frames, then keeps none until the
//! others give some back). A frame's bytes are shared with the change-log read or
//! the event that brought them, so the budget counts bytes that would otherwise be
//! freed, not copies.
//! A plain state machine: the registry shard owns one tail per versioned room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::sequencer::Versioned;

/// The frame bytes all tails of the node may hold together, shared by its shards.
#[derive(Debug, Clone)]
pub struct TailBudget {
    inner: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    /// Bytes held by every tail drawing from this budget. Never above `max`.
    used: AtomicUsize,
    max: usize,
}

impl TailBudget {
    /// A budget of `max` bytes (0 keeps no tail at all).
    pub fn new(max: usize) -> Self {
        TailBudget {
            inner: Arc::new(Budget {
                used: AtomicUsize::new(0),
                max,
            }),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        let max = self.inner.max;
        self.inner
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (max - used >= bytes).then_some(used + bytes)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The most recent frames of one room, consecutive and in order.
#[derive(Debug)]
pub struct Tail {
    /// Frames of consecutive versions, oldest first: `frames[i].0 == frames[0].0 + i`.
    /// A frame that does not follow the last one starts the tail afresh, so a gap (a
    /// skipped range, a stream that moved back) never sits inside it.
    frames: VecDeque<Versioned>,
    /// Bytes of `frames`, all drawn from `budget` (and given back when the tail is
    /// dropped). Never above `max_bytes`.
    bytes: usize,
    max_bytes: usize,
    budget: TailBudget,
}

impl Tail {
    /// An empty tail that keeps at most `max_bytes` of frames, drawn from `budget`.
    pub fn new(max_bytes: usize, budget: &TailBudget) -> Self {
        Tail {
            frames: VecDeque::new(),
            bytes: 0,
            max_bytes,
            budget: budget.clone(),
        }
    }

    /// Frames kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Keeps a frame the sequencer just released.
    pub fn push(&mut self, (version, frame): Versioned) {
        let follows = self
            .frames
            .back()
            .is_none_or(|(last, _)| version == last + 1);
        if !follows {
            self.clear();
        }
        let size = frame.len();
        if size > self.max_bytes {
            // Too big to keep: what is kept would no longer reach the head.
            self.clear();
            return;
        }
        while self.bytes + size > self.max_bytes || !self.budget.take(size) {
            let Some((_, oldest)) = self.frames.pop_front() else {
                // The node's other tails hold the whole budget: keep nothing here.
                return;
            };
            self.bytes -= oldest.len();
            self.budget.give_back(oldest.len());
        }
        self.bytes += size;
        self.frames.push_back((version, frame));
    }

    /// The frames of versions `after + 1 ..= upto`, if the tail holds every one of
    /// them; `None` when part of that range is not kept (the change log has it).
    pub fn between(&self, after: i64, upto: i64) -> Option<Vec<Versioned>> {
        if after >= upto {
            return (after == upto).then(Vec::new);
        }
        let (first, _) = self.frames.front()?;
        let (last, _) = self.frames.back()?;
        if after + 1 < *first || upto > *last {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        let take = usize::try_from(upto - after).ok()?;
        Some(self.frames.iter().skip(skip).take(take).cloned().collect())
    }

    /// Forgets every frame (the stream was reset), returning their bytes to the budget.
    pub fn clear(&mut self) {
        self.budget.give_back(self.bytes);
        self.bytes = 0;
        self.frames.clear();
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use bytestring::ByteString;

    use super::*;

    fn frame(version: i64, len: usize) -> Versioned {
        let body = format!("{version:0>width$}", width = len);
        (version, ByteString::from(body))
    }

    fn versions(frames: &[Versioned]) -> Vec<i64> {
        frames.iter().map(|(v, _)| *v).collect()
    }

    #[test]
    fn answers_a_range_inside_it_and_nothing_else() {
        let budget = TailBudget::new(1_000);
        let mut tail = Tail::new(1_000, &budget);
        for v in 5..=9 {
            tail.push(frame(v, 10));
        }
        assert_eq!(versions(&tail.between(4, 9).unwrap()), vec![5, 6, 7, 8, 9]);
        assert_eq!(versions(&tail.between(6, 8).unwrap()), vec![7, 8]);
        assert_eq!(tail.between(9, 9), Some(Vec::new()));
        assert_eq!(tail.between(3, 9), None, "version 4 is not kept");
        assert_eq!(tail.between(5, 10), None, "version 10 was never seen");
        assert_eq!(tail.between(9, 8), None, "a position past the shard's");
    }

    #[test]
    fn returns_the_same_bytes_it_was_given() {
        let budget = TailBudget::new(1_000);
        let mut tail = Tail::new(1_000, &budget);
        let given = frame(1, 30);
        tail.push(given.clone());
        assert_eq!(tail.between(0, 1).unwrap(), vec![given]);
    }

    #[test]
    fn a_frame_that_does_not_follow_starts_it_afresh() {
        let budget = TailBudget::new(1_000);
        let mut tail = Tail::new(1_000, &budget);
        for v in 1..=3 {
            tail.push(frame(v, 10));
        }
        tail.push(frame(7, 10)); // a skipped range
        assert_eq!(tail.between(0, 3), None);
        assert_eq!(versions(&tail.between(6, 7).unwrap()), vec![7]);
        tail.push(frame(2, 10)); // the stream moved back
        assert_eq!(tail.len(), 1);
        assert_eq!(tail.between(6, 7), None);
        assert_eq!(budget.used(), 10);
    }

    #[test]
    fn trims_its_oldest_frames_past_its_own_cap() {
        let budget = TailBudget::new(10_000);
        let mut tail = Tail::new(35, &budget);
        for v in 1..=10 {
            tail.push(frame(v, 10));
        }
        assert_eq!(tail.len(), 3);
        assert_eq!(versions(&tail.between(7, 10).unwrap()), vec![8, 9, 10]);
        assert_eq!(budget.used(), 30);
    }

    #[test]
    fn the_node_budget_bounds_every_tail_together() {
        let budget = TailBudget::new(50);
        let mut busy = Tail::new(1_000, &budget);
        let mut quiet = Tail::new(1_000, &budget);
        for v in 1..=4 {
            quiet.push(frame(v, 10));
        }
        for v in 1..=5 {
            busy.push(frame(v, 10));
        }
        assert_eq!(budget.used(), 50);
        assert_eq!(busy.len(), 1, "it keeps what the budget leaves");
        drop(quiet);
        busy.push(frame(6, 10));
        busy.push(frame(7, 10));
        assert_eq!(versions(&busy.between(4, 7).unwrap()), vec![5, 6, 7]);
        assert!(budget.used() <= 50);
    }

    #[test]
    fn a_frame_larger_than_the_cap_empties_it() {
        let budget = TailBudget::new(1_000);
        let mut tail = Tail::new(50, &budget);
        tail.push(frame(1, 10));
        tail.push(frame(2, 60));
        assert!(tail.is_empty());
        assert_eq!(budget.used(), 0);
        tail.push(frame(3, 10));
        assert_eq!(versions(&tail.between(2, 3).unwrap()), vec![3]);
    }

    #[test]
    fn a_budget_of_nothing_keeps_nothing() {
        let budget = TailBudget::new(0);
        let mut tail = Tail::new(1_000, &budget);
        tail.push(frame(1, 10));
        assert!(tail.is_empty());
        assert_eq!(tail.between(0, 1), None);
    }
}
