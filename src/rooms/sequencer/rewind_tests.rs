//! Streams that move back: a head below what was delivered, another node's new epoch,
//! and announced versions the database never got.

use super::*;

const LIMITS: HoldLimits = HoldLimits {
    count: 1000,
    bytes: 1 << 20,
};

fn frame(version: i64) -> ByteString {
    ByteString::from(format!("v{version}"))
}

fn epoch(name: &str) -> Epoch {
    Epoch::from(name)
}

fn at(head: i64, name: &str) -> ReadResult {
    ReadResult {
        head,
        epoch: epoch(name),
        frames: Vec::new(),
    }
}

fn started_at(head: i64, name: &str) -> Sequencer {
    let mut seq = Sequencer::new(LIMITS);
    let read = seq.next_read().unwrap();
    assert_eq!(seq.read_done(read, at(head, name)), Delivery::default());
    assert_eq!(seq.epoch(), Some(&epoch(name)));
    seq
}

fn versions(delivery: &Delivery) -> Vec<i64> {
    delivery.frames.iter().map(|(v, _)| *v).collect()
}

/// Answers the read the sequencer asks for with `result`, asserting it was `After(after)`.
fn answer(seq: &mut Sequencer, after: i64, result: ReadResult) -> Delivery {
    let read = seq.next_read();
    assert_eq!(read, Some(Read::After(after)));
    seq.read_done(read.unwrap(), result)
}

#[test]
fn a_head_below_what_was_delivered_replaces_the_epoch_and_restarts_there() {
    let mut seq = started_at(5, "e1");
    seq.note_position(3, &epoch("e1"));
    assert!(seq.has_gap());
    assert_eq!(answer(&mut seq, 5, at(3, "e1")), Delivery::default());
    assert!(seq.moving_back());
    // Nothing is read until the epoch is replaced, and one replacement at a time.
    assert_eq!(seq.next_read(), None);
    assert_eq!(seq.next_rewind(), Some(epoch("e1")));
    assert_eq!(seq.next_rewind(), None);
    let out = seq.rewound(3, epoch("e2"));
    assert!(!seq.moving_back());
    assert_eq!(out.rewound, Some(epoch("e2")));
    assert!(out.frames.is_empty());
    assert_eq!(
        (seq.delivered(), seq.epoch()),
        (Some(3), Some(&epoch("e2")))
    );
    // One read confirms nothing was dropped meanwhile; then the stream is quiet.
    assert_eq!(answer(&mut seq, 3, at(3, "e2")), Delivery::default());
    assert_eq!(seq.next_read(), None);
    assert_eq!(versions(&seq.offer(4, frame(4))), vec![4]);
}

#[test]
fn a_commit_reusing_a_delivered_number_is_found_at_once() {
    let mut seq = started_at(5, "e1");
    // The database moved back to 3 and a new commit took 4: not a duplicate to ignore.
    assert_eq!(seq.offer(4, frame(4)), Delivery::default());
    assert!(seq.has_gap());
    assert_eq!(answer(&mut seq, 5, at(4, "e1")), Delivery::default());
    assert_eq!(seq.next_rewind(), Some(epoch("e1")));
    // Another node replaced the epoch first: its epoch is the one adopted.
    let out = seq.rewound(4, epoch("e2"));
    assert_eq!(out.rewound, Some(epoch("e2")));
    assert_eq!(seq.delivered(), Some(4));
    let next = ReadResult {
        frames: vec![(5, frame(5))],
        ..at(5, "e2")
    };
    assert_eq!(versions(&answer(&mut seq, 4, next)), vec![5]);
    assert_eq!(versions(&seq.offer(6, frame(6))), vec![6]);
}

#[test]
fn another_epoch_restarts_the_stream_at_the_head_read() {
    let mut seq = started_at(5, "e1");
    seq.offer(7, frame(7));
    seq.note_position(7, &epoch("e2"));
    let read = ReadResult {
        frames: vec![(6, frame(6)), (7, frame(7))],
        ..at(7, "e2")
    };
    let out = answer(&mut seq, 5, read);
    assert_eq!(out.rewound, Some(epoch("e2")));
    assert!(out.frames.is_empty(), "the members re-fetch up to the head");
    assert_eq!((seq.delivered(), seq.held()), (Some(7), 0));
    assert_eq!(seq.next_rewind(), None);
    assert_eq!(versions(&seq.offer(8, frame(8))), vec![8]);
}

#[test]
fn the_first_change_of_a_new_stream_keeps_the_stream_and_learns_its_epoch() {
    let mut seq = started_at(0, "");
    assert_eq!(versions(&seq.offer(1, frame(1))), vec![1]);
    // The tick may see the new epoch first: the same stream, not a restart.
    seq.note_position(1, &epoch("made"));
    assert_eq!(answer(&mut seq, 1, at(1, "made")), Delivery::default());
    assert_eq!(seq.epoch(), Some(&epoch("made")));
    assert!(!seq.has_gap());
    assert_eq!(versions(&seq.offer(2, frame(2))), vec![2]);
    assert!(!seq.has_gap(), "one read is enough");
}

#[test]
fn versions_announced_beyond_the_head_are_not_waited_for() {
    let mut seq = started_at(5, "e1");
    // 7 was announced, but the database that answers has only 5.
    seq.offer(7, frame(7));
    assert_eq!(answer(&mut seq, 5, at(5, "e1")), Delivery::default());
    assert_eq!(seq.held(), 0);
    assert_eq!(
        seq.next_read(),
        None,
        "no read loop for what does not exist"
    );
    assert_eq!(versions(&seq.offer(6, frame(6))), vec![6]);
}

#[test]
fn a_failed_replacement_is_asked_again() {
    let mut seq = started_at(5, "e1");
    seq.note_position(2, &epoch("e1"));
    answer(&mut seq, 5, at(2, "e1"));
    assert_eq!(seq.next_rewind(), Some(epoch("e1")));
    seq.read_failed();
    assert_eq!(seq.next_rewind(), Some(epoch("e1")));
    // Arrivals meanwhile are not delivered against the old position.
    assert_eq!(seq.offer(6, frame(6)), Delivery::default());
}

#[test]
fn a_read_overtaken_by_live_versions_is_no_rewind() {
    let mut seq = started_at(5, "e1");
    seq.offer(7, frame(7));
    let read = seq.next_read().unwrap();
    assert_eq!(read, Read::After(5));
    // While the read of (5, 7] runs, 6 to 9 arrive and go out.
    assert_eq!(versions(&seq.offer(6, frame(6))), vec![6, 7]);
    assert_eq!(versions(&seq.offer(8, frame(8))), vec![8]);
    seq.offer(10, frame(10));
    assert_eq!(versions(&seq.offer(9, frame(9))), vec![9, 10]);
    // The read answers with the head it saw when it ran: below what is delivered now.
    let mut result = at(7, "e1");
    result.frames = vec![(6, frame(6)), (7, frame(7))];
    assert_eq!(seq.read_done(read, result), Delivery::default());
    assert!(!seq.moving_back(), "the stream did not move back");
    assert_eq!(seq.delivered(), Some(10));
    assert_eq!(versions(&seq.offer(11, frame(11))), vec![11]);
}

#[test]
fn versions_that_arrive_during_a_read_are_kept_whatever_its_head() {
    let mut seq = started_at(5, "e1");
    seq.offer(7, frame(7));
    let read = seq.next_read().unwrap();
    // 9 arrives during the read; the read finds the database at 5: 7 was lost, but 9
    // was announced after the read began, so it may well exist.
    seq.offer(9, frame(9));
    assert_eq!(seq.read_done(read, at(5, "e1")), Delivery::default());
    assert_eq!(seq.held(), 1);
    assert!(seq.has_gap(), "the gap before 9 is read next");
}

#[test]
fn a_new_stream_learns_its_epoch_from_a_read_overtaken_by_live_versions() {
    let mut seq = started_at(0, "");
    // The first change made the epoch: one read learns it, while 2 and 3 go out.
    assert_eq!(versions(&seq.offer(1, frame(1))), vec![1]);
    let read = seq.next_read().unwrap();
    assert_eq!(versions(&seq.offer(2, frame(2))), vec![2]);
    assert_eq!(versions(&seq.offer(3, frame(3))), vec![3]);
    let mut result = at(1, "e1");
    result.frames = vec![(1, frame(1))];
    assert_eq!(seq.read_done(read, result), Delivery::default());
    assert_eq!(seq.epoch(), Some(&epoch("e1")), "the same stream");
    assert_eq!(seq.delivered(), Some(3), "nothing delivered twice");
}
