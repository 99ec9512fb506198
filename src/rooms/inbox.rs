//! A session's inbox: how its thread's shard hands it messages.
//!
//! Shard and session run on the same thread, so a message needs none of what crosses
//! threads (actix's mailbox boxes an envelope and links a queue node per message):
//! the shard pushes onto a queue the two share and wakes the session's task only when
//! the queue was empty. The session takes everything that piled up at once, handles
//! it in order and writes the frames in one call, so a burst of events costs one
//! wake-up and one system call per session, not one per event.
//!
//! Bounded in messages and in the bytes of their frames; a session whose inbox is full
//! is a slow consumer, and its shard evicts it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;

use super::messages::SessionMsg;

/// What an inbox holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    /// Messages.
    pub messages: usize,
    /// Bytes of the frames of the events among them.
    pub bytes: usize,
}

/// Why the shard could not hand a message over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The inbox holds its most: the session is a slow consumer.
    Full,
    /// The session has ended.
    Gone,
}

#[derive(Default)]
struct Shared {
    /// Messages in the order the shard handed them over; taken all at once.
    queue: VecDeque<SessionMsg>,
    /// The bytes of the frames in `queue`.
    bytes: usize,
    /// The session's task, while it waits for a message.
    waker: Option<Waker>,
    /// Set when the session's end is dropped: nothing is queued any more.
    gone: bool,
}

/// The shard's end of a session's inbox.
#[derive(Clone)]
pub struct Mailbox {
    shared: Arc<Mutex<Shared>>,
    limits: InboxLimits,
}

/// The session's end: a stream of everything handed over since it last looked.
pub struct Inbox {
    shared: Arc<Mutex<Shared>>,
}

/// A new inbox: the shard's end and the session's.
pub fn inbox(limits: InboxLimits) -> (Mailbox, Inbox) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mailbox = Mailbox {
        shared: shared.clone(),
        limits,
    };
    (mailbox, Inbox { shared })
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn frame_bytes(msg: &SessionMsg) -> usize {
    match msg {
        SessionMsg::Event(event) => event.frame.len(),
        _ => 0,
    }
}

impl Mailbox {
    /// Hands `msg` over, unless the inbox is full or the session gone.
    pub fn offer(&self, msg: SessionMsg) -> Result<(), Refused> {
        let bytes = frame_bytes(&msg);
        let shared = lock(&self.shared);
        if shared.gone {
            return Err(Refused::Gone);
        }
        if shared.queue.len() >= self.limits.messages
            || shared.bytes + bytes > self.limits.bytes && !shared.queue.is_empty()
        {
            return Err(Refused::Full);
        }
        push(shared, msg, bytes);
        Ok(())
    }

    /// Hands over the last word to a session the shard lets go (evicted, revoked,
    /// shut down), full or not: it is one message, once.
    pub fn tell(&self, msg: SessionMsg) {
        let bytes = frame_bytes(&msg);
        let shared = lock(&self.shared);
        if !shared.gone {
            push(shared, msg, bytes);
        }
    }
}

/// Queues `msg` and wakes the session if it was waiting (after letting go the lock).
fn push(mut shared: MutexGuard<'_, Shared>, msg: SessionMsg, bytes: usize) {
    shared.queue.push_back(msg);
    shared.bytes += bytes;
    let waker = shared.waker.take();
    drop(shared);
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl Stream for Inbox {
    type Item = VecDeque<SessionMsg>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut shared = lock(&self.shared);
        if shared.queue.is_empty() {
            match &shared.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => shared.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        shared.bytes = 0;
        Poll::Ready(Some(std::mem::take(&mut shared.queue)))
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.gone = true;
        shared.queue.clear();
        shared.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    const LIMITS: InboxLimits = InboxLimits {
        messages: 3,
        bytes: 1000,
    };

    #[actix_web::test]
    async fn what_piles_up_is_taken_at_once_in_order() {
        let (mailbox, mut inbox) = inbox(LIMITS);
        mailbox.offer(SessionMsg::Revoked).unwrap();
        mailbox.offer(SessionMsg::GoingAway).unwrap();
        let batch = inbox.next().await.unwrap();
        assert!(matches!(
            batch.iter().collect::<Vec<_>>()[..],
            [SessionMsg::Revoked, SessionMsg::GoingAway]
        ));
        mailbox.offer(SessionMsg::Evicted).unwrap();
        assert_eq!(inbox.next().await.unwrap().len(), 1);
    }

    #[test]
    fn a_full_inbox_refuses_but_hears_the_last_word_and_a_gone_one_nothing() {
        let (mailbox, inbox) = inbox(LIMITS);
        for _ in 0..3 {
            mailbox.offer(SessionMsg::Unavailable).unwrap();
        }
        assert_eq!(mailbox.offer(SessionMsg::Unavailable), Err(Refused::Full));
        mailbox.tell(SessionMsg::Evicted);
        assert_eq!(lock(&mailbox.shared).queue.len(), 4);
        drop(inbox);
        assert_eq!(mailbox.offer(SessionMsg::Unavailable), Err(Refused::Gone));
        assert!(lock(&mailbox.shared).queue.is_empty());
    }
}
