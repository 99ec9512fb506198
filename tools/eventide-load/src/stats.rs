//! Pure statistics of the load tool: a latency histogram with percentiles, and the
//! per-subscriber accounting of loss, duplicates and order. No I/O here, so all of it
//! is unit-tested.

/// Values below this are counted exactly; above, in buckets of < 1.6 % relative width.
const EXACT: u64 = 128;
/// Buckets per power of two above [`EXACT`].
const SUB_BUCKETS: u64 = 64;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (EXACT + 58 * SUB_BUCKETS) as usize;

/// A log-linear histogram of non-negative integers (microseconds, typically), in fixed
/// memory: exact below 128, within 1.6 % above.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

fn bucket_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let msb = 63 - u64::from(value.leading_zeros());
    // value >> shift lies in [64, 128): the top 7 bits of value.
    let shift = msb - 6;
    (EXACT + (shift - 1) * SUB_BUCKETS + ((value >> shift) - SUB_BUCKETS)) as usize
}

/// The largest value that falls into `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < EXACT {
        return bucket;
    }
    let shift = (bucket - EXACT) / SUB_BUCKETS + 1;
    let mantissa = (bucket - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
    // ((mantissa + 1) << shift) - 1, without overflowing at the very top.
    (mantissa << shift) + ((1u64 << shift) - 1)
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value, 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value, 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Arithmetic mean, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 100): the smallest recorded value
    /// (up to the bucket width) that at least `p` % of the values do not exceed.
    /// 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = nearest_rank(p, self.count);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The 1-based rank of percentile `p` among `count` sorted values (nearest-rank method).
pub fn nearest_rank(p: f64, count: u64) -> u64 {
    let p = p.clamp(0.0, 100.0);
    ((p / 100.0 * count as f64).ceil() as u64).clamp(1, count.max(1))
}

/// The exact nearest-rank percentile of `sorted` (ascending); `None` when empty.
pub fn exact_percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[nearest_rank(p, sorted.len() as u64) as usize - 1])
}

/// What one received event was, for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First time, after everything before it.
    InOrder,
    /// First time, but a later event had already arrived.
    OutOfOrder,
    /// Seen before.
    Duplicate,
    /// A key outside `1..=capacity`: not an event of this run.
    Unexpected,
}

/// One subscriber's view of one room's stream: which keys (1-based positions in the
/// room's stream: a version above the join version, or a publish sequence number)
/// arrived, in which order, how often.
#[derive(Debug, Clone)]
pub struct OrderTracker {
    seen: Vec<u64>,
    capacity: u64,
    highest: u64,
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    unexpected: u64,
}

impl OrderTracker {
    /// A tracker for keys `1..=capacity`.
    pub fn new(capacity: u64) -> Self {
        OrderTracker {
            seen: vec![0; capacity.div_ceil(64) as usize],
            capacity,
            highest: 0,
            unique: 0,
            duplicates: 0,
            out_of_order: 0,
            unexpected: 0,
        }
    }

    /// Records the arrival of `key`.
    pub fn record(&mut self, key: u64) -> Arrival {
        if key == 0 || key > self.capacity {
            self.unexpected += 1;
            return Arrival::Unexpected;
        }
        let (word, bit) = (((key - 1) / 64) as usize, (key - 1) % 64);
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.seen[word] |= 1 << bit;
        self.unique += 1;
        if key < self.highest {
            self.out_of_order += 1;
            Arrival::OutOfOrder
        } else {
            self.highest = key;
            Arrival::InOrder
        }
    }

    /// Distinct expected keys received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Counts of this subscriber, given that it should have received `expected` keys.
    pub fn tally(&self, expected: u64) -> Tally {
        Tally {
            expected,
            delivered: self.unique,
            lost: expected.saturating_sub(self.unique),
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            unexpected: self.unexpected,
        }
    }
}

/// Delivery counts, per subscriber or summed over many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events that should have arrived.
    pub expected: u64,
    /// Distinct expected events that arrived.
    pub delivered: u64,
    /// Expected events that never arrived.
    pub lost: u64,
    /// Arrivals of an event already received.
    pub duplicates: u64,
    /// First arrivals after a later event of the same stream.
    pub out_of_order: u64,
    /// Arrivals that belong to no expected event.
    pub unexpected: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.unexpected += o.unexpected;
    }
}

/// Per published change: how many subscribers got it and the slowest latency, so the
/// publisher can wait for completion and the report can give "change → last
/// subscriber" latency.
#[derive(Debug, Clone, Default)]
pub struct ChangeBook {
    entries: Vec<Change>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Change {
    room: u32,
    published: bool,
    received: u32,
    slowest: u64,
}

impl ChangeBook {
    /// A book for changes `0..changes`, change `n` going to room `room_of(n)`.
    pub fn new(changes: usize, room_of: impl Fn(usize) -> u32) -> Self {
        ChangeBook {
            entries: (0..changes)
                .map(|n| Change {
                    room: room_of(n),
                    ..Change::default()
                })
                .collect(),
        }
    }

    /// Marks change `n` as accepted by the server.
    pub fn published(&mut self, n: usize) {
        if let Some(c) = self.entries.get_mut(n) {
            c.published = true;
        }
    }

    /// Counts one first arrival of change `n` after `latency`; answers the number of
    /// subscribers that have it now, or `None` for an unknown change.
    pub fn arrived(&mut self, n: usize, latency: u64) -> Option<u32> {
        let c = self.entries.get_mut(n)?;
        c.received += 1;
        c.slowest = c.slowest.max(latency);
        Some(c.received)
    }

    /// The room change `n` went to.
    pub fn room(&self, n: usize) -> Option<u32> {
        self.entries.get(n).map(|c| c.room)
    }

    /// Published changes that reached `audience(room)` subscribers: their slowest
    /// latencies, and how many published changes did not.
    pub fn completion(&self, audience: impl Fn(u32) -> u32) -> (Histogram, u64) {
        let mut slowest = Histogram::default();
        let mut incomplete = 0;
        for c in self.entries.iter().filter(|c| c.published) {
            if c.received >= audience(c.room) {
                slowest.record(c.slowest);
            } else {
                incomplete += 1;
            }
        }
        (slowest, incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.1), 1);
        assert_eq!(h.min(), 1);
        assert_eq!(h.max(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn empty_histogram_is_zero() {
        let h = Histogram::default();
        assert_eq!(h.percentile(99.0), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..1_000_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> {b}");
            assert!(b >= last, "buckets must not decrease");
            assert!(bucket_high(b) >= v, "{v} above its bucket's top");
            if b > 0 {
                assert!(bucket_high(b - 1) < v, "{v} belongs in an earlier bucket");
            }
            last = b;
        }
    }

    #[test]
    fn large_values_within_two_percent_of_exact() {
        // A deterministic spread over five decades.
        let mut values: Vec<u64> = (0..20_000u64)
            .map(|i| (i * 7919 % 20_000 + 1) * (1 + i % 50) * 13)
            .collect();
        let mut h = Histogram::default();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            let exact = exact_percentile(&values, p).unwrap() as f64;
            let approx = h.percentile(p) as f64;
            assert!(
                approx >= exact && approx <= exact * 1.02,
                "p{p}: exact {exact}, histogram {approx}"
            );
        }
        assert_eq!(h.max(), *values.last().unwrap());
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        (1..=50).for_each(|v| a.record(v));
        (51..=100).for_each(|v| b.record(v));
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert_eq!(a.percentile(50.0), 50);
        assert_eq!(a.min(), 1);
        assert_eq!(a.max(), 100);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(exact_percentile(&v, 50.0), Some(5));
        assert_eq!(exact_percentile(&v, 99.0), Some(10));
        assert_eq!(exact_percentile(&v, 10.0), Some(1));
        assert_eq!(exact_percentile(&v, 11.0), Some(2));
        assert_eq!(exact_percentile(&[], 50.0), None);
        assert_eq!(exact_percentile(&[7], 99.9), Some(7));
    }

    #[test]
    fn in_order_stream_is_clean() {
        let mut t = OrderTracker::new(5);
        for k in 1..=5 {
            assert_eq!(t.record(k), Arrival::InOrder);
        }
        assert_eq!(
            t.tally(5),
            Tally {
                expected: 5,
                delivered: 5,
                ..Tally::default()
            }
        );
    }

    #[test]
    fn loss_duplicates_and_reordering_are_told_apart() {
        let mut t = OrderTracker::new(8);
        let arrivals: Vec<Arrival> = [1, 2, 4, 3, 3, 6, 9, 0, 8]
            .into_iter()
            .map(|k| t.record(k))
            .collect();
        use Arrival::*;
        assert_eq!(
            arrivals,
            [
                InOrder, InOrder, InOrder, OutOfOrder, Duplicate, InOrder, Unexpected, Unexpected,
                InOrder
            ]
        );
        // 5 and 7 never came.
        assert_eq!(
            t.tally(8),
            Tally {
                expected: 8,
                delivered: 6,
                lost: 2,
                duplicates: 1,
                out_of_order: 1,
                unexpected: 2,
            }
        );
    }

    #[test]
    fn a_duplicate_of_an_old_key_is_not_reordering() {
        let mut t = OrderTracker::new(130);
        for k in 1..=130 {
            t.record(k);
        }
        assert_eq!(t.record(64), Arrival::Duplicate);
        assert_eq!(t.record(65), Arrival::Duplicate);
        assert_eq!(t.record(130), Arrival::Duplicate);
        let tally = t.tally(130);
        assert_eq!(
            (tally.duplicates, tally.out_of_order, tally.lost),
            (3, 0, 0)
        );
    }

    #[test]
    fn tallies_sum() {
        let mut sum = Tally::default();
        sum += Tally {
            expected: 3,
            delivered: 2,
            lost: 1,
            ..Tally::default()
        };
        sum += Tally {
            expected: 3,
            delivered: 3,
            duplicates: 4,
            ..Tally::default()
        };
        assert_eq!((sum.expected, sum.delivered, sum.lost), (6, 5, 1));
        assert_eq!(sum.duplicates, 4);
    }

    #[test]
    fn change_book_tracks_the_last_subscriber() {
        // Changes 0..4 round-robin over rooms 0 and 1; room 0 has 2 subscribers,
        // room 1 has 3.
        let mut book = ChangeBook::new(4, |n| (n % 2) as u32);
        let audience = |room: u32| if room == 0 { 2 } else { 3 };
        for n in 0..4 {
            book.published(n);
        }
        assert_eq!(book.arrived(0, 10), Some(1));
        assert_eq!(book.arrived(0, 30), Some(2));
        for lat in [5, 50, 20] {
            book.arrived(1, lat);
        }
        book.arrived(2, 7);
        book.arrived(3, 1);
        assert_eq!(book.arrived(9, 1), None);
        assert_eq!(book.room(3), Some(1));
        let (slowest, incomplete) = book.completion(audience);
        assert_eq!(incomplete, 2);
        assert_eq!(slowest.count(), 2);
        assert_eq!(slowest.max(), 50);
        assert_eq!(slowest.min(), 30);
    }

    #[test]
    fn unpublished_changes_are_not_counted() {
        let mut book = ChangeBook::new(2, |_| 0);
        book.published(0);
        book.arrived(0, 3);
        let (slowest, incomplete) = book.completion(|_| 1);
        assert_eq!((slowest.count(), incomplete), (1, 0));
    }
}
