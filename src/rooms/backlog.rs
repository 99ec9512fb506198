//! How events from other nodes reach this node's shards without one full shard
//! stalling the rest.
//!
//! A node has one Redis subscriber for every room. If it waited for a shard whose
//! mailbox is full (its thread busy with a burst of joins, say), no other shard would
//! get anything meanwhile, and the Redis client would buffer without bound. So each
//! shard has a bounded backlog here: an event is handed over at once when the shard
//! has room and nothing waits before it, and queued otherwise; a task of its own
//! drains the queue into the shard as its mailbox frees. A backlog that is full drops
//! the event and counts it: a versioned event is read back from the change log by the
//! shard's anti-entropy check; an unversioned one is lost, as when Redis drops it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::prelude::*;

use super::messages::{Event, Publish};
use super::RoomRegistry;

/// Events waiting for one shard at most.
pub const MAX_BACKLOG: usize = 4096;

/// How long a publisher waits before offering a full mailbox the event again.
const FULL_MAILBOX_BACKOFF: Duration = Duration::from_millis(1);

/// Puts `event` in `shard`'s mailbox, waiting (briefly, repeatedly) while it is full,
/// so the mailbox stays bounded without dropping anything; `false` if the shard has
/// stopped (its worker ended).
pub(super) async fn publish_waiting(shard: &Addr<RoomRegistry>, event: Event) -> bool {
    let mut msg = Publish(event);
    loop {
        match shard.try_send(msg) {
            Ok(()) => return true,
            Err(SendError::Full(back)) => {
                msg = back;
                tokio::time::sleep(FULL_MAILBOX_BACKOFF).await;
            }
            Err(SendError::Closed(_)) => return false,
        }
    }
}

/// What became of an event handed to a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// In the shard's mailbox.
    Now,
    /// Queued behind others; the drain hands it over.
    Queued,
    /// The backlog is full: dropped.
    Dropped,
    /// The shard has stopped.
    Gone,
}

#[derive(Default)]
struct State {
    /// Events not yet in the shard's mailbox, in arrival order; at most
    /// [`MAX_BACKLOG`]. While it is not empty, or the drain still holds one it took
    /// from it, a new event queues behind: events of a shard keep their order.
    events: VecDeque<Event>,
    /// A drain task runs.
    draining: bool,
}

/// One shard's backlog of events from other nodes.
#[derive(Default)]
pub struct Backlog {
    state: Mutex<State>,
}

impl Backlog {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `event` to `shard` without waiting: into its mailbox, or into this
    /// backlog, or dropped if the backlog is full.
    pub fn hand_over(self: &Arc<Self>, shard: &Addr<RoomRegistry>, event: Event) -> Handed {
        let mut state = self.lock();
        let event = if state.events.is_empty() && !state.draining {
            match shard.try_send(Publish(event)) {
                Ok(()) => return Handed::Now,
                Err(SendError::Closed(_)) => return Handed::Gone,
                Err(SendError::Full(Publish(event))) => event,
            }
        } else {
            event
        };
        if state.events.len() >= MAX_BACKLOG {
            return Handed::Dropped;
        }
        state.events.push_back(event);
        if !state.draining {
            state.draining = true;
            actix_web::rt::spawn(self.clone().drain(shard.clone()));
        }
        Handed::Queued
    }

    /// Moves the backlog into the shard's mailbox, in order, as it frees.
    async fn drain(self: Arc<Self>, shard: Addr<RoomRegistry>) {
        loop {
            let event = {
                let mut state = self.lock();
                match state.events.pop_front() {
                    Some(event) => event,
                    None => {
                        state.draining = false;
                        return;
                    }
                }
            };
            if !publish_waiting(&shard, event).await {
                let mut state = self.lock();
                state.events.clear();
                state.draining = false;
                return;
            }
        }
    }

    /// Events waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Nothing waits, and no drain runs.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        let state = self.lock();
        state.events.is_empty() && !state.draining
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytestring::ByteString;

    use super::*;
    use crate::rooms::messages::Target;
    use crate::rooms::RoomName;

    fn registry(dir: &tempfile::TempDir) -> RoomRegistry {
        RoomRegistry::for_tests(dir.path())
    }

    fn event(n: usize) -> Event {
        Event {
            target: Target::Room(RoomName::parse("lobby").unwrap()),
            version: None,
            frame: ByteString::from(format!("{n}")),
        }
    }

    #[actix_web::test]
    async fn a_shard_that_takes_nothing_holds_up_no_other_and_is_filled_once_it_does() {
        let dir = tempfile::tempdir().unwrap();
        // A shard whose thread is busy with something else: its mailbox fills.
        let arbiter = Arbiter::new();
        let path = dir.path().join("busy");
        std::fs::create_dir(&path).unwrap();
        let busy = RoomRegistry::start_in_arbiter(&arbiter.handle(), move |_| {
            RoomRegistry::for_tests(&path)
        });
        let (release, released) = std::sync::mpsc::channel::<()>();
        arbiter.spawn_fn(move || {
            let _ = released.recv_timeout(Duration::from_secs(60));
        });
        let healthy = registry(&dir).start();
        let (busy_backlog, healthy_backlog) =
            (Arc::new(Backlog::default()), Arc::new(Backlog::default()));
        let mut handed = Vec::new();
        for n in 0..(2 * 4096 + MAX_BACKLOG) {
            // Each hand-over returns at once, whatever the busy shard does.
            handed.push(busy_backlog.hand_over(&busy, event(n)));
            assert_eq!(healthy_backlog.hand_over(&healthy, event(n)), Handed::Now);
            if n % 64 == 0 {
                // Let the healthy shard (on this thread) empty its mailbox.
                tokio::task::yield_now().await;
            }
        }
        let count = |what: Handed| handed.iter().filter(|h| **h == what).count();
        assert!(count(Handed::Now) > 0);
        assert!(count(Handed::Queued) >= MAX_BACKLOG);
        assert_eq!(busy_backlog.len(), MAX_BACKLOG, "the backlog is bounded");
        assert!(count(Handed::Dropped) > 0, "past it, events are dropped");
        release.send(()).unwrap();
        for _ in 0..400 {
            if busy_backlog.is_idle() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            busy_backlog.is_idle(),
            "the backlog drains once the shard takes events"
        );
        assert_eq!(busy_backlog.hand_over(&busy, event(0)), Handed::Now);
        arbiter.stop();
    }
}
