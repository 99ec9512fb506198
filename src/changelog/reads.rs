//! Reads that outlive their callers.
//!
//! A change-log read is asked for by a shard (the head of a room, a gap) or a joining
//! session (a replay), and any of them may go away while it runs: the session stops
//! (tab closed, heartbeat timeout, eviction), the join gives up at its deadline. A read
//! that lived inside its callers' futures would then stop being polled with whatever
//! it owned (a read permit, a place in the semaphore's queue) owned for good, and a
//! few such reads would stall every recovery on the node.
//!
//! So each read runs on its own task, from its start to its end, whatever its callers
//! do: it waits for a permit, reads (or, if nobody waits for it any more by then,
//! reads nothing), leaves the table of reads in flight, and only then tells its
//! waiters through a `watch` channel. Callers hold receivers and nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::{closed, queries, ChangeLog, LogError, Stream};
use crate::db::read_transaction;
use crate::rooms::sequencer::{Read, ReadResult};

/// What a read is of.
pub(super) type Key = (Stream, Read);

/// A read's answer: `None` until it has one.
type Outcome = Option<Result<Arc<ReadResult>, LogError>>;

/// The reads in flight, by key. Holds one receiver of each read's channel, so that a
/// second caller can wait for the same answer; the entry is removed by the read's own
/// task (through [`Entry`]) before it answers, so a caller that finds an entry always
/// gets that read's answer.
#[derive(Default)]
pub(super) struct InFlight(HashMap<Key, watch::Receiver<Outcome>>);

impl InFlight {
    /// Reads in flight.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

pub(super) fn lock(in_flight: &Mutex<InFlight>) -> MutexGuard<'_, InFlight> {
    in_flight.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads `key`, joining an identical read in flight or starting one on its own task.
pub(super) async fn read(log: &ChangeLog, key: Key) -> Result<Arc<ReadResult>, LogError> {
    let mut answer = {
        let mut in_flight = lock(&log.in_flight);
        match in_flight.0.get(&key) {
            Some(receiver) => receiver.clone(),
            None => {
                let (sender, receiver) = watch::channel(None);
                in_flight.0.insert(key.clone(), receiver.clone());
                let entry = Entry {
                    in_flight: log.in_flight.clone(),
                    key: Some(key),
                };
                actix_web::rt::spawn(run(log.clone(), entry, sender));
                receiver
            }
        }
    };
    let outcome = answer
        .wait_for(Option::is_some)
        .await
        .map_err(|_| closed())?;
    outcome.clone().unwrap_or_else(|| Err(closed()))
}

/// A read's place in the table of reads in flight: removed when the read is done, or
/// when its task is dropped (the runtime stops) without answering.
struct Entry {
    in_flight: Arc<Mutex<InFlight>>,
    key: Option<Key>,
}

impl Entry {
    /// Leaves the table.
    fn leave(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.in_flight).0.remove(&key);
        }
    }

    /// Leaves the table if nobody waits for the answer any more (only the table's own
    /// receiver is left); answers whether it left. Under the table's lock, so no caller
    /// can join in between.
    fn leave_if_unwanted(&mut self, sender: &watch::Sender<Outcome>) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        let mut in_flight = lock(&self.in_flight);
        if sender.receiver_count() > 1 {
            return false;
        }
        in_flight.0.remove(key);
        self.key = None;
        true
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.leave();
    }
}

/// The read itself, on its own task: a permit, the query, then the answer.
async fn run(log: ChangeLog, mut entry: Entry, sender: watch::Sender<Outcome>) {
    let (stream, read) = entry.key.clone().expect("a new entry has its key");
    // Every caller may have left while the read waited for its permit (a reconnect
    // storm of clients that are gone again): then nothing is read. A hung database or
    // pool answers "unavailable" at the deadline; the blocking work ends on its own
    // (statement timeout, pool timeout) and frees its permit then.
    let wanted = || !entry.leave_if_unwanted(&sender);
    let result = match log
        .with_permit_if(wanted, move |conn| read_now(conn, &stream, read))
        .await
    {
        Ok(Some(result)) => Ok(result),
        Ok(None) => return,
        Err(e) => Err(e),
    };
    entry.leave();
    sender.send_replace(Some(result.map(Arc::new)));
}

fn read_now(
    conn: &mut crate::db::AnyConnection,
    stream: &Stream,
    read: Read,
) -> Result<ReadResult, diesel::result::Error> {
    read_transaction(conn, |conn| {
        let (head, epoch) = queries::position(conn, stream)?;
        let frames = match read {
            Read::Head => Vec::new(),
            Read::After(after) => queries::changes_after(conn, stream, after, head)?,
        };
        Ok(ReadResult {
            head,
            epoch,
            frames,
        })
    })
}
