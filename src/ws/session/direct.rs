//! The part of a session its shard writes to directly: the socket's [`Outbox`] and the
//! session's [`Rooms`], shared on their one thread.
//!
//! An event for a room the session is live in needs nothing from the session but the
//! room's last version (so that nothing is sent twice) and a write: the shard does
//! both through [`DirectWrite`], without waking the session. An event of a room that is
//! joining is declined, and reaches the session through its inbox to be held for the
//! replay, as every other message does.
//!
//! Session and shard each borrow the cells only within one call of theirs, and never
//! while the other runs (they share a thread), so a borrow never fails in practice; if
//! one ever did, the write is declined and the inbox takes the event.

use std::cell::{RefCell, RefMut};

use crate::rooms::direct::{Direct, DirectWrite};
use crate::rooms::Event;
use crate::ws::joins::Rooms;
use crate::ws::outbox::Outbox;

/// A session's socket and rooms, as its session and its shard both use them.
pub struct SessionSocket {
    outbox: RefCell<Outbox>,
    rooms: RefCell<Rooms>,
}

impl SessionSocket {
    /// Shares `outbox` and `rooms`.
    pub fn new(outbox: Outbox, rooms: Rooms) -> Self {
        SessionSocket {
            outbox: RefCell::new(outbox),
            rooms: RefCell::new(rooms),
        }
    }

    /// The outbox, for one call: never hold it across another.
    pub fn outbox(&self) -> RefMut<'_, Outbox> {
        self.outbox.borrow_mut()
    }

    /// The rooms, for one call: never hold them across another.
    pub fn rooms(&self) -> RefMut<'_, Rooms> {
        self.rooms.borrow_mut()
    }
}

impl DirectWrite for SessionSocket {
    fn write(&self, events: &[Event]) -> Direct {
        let (Ok(mut rooms), Ok(mut outbox)) =
            (self.rooms.try_borrow_mut(), self.outbox.try_borrow_mut())
        else {
            return Direct::Declined;
        };
        // The events share one target: a joining room declines them all, before any
        // is looked at.
        if events[0].room().is_some_and(|room| rooms.is_joining(room)) {
            return Direct::Declined;
        }
        if outbox.is_closed() {
            return Direct::Written {
                frames: 0,
                backlogged: false,
            };
        }
        let several = events.len() > 1;
        if several {
            outbox.hold();
        }
        let mut frames = 0;
        for event in events {
            let new = match event.room() {
                Some(room) => rooms.arrive_live(room, event.version) == Some(true),
                None => true,
            };
            if !new {
                continue;
            }
            if outbox.text(event.frame.clone().into_bytes()).is_err() {
                return Direct::Overflow;
            }
            frames += 1;
        }
        if several {
            // A failing socket is seen by the session's reader, which ends it.
            let _ = outbox.release();
        }
        Direct::Written {
            frames,
            backlogged: outbox.needs_wait(),
        }
    }
}
