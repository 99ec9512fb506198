use proptest::prelude::*;

use super::*;

const LIMITS: HoldLimits = HoldLimits {
    count: 1000,
    bytes: 1 << 20,
};

fn frame(version: i64) -> ByteString {
    ByteString::from(format!("v{version}"))
}

/// A change log that keeps the versions `first..=head`.
struct Log {
    first: i64,
    head: i64,
}

impl Log {
    fn answer(&self, read: Read) -> ReadResult {
        let after = match read {
            Read::Head => {
                return ReadResult {
                    head: self.head,
                    epoch: epoch("e1"),
                    frames: Vec::new(),
                }
            }
            Read::After(after) => after,
        };
        ReadResult {
            head: self.head,
            epoch: epoch("e1"),
            frames: ((after + 1).max(self.first)..=self.head)
                .map(|v| (v, frame(v)))
                .collect(),
        }
    }
}

fn epoch(name: &str) -> Epoch {
    Epoch::from(name)
}

fn versions(delivery: &Delivery) -> Vec<i64> {
    delivery.frames.iter().map(|(v, _)| *v).collect()
}

fn started_at(head: i64) -> Sequencer {
    let mut seq = Sequencer::new(LIMITS);
    assert_eq!(seq.next_read(), Some(Read::Head));
    let out = seq.read_done(
        Read::Head,
        ReadResult {
            head,
            epoch: epoch("e1"),
            frames: Vec::new(),
        },
    );
    assert_eq!(out, Delivery::default());
    seq
}

#[test]
fn in_order_versions_pass_straight_through() {
    let mut seq = started_at(3);
    assert_eq!(versions(&seq.offer(4, frame(4))), [4]);
    assert_eq!(versions(&seq.offer(5, frame(5))), [5]);
    assert!(!seq.has_gap());
    assert_eq!(seq.next_read(), None);
}

#[test]
fn duplicates_and_old_versions_are_dropped() {
    let mut seq = started_at(3);
    assert_eq!(versions(&seq.offer(3, frame(3))), Vec::<i64>::new());
    assert_eq!(versions(&seq.offer(4, frame(4))), [4]);
    assert_eq!(versions(&seq.offer(4, frame(4))), Vec::<i64>::new());
}

#[test]
fn a_version_ahead_is_held_until_the_gap_arrives() {
    let mut seq = started_at(0);
    assert_eq!(versions(&seq.offer(3, frame(3))), Vec::<i64>::new());
    assert_eq!(versions(&seq.offer(2, frame(2))), Vec::<i64>::new());
    assert_eq!(seq.held(), 2);
    assert_eq!(versions(&seq.offer(1, frame(1))), [1, 2, 3]);
    assert_eq!(seq.held(), 0);
}

#[test]
fn a_gap_is_read_from_the_log_once() {
    let mut seq = started_at(0);
    seq.offer(3, frame(3));
    let read = seq.next_read().expect("a gap");
    assert_eq!(read, Read::After(0));
    assert_eq!(seq.next_read(), None, "one read at a time");
    let out = seq.read_done(read, Log { first: 1, head: 3 }.answer(read));
    assert_eq!(versions(&out), [1, 2, 3]);
    assert!(!out.lost);
    assert!(!seq.has_gap());
}

#[test]
fn a_lost_last_event_is_found_by_the_noted_head() {
    let mut seq = started_at(5);
    seq.note_head(6);
    let read = seq.next_read().expect("the head is ahead");
    let out = seq.read_done(read, Log { first: 1, head: 6 }.answer(read));
    assert_eq!(versions(&out), [6]);
}

#[test]
fn a_failed_read_is_asked_again() {
    let mut seq = started_at(0);
    seq.note_head(2);
    assert!(seq.next_read().is_some());
    seq.read_failed();
    assert_eq!(seq.next_read(), Some(Read::After(0)));
}

#[test]
fn versions_before_the_head_are_left_to_the_joining_members() {
    let mut seq = Sequencer::new(LIMITS);
    seq.offer(4, frame(4));
    seq.offer(6, frame(6));
    let read = seq.next_read().unwrap();
    let out = seq.read_done(
        read,
        ReadResult {
            head: 4,
            epoch: epoch("e1"),
            frames: Vec::new(),
        },
    );
    assert_eq!(versions(&out), Vec::<i64>::new());
    assert_eq!(seq.delivered(), Some(4));
    assert!(seq.has_gap(), "5 is missing before 6");
}

#[test]
fn a_range_the_log_no_longer_keeps_is_skipped_and_reported() {
    let mut seq = started_at(2);
    seq.note_head(10);
    let read = seq.next_read().unwrap();
    let out = seq.read_done(read, Log { first: 8, head: 10 }.answer(read));
    assert!(out.lost);
    assert_eq!(versions(&out), [8, 9, 10]);
    let mut seq = started_at(2);
    seq.note_head(10);
    let read = seq.next_read().unwrap();
    let out = seq.read_done(
        read,
        Log {
            first: 11,
            head: 10,
        }
        .answer(read),
    );
    assert!(out.lost);
    assert_eq!(seq.delivered(), Some(10));
}

#[test]
fn holding_is_bounded_and_what_is_dropped_is_read_back() {
    let mut seq = Sequencer::new(HoldLimits {
        count: 2,
        bytes: 1 << 20,
    });
    let read = seq.next_read().unwrap();
    seq.read_done(
        read,
        ReadResult {
            head: 0,
            epoch: epoch("e1"),
            frames: Vec::new(),
        },
    );
    for v in 2..=5 {
        seq.offer(v, frame(v));
    }
    assert_eq!(seq.held(), 2);
    let read = seq.next_read().unwrap();
    let out = seq.read_done(read, Log { first: 1, head: 5 }.answer(read));
    assert_eq!(versions(&out), [1, 2, 3, 4, 5]);
}

/// One thing that can happen to a room's sequencer.
#[derive(Debug, Clone)]
enum Step {
    /// Version `n` arrives (from Redis or a commit).
    Arrive(usize),
    /// The anti-entropy tick reads the head.
    Tick,
    /// The read in flight answers (or fails).
    Answer { fail: bool },
}

fn steps(total: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0..total).prop_map(Step::Arrive),
            1 => Just(Step::Tick),
            2 => any::<bool>().prop_map(|f| Step::Answer { fail: f }),
        ],
        0..200,
    )
}

proptest! {
    /// Any arrival order of a range of versions, with duplicates, gaps and delays,
    /// produces exactly that range, in order, once — given the reads it asks for.
    #[test]
    fn any_arrival_order_delivers_the_range_once_in_order(
        start in 0i64..5,
        total in 1usize..40,
        script in steps(40),
        count in 1usize..8,
    ) {
        let head = start + total as i64;
        let log = Log { first: 1, head };
        let mut seq = Sequencer::new(HoldLimits { count, bytes: 64 });
        let mut out = Vec::new();
        let mut in_flight: Option<(Read, i64)> = None;
        // The head read is answered first, as the registry does before anything else.
        let read = seq.next_read().unwrap();
        seq.read_done(read, ReadResult { head: start, epoch: epoch("e1"), frames: Vec::new() });
        for step in script {
            match step {
                Step::Arrive(n) => {
                    let v = start + 1 + (n % total) as i64;
                    out.extend(versions(&seq.offer(v, frame(v))));
                }
                Step::Tick => seq.note_head(head),
                Step::Answer { fail } => {
                    if let Some((read, _)) = in_flight.take() {
                        if fail {
                            seq.read_failed();
                        } else {
                            let delivery = seq.read_done(read, log.answer(read));
                            prop_assert!(!delivery.lost);
                            out.extend(versions(&delivery));
                        }
                    }
                }
            }
            if in_flight.is_none() {
                in_flight = seq.next_read().map(|r| (r, head));
            }
        }
        // Eventually the tick notices the head and the reads complete.
        seq.note_head(head);
        for _ in 0..3 {
            if let Some(read) = in_flight.take().map(|(r, _)| r).or_else(|| seq.next_read()) {
                out.extend(versions(&seq.read_done(read, log.answer(read))));
            }
        }
        let expected: Vec<i64> = (start + 1..=head).collect();
        prop_assert_eq!(out, expected);
        prop_assert_eq!(seq.held(), 0);
    }
}
