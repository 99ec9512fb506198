//! What a joining session missed: the versions of its room after its `since`, up to
//! where the room's stream stands on this node, assembled from change-log reads.
//!
//! Two things make this more than one read. A read is shared with identical reads in
//! flight, which may have started before the version the session needs was committed:
//! a head below it means exactly that, and the range is read again (a second read
//! starts after the first ended, so after the caller asked; if it still does not
//! reach the version, the stream moved back and the replay is not complete). And one
//! read returns at most [`READ_LIMIT`] changes, so a longer range is read in steps.

use std::future::Future;
use std::sync::Arc;

use super::sequencer::{ReadResult, Versioned};
use crate::changelog::{LogError, READ_LIMIT};

/// What a joining session missed, read from the change log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The room's version in the database.
    pub head: i64,
    /// Whether every version in the asked range is in `frames`.
    pub complete: bool,
    /// The missed frames, in order.
    pub frames: Vec<Versioned>,
}

/// The versions in (`after`, `upto`], where `upto` is a version known to be committed,
/// read with `read_after(v)` (the changes after `v`, up to the head at that moment).
pub async fn assemble<F, R>(after: i64, upto: i64, mut read_after: F) -> Result<Replay, LogError>
where
    F: FnMut(i64) -> R,
    R: Future<Output = Result<Arc<ReadResult>, LogError>>,
{
    let mut frames: Vec<Versioned> = Vec::new();
    let mut from = after;
    let mut reread = false;
    let head = loop {
        let read = read_after(from).await?;
        if read.head < upto && !reread {
            reread = true;
            continue;
        }
        let end = upto.min(read.head);
        frames.extend(
            read.frames
                .iter()
                .filter(|(v, _)| *v > from && *v <= end)
                .cloned(),
        );
        let last = frames.last().map_or(from, |(v, _)| *v);
        if read.frames.len() as i64 >= READ_LIMIT && last > from && last < end {
            from = last;
            continue;
        }
        break read.head;
    };
    let wanted = upto.min(head) - after;
    let complete = head >= upto && (wanted <= 0 || frames.len() as i64 == wanted);
    Ok(Replay {
        head,
        complete,
        // Part of a history is no use: the client re-fetches the whole state.
        frames: if complete { frames } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use bytestring::ByteString;

    use super::*;

    fn frames(range: std::ops::RangeInclusive<i64>) -> Vec<Versioned> {
        range
            .map(|v| (v, ByteString::from(v.to_string())))
            .collect()
    }

    /// A change log whose reads answer `results` in turn, noting what was asked.
    async fn run(
        after: i64,
        upto: i64,
        results: Vec<ReadResult>,
    ) -> (Result<Replay, LogError>, Vec<i64>) {
        let asked = RefCell::new(Vec::new());
        let results = RefCell::new(results.into_iter());
        let replay = assemble(after, upto, |from| {
            asked.borrow_mut().push(from);
            let next = results.borrow_mut().next().expect("no more reads expected");
            async move { Ok(Arc::new(next)) }
        })
        .await;
        (replay, asked.into_inner())
    }

    #[actix_web::test]
    async fn a_shared_read_older_than_the_node_is_read_again() {
        // The shared read started when the head was 5; the node has delivered 7.
        let stale = ReadResult {
            head: 5,
            epoch: "e".into(),
            frames: frames(3..=5),
        };
        let fresh = ReadResult {
            head: 7,
            epoch: "e".into(),
            frames: frames(3..=7),
        };
        let (replay, asked) = run(2, 7, vec![stale, fresh]).await;
        let replay = replay.unwrap();
        assert_eq!(asked, [2, 2]);
        assert!(replay.complete);
        assert_eq!(replay.frames, frames(3..=7));
    }

    #[actix_web::test]
    async fn a_head_that_stays_below_the_node_is_not_a_complete_replay() {
        let behind = || ReadResult {
            head: 5,
            epoch: "e".into(),
            frames: frames(3..=5),
        };
        let (replay, asked) = run(2, 7, vec![behind(), behind()]).await;
        let replay = replay.unwrap();
        assert_eq!(asked, [2, 2], "read again once, not in a loop");
        assert!(!replay.complete, "versions 6 and 7 are missing: {replay:?}");
        assert!(replay.frames.is_empty());
    }

    #[actix_web::test]
    async fn a_range_longer_than_one_read_is_read_in_steps() {
        let first = ReadResult {
            head: 2_500,
            epoch: "e".into(),
            frames: frames(1..=READ_LIMIT),
        };
        let second = ReadResult {
            head: 2_500,
            epoch: "e".into(),
            frames: frames(READ_LIMIT + 1..=2_500),
        };
        let (replay, asked) = run(0, 2_500, vec![first, second]).await;
        let replay = replay.unwrap();
        assert_eq!(asked, [0, READ_LIMIT]);
        assert!(replay.complete);
        assert_eq!(replay.frames, frames(1..=2_500));
    }

    #[actix_web::test]
    async fn a_hole_in_the_kept_history_is_not_complete() {
        let read = ReadResult {
            head: 9,
            epoch: "e".into(),
            frames: frames(6..=9),
        };
        let (replay, _) = run(2, 9, vec![read]).await;
        assert!(!replay.unwrap().complete);
    }
}
