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

/// A message that may carry a frame: the inbox counts its bytes against its bound.
pub trait Weigh {
    /// Bytes of the frame this message carries (0 for a signal).
    fn frame_bytes(&self) -> usize;
}

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

struct Shared<M> {
    /// Messages in the order the shard handed them over; taken all at once.
    queue: VecDeque<M>,
    /// The bytes of the frames in `queue`.
    bytes: usize,
    /// The session's task, while it waits for a message.
    waker: Option<Waker>,
    /// Set when the session's end is dropped: nothing is queued any more.
    gone: bool,
}

/// The shard's end of a session's inbox.
pub struct Mailbox<M> {
    shared: Arc<Mutex<Shared<M>>>,
    limits: InboxLimits,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Mailbox {
            shared: self.shared.clone(),
            limits: self.limits,
        }
    }
}

/// The session's end: a stream of everything handed over since it last looked.
pub struct Inbox<M> {
    shared: Arc<Mutex<Shared<M>>>,
}

/// A new inbox: the shard's end and the session's.
pub fn inbox<M: Weigh>(limits: InboxLimits) -> (Mailbox<M>, Inbox<M>) {
    let shared = Arc::new(Mutex::new(Shared {
        queue: VecDeque::new(),
        bytes: 0,
        waker: None,
        gone: false,
    }));
    let mailbox = Mailbox {
        shared: shared.clone(),
        limits,
    };
    (mailbox, Inbox { shared })
}

fn lock<M>(shared: &Mutex<Shared<M>>) -> MutexGuard<'_, Shared<M>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M: Weigh> Mailbox<M> {
    /// Hands `msg` over, unless the inbox is full or the session gone.
    pub fn offer(&self, msg: M) -> Result<(), Refused> {
        let bytes = msg.frame_bytes();
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

    /// Whether the session has taken everything handed over and is still there: only
    /// then may an event bypass the inbox without overtaking what is in it.
    pub fn is_idle(&self) -> bool {
        let shared = lock(&self.shared);
        shared.queue.is_empty() && !shared.gone
    }

    /// Hands over the last word to a session the shard lets go (evicted, revoked,
    /// shut down), full or not: it is one message, once.
    pub fn tell(&self, msg: M) {
        let bytes = msg.frame_bytes();
        let shared = lock(&self.shared);
        if !shared.gone {
            push(shared, msg, bytes);
        }
    }
}

/// Queues `msg` and wakes the session if it was waiting (after letting go the lock).
fn push<M>(mut shared: MutexGuard<'_, Shared<M>>, msg: M, bytes: usize) {
    shared.queue.push_back(msg);
    shared.bytes += bytes;
    let waker = shared.waker.take();
    drop(shared);
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<M> Stream for Inbox<M> {
    type Item = VecDeque<M>;

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

impl<M> Drop for Inbox<M> {
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

    /// A session's messages, as far as the inbox cares: a frame of some bytes, or a
    /// signal.
    #[derive(Debug, PartialEq)]
    enum Msg {
        Frame(usize),
        Signal(&'static str),
    }

    impl Weigh for Msg {
        fn frame_bytes(&self) -> usize {
            match self {
                Msg::Frame(bytes) => *bytes,
                Msg::Signal(_) => 0,
            }
        }
    }

    const LIMITS: InboxLimits = InboxLimits {
        messages: 3,
        bytes: 1000,
    };

    #[actix_web::test]
    async fn what_piles_up_is_taken_at_once_in_order() {
        let (mailbox, mut inbox) = inbox(LIMITS);
        mailbox.offer(Msg::Signal("revoked")).unwrap();
        mailbox.offer(Msg::Frame(10)).unwrap();
        let batch = inbox.next().await.unwrap();
        assert_eq!(
            Vec::from(batch),
            vec![Msg::Signal("revoked"), Msg::Frame(10)]
        );
        mailbox.offer(Msg::Signal("evicted")).unwrap();
        assert_eq!(inbox.next().await.unwrap().len(), 1);
    }

    #[test]
    fn a_full_inbox_refuses_but_hears_the_last_word_and_a_gone_one_nothing() {
        let (mailbox, inbox) = inbox(LIMITS);
        for _ in 0..3 {
            mailbox.offer(Msg::Signal("unavailable")).unwrap();
        }
        assert_eq!(
            mailbox.offer(Msg::Signal("unavailable")),
            Err(Refused::Full)
        );
        mailbox.tell(Msg::Signal("evicted"));
        assert_eq!(lock(&mailbox.shared).queue.len(), 4);
        drop(inbox);
        assert_eq!(
            mailbox.offer(Msg::Signal("unavailable")),
            Err(Refused::Gone)
        );
        assert!(lock(&mailbox.shared).queue.is_empty());
    }

    #[test]
    fn frame_bytes_bound_it_but_one_large_frame_always_fits_an_empty_inbox() {
        let (mailbox, mut inbox) = inbox(LIMITS);
        mailbox.offer(Msg::Frame(5_000)).unwrap();
        assert_eq!(mailbox.offer(Msg::Frame(1)), Err(Refused::Full));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut inbox).poll_next(&mut cx).is_ready());
        mailbox.offer(Msg::Frame(600)).unwrap();
        assert_eq!(mailbox.offer(Msg::Frame(600)), Err(Refused::Full));
        mailbox.offer(Msg::Frame(400)).unwrap();
    }
}
