//! Pure accounting of the `cluster` scenario: what one subscriber received of one
//! versioned room (live and replayed after reconnects, in arrival order) against the
//! versions the room really has, and how long after a fault every subscriber held
//! every version committed before it. No I/O here, so all of it is unit-tested.

/// What one subscriber got of one room, in the order it arrived.
#[derive(Debug, Clone, Default)]
pub struct RoomTrack {
    /// The room's version when the subscriber first joined: it expects `base+1..=last`.
    pub base: u64,
    /// Every version as it arrived, repeats included.
    pub arrivals: Vec<u64>,
    /// First receipt time (µs since the epoch, 0 = never) of version `base + 1 + i`.
    pub first_seen: Vec<u64>,
    /// The highest version received.
    pub max_seen: u64,
    /// Every version up to this one has been received.
    pub contiguous: u64,
}

impl RoomTrack {
    /// A track for a room first joined at `base`.
    pub fn new(base: u64) -> Self {
        RoomTrack {
            base,
            max_seen: base,
            contiguous: base,
            ..RoomTrack::default()
        }
    }

    /// Records version `v` arriving at `now`; answers whether it is new.
    pub fn record(&mut self, v: u64, now: u64) -> bool {
        self.arrivals.push(v);
        self.max_seen = self.max_seen.max(v);
        if v <= self.base {
            return false;
        }
        let i = (v - self.base - 1) as usize;
        if i >= self.first_seen.len() {
            self.first_seen.resize(i + 1, 0);
        }
        if self.first_seen[i] != 0 {
            return false;
        }
        self.first_seen[i] = now.max(1);
        while self
            .first_seen
            .get((self.contiguous - self.base) as usize)
            .is_some_and(|&t| t != 0)
        {
            self.contiguous += 1;
        }
        true
    }

    /// When every version up to `target` had arrived: `Some(0)` if nothing was due,
    /// `None` if one never did.
    pub fn held_at(&self, target: u64) -> Option<u64> {
        if target <= self.base {
            return Some(0);
        }
        let due = (target - self.base) as usize;
        if self.first_seen.len() < due {
            return None;
        }
        self.first_seen[..due]
            .iter()
            .try_fold(0, |acc, &t| (t != 0).then_some(acc.max(t)))
    }
}

/// The verdict on one room's arrivals against `base+1..=last`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// Versions due.
    pub expected: u64,
    /// Distinct due versions received.
    pub received: u64,
    /// Due versions never received.
    pub lost: Vec<u64>,
    /// Versions received again after their first arrival.
    pub duplicated: Vec<u64>,
    /// Versions that arrived first after a higher one.
    pub reordered: Vec<u64>,
    /// Versions outside `base+1..=last`.
    pub unexpected: Vec<u64>,
}

impl Check {
    /// Nothing lost, repeated, out of order or unexpected.
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.reordered.is_empty()
            && self.unexpected.is_empty()
    }
}

/// Checks that `arrivals` are exactly `base+1..=last`, each once, in order.
pub fn check(arrivals: &[u64], base: u64, last: u64) -> Check {
    let expected = last.saturating_sub(base);
    let mut seen = vec![false; expected as usize];
    let mut out = Check {
        expected,
        ..Check::default()
    };
    let mut highest = base;
    for &v in arrivals {
        if v <= base || v > last {
            out.unexpected.push(v);
            continue;
        }
        let slot = &mut seen[(v - base - 1) as usize];
        if *slot {
            out.duplicated.push(v);
            continue;
        }
        *slot = true;
        out.received += 1;
        if v < highest {
            out.reordered.push(v);
        }
        highest = highest.max(v);
    }
    out.lost = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| base + 1 + i as u64)
        .collect();
    out
}

/// One subscriber's view of one room for the convergence after a fault.
pub struct Holder<'a> {
    /// Its arrivals.
    pub track: &'a RoomTrack,
    /// Which room (index into the fault's targets).
    pub room: usize,
    /// When its socket was down: `(closed, rejoined)` in µs, rejoined 0 = never.
    pub down: &'a [(u64, u64)],
}

/// Convergence after one fault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Convergence {
    /// Time from the fault's end until every holder had every due version (µs).
    pub all_us: u64,
    /// The same over the holders whose socket stayed open meanwhile.
    pub connected_us: u64,
    /// Holders that never got every due version.
    pub never: u64,
    /// Holders left out of `connected_us` (their socket was down meanwhile).
    pub reconnected: u64,
}

/// How long after `end` (µs) every holder had every version up to `targets[room]`.
pub fn convergence(end: u64, targets: &[u64], holders: &[Holder<'_>]) -> Convergence {
    let mut out = Convergence::default();
    for h in holders {
        let Some(at) = h.track.held_at(targets[h.room]) else {
            out.never += 1;
            continue;
        };
        let took = at.saturating_sub(end);
        out.all_us = out.all_us.max(took);
        let until = end + took;
        let was_down = h
            .down
            .iter()
            .any(|&(closed, back)| closed <= until && (back == 0 || back >= end));
        if was_down {
            out.reconnected += 1;
        } else {
            out.connected_us = out.connected_us.max(took);
        }
    }
    out
}

/// The slowest first arrival, on a socket that stayed open, of the versions whose
/// change was due in `[from, to]` (µs): how long the changes made during and just
/// after a fault took. `due(room, version)` is a version's due time, if known.
/// Answers `(slowest µs, arrivals counted)`.
pub fn slowest_arrival(
    holders: &[Holder<'_>],
    due: impl Fn(usize, u64) -> Option<u64>,
    from: u64,
    to: u64,
) -> (u64, u64) {
    let (mut slowest, mut counted) = (0, 0);
    for h in holders {
        for (i, &seen) in h.track.first_seen.iter().enumerate() {
            let v = h.track.base + 1 + i as u64;
            let Some(d) = due(h.room, v).filter(|d| (from..=to).contains(d)) else {
                continue;
            };
            if seen == 0 || h.down.iter().any(|&(c, b)| c <= seen && (b == 0 || b >= d)) {
                continue;
            }
            slowest = slowest.max(seen.saturating_sub(d));
            counted += 1;
        }
    }
    (slowest, counted)
}

/// A reproducible number in `[0, 1)` for `seed` (splitmix64), for the drop schedule.
pub fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_ordered_stream_is_clean() {
        let c = check(&[1, 2, 3, 4], 0, 4);
        assert!(c.clean());
        assert_eq!((c.expected, c.received), (4, 4));
        assert!(check(&[], 5, 5).clean());
        assert!(check(&[6, 7], 5, 7).clean());
    }

    #[test]
    fn loss_repeats_order_and_strangers_are_named() {
        let c = check(&[1, 3, 2, 3, 9, 0, 5], 0, 6);
        assert_eq!(c.lost, [4, 6]);
        assert_eq!(c.duplicated, [3]);
        assert_eq!(c.reordered, [2]);
        assert_eq!(c.unexpected, [9, 0]);
        assert_eq!(c.received, 4);
        assert!(!c.clean());
    }

    #[test]
    fn a_replay_that_overlaps_the_live_stream_is_a_duplicate() {
        // Live 1..3, socket dropped, rejoined with since=2 by mistake: 3 again.
        let c = check(&[1, 2, 3, 3, 4], 0, 4);
        assert_eq!(c.duplicated, [3]);
        assert!(c.lost.is_empty() && c.reordered.is_empty());
    }

    #[test]
    fn tracks_follow_the_contiguous_prefix() {
        let mut t = RoomTrack::new(10);
        assert!(t.record(11, 100));
        assert!(t.record(13, 300));
        assert_eq!(t.contiguous, 11);
        assert!(!t.record(13, 400));
        assert!(!t.record(10, 400));
        assert!(t.record(12, 500));
        assert_eq!((t.contiguous, t.max_seen), (13, 13));
        assert_eq!(t.held_at(10), Some(0));
        assert_eq!(t.held_at(11), Some(100));
        assert_eq!(t.held_at(13), Some(500));
        assert_eq!(t.held_at(14), None);
        assert_eq!(t.arrivals, [11, 13, 13, 10, 12]);
    }

    #[test]
    fn convergence_is_the_slowest_holder_and_separates_reconnects() {
        let mut fast = RoomTrack::new(0);
        fast.record(1, 1_000);
        fast.record(2, 1_200);
        let mut slow = RoomTrack::new(0);
        slow.record(1, 1_000);
        slow.record(2, 4_000);
        let mut missing = RoomTrack::new(0);
        missing.record(2, 1_100);
        let down = [(900, 3_900)];
        let holders = [
            Holder {
                track: &fast,
                room: 0,
                down: &[],
            },
            Holder {
                track: &slow,
                room: 0,
                down: &down,
            },
            Holder {
                track: &missing,
                room: 1,
                down: &[],
            },
        ];
        let c = convergence(1_100, &[2, 2], &holders);
        assert_eq!(
            c,
            Convergence {
                all_us: 2_900,
                connected_us: 100,
                never: 1,
                reconnected: 1
            }
        );
        // Nothing was due in room 1: the holder missing version 1 is not counted.
        let c = convergence(1_100, &[2, 0], &holders);
        assert_eq!(c.never, 0);
        // A drop that ended before the fault does not count as down meanwhile.
        let early = [(100, 200)];
        let h = [Holder {
            track: &slow,
            room: 0,
            down: &early,
        }];
        assert_eq!(convergence(1_100, &[2], &h).connected_us, 2_900);
    }

    #[test]
    fn slowest_arrival_skips_reconnected_sockets_and_other_times() {
        let mut open = RoomTrack::new(0);
        open.record(1, 1_500);
        open.record(2, 5_000);
        open.record(3, 9_000);
        let mut dropped = RoomTrack::new(0);
        dropped.record(2, 20_000);
        let down = [(3_000, 19_000)];
        let holders = [
            Holder {
                track: &open,
                room: 0,
                down: &[],
            },
            Holder {
                track: &dropped,
                room: 0,
                down: &down,
            },
        ];
        // Version v was due at v * 1000.
        let due = |_: usize, v: u64| Some(v * 1_000);
        assert_eq!(slowest_arrival(&holders, due, 1_000, 2_000), (3_000, 2));
        assert_eq!(slowest_arrival(&holders, due, 0, 10_000), (6_000, 3));
        assert_eq!(slowest_arrival(&holders, |_, _| None, 0, 10_000), (0, 0));
    }

    #[test]
    fn units_spread_over_the_interval() {
        let xs: Vec<f64> = (0..1000).map(unit).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
        assert_eq!(unit(7), unit(7));
    }
}
