//! How a shard writes an event straight into a member's socket, without waking the
//! member's session.
//!
//! Waking a session for each event costs more than writing the event: a task switch,
//! the actor's poll, the inbox's lock, twice. So a session hands its shard a
//! [`DirectWrite`] when it registers, and the shard writes each event through it when
//! nothing needs the session: the event only goes out, in the order the shard hands
//! events over. Whenever the session has something in progress (a join holding events
//! for its replay, a message the shard handed over and it has not handled yet), the
//! write is [`Direct::Declined`] and the event goes through the inbox as before, so the
//! session sees every state change itself.
//!
//! Shard and session run on one thread, which is what makes the shared handle an `Rc`.
//! An actor message must be `Send`, so the handle reaches the shard through this
//! thread's [`hand_over`] / [`take`] rather than inside `Connect`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::messages::{Event, SessionId};

/// What became of events offered straight to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// Handled: `frames` of them written (the others were not for the client: it left
    /// the room or has those versions, or the session is closing). If `backlogged`,
    /// the kernel left part of them queued, and the session must wait for the socket
    /// to take the rest.
    Written {
        /// Frames written.
        frames: usize,
        /// Frames are queued with no wait for the socket armed.
        backlogged: bool,
    },
    /// None written: the session is busy with something these events must follow (a
    /// join holding the room's events), so it must take them through its inbox.
    Declined,
    /// Its queue would pass the cap: the session is a slow consumer.
    Overflow,
}

/// A member's socket, as its shard may write to it.
pub trait DirectWrite {
    /// Writes `events` (all for one target, in order) now, in one system call where
    /// the kernel takes them, unless the session must see them first.
    fn write(&self, events: &[Event]) -> Direct;
}

/// A member's socket, shared by the session and its shard on their one thread.
pub type DirectSocket = Rc<dyn DirectWrite>;

thread_local! {
    /// Direct sockets on their way from a session to this thread's shard. An entry
    /// lives from `Hub::connect` until the shard handles that session's `Connect`.
    static HANDOFF: RefCell<HashMap<SessionId, DirectSocket>> = RefCell::new(HashMap::new());
}

/// Leaves `socket` for this thread's shard, which takes it with the session's `Connect`.
pub fn hand_over(id: SessionId, socket: DirectSocket) {
    HANDOFF.with(|handoff| handoff.borrow_mut().insert(id, socket));
}

/// The direct socket session `id` left for this thread's shard, if any.
pub fn take(id: SessionId) -> Option<DirectSocket> {
    HANDOFF.with(|handoff| handoff.borrow_mut().remove(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Socket;

    impl DirectWrite for Socket {
        fn write(&self, _: &[Event]) -> Direct {
            Direct::Declined
        }
    }

    #[test]
    fn a_socket_left_for_the_shard_is_taken_once_and_then_held_nowhere() {
        let socket: DirectSocket = Rc::new(Socket);
        hand_over(41, socket.clone());
        assert_eq!(Rc::strong_count(&socket), 2);
        assert!(take(41).is_some());
        assert!(take(41).is_none());
        assert_eq!(Rc::strong_count(&socket), 1, "the hand-over keeps nothing");
    }
}
