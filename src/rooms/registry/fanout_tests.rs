use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytestring::ByteString;
use futures_util::StreamExt;

use super::super::super::direct::{self, DirectWrite};
use super::super::super::inbox::{inbox, InboxLimits};
use super::super::super::RoomName;
use super::*;

/// A member's socket that notes how many events each write brought, and answers as
/// told.
struct Socket {
    writes: RefCell<Vec<usize>>,
    answer: Cell<Direct>,
}

const WRITTEN: Direct = Direct::Written {
    frames: 0,
    backlogged: false,
};

impl DirectWrite for Socket {
    fn write(&self, events: &[Event]) -> Direct {
        let answer = self.answer.get();
        if answer == WRITTEN {
            self.writes.borrow_mut().push(events.len());
            return Direct::Written {
                frames: events.len(),
                backlogged: false,
            };
        }
        answer
    }
}

fn lobby() -> RoomName {
    RoomName::parse("lobby").unwrap()
}

fn event(n: usize) -> Event {
    Event {
        target: Target::Room(lobby()),
        version: None,
        frame: ByteString::from(format!("{n}")),
    }
}

/// A session in the lobby whose socket answers `answer`, and its inbox.
async fn member(shard: &Addr<RoomRegistry>, id: SessionId, answer: Direct) -> (Rc<Socket>, Inbox) {
    let socket = Rc::new(Socket {
        writes: RefCell::default(),
        answer: Cell::new(answer),
    });
    let (mailbox, inbox) = inbox(InboxLimits {
        messages: 16,
        bytes: 1 << 20,
    });
    direct::hand_over(id, socket.clone());
    let sub = Arc::from(format!("user-{id}"));
    shard.send(Connect { id, sub, mailbox }).await.unwrap();
    let join = Join {
        id,
        room: lobby(),
        since: None,
    };
    shard.send(join).await.unwrap().unwrap();
    (socket, inbox)
}

/// The frames of the events an inbox holds now, in order, and its other messages.
async fn taken(inbox: &mut Inbox) -> Vec<String> {
    inbox
        .next()
        .await
        .unwrap()
        .into_iter()
        .map(|msg| match msg {
            SessionMsg::Event(event) => event.frame.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[actix_web::test]
async fn events_that_pile_up_in_one_turn_reach_each_member_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let shard = RoomRegistry::for_tests(dir.path()).start();
    let (a, _a) = member(&shard, 1, WRITTEN).await;
    let (b, _b) = member(&shard, 2, WRITTEN).await;
    // Handed over before the shard runs: one turn takes all three.
    for n in 0..3 {
        shard.do_send(Publish(event(n)));
    }
    shard.send(Stats).await.unwrap();
    assert_eq!(*a.writes.borrow(), [3]);
    assert_eq!(*b.writes.borrow(), [3]);
    // One at a time, each goes out alone, at once.
    shard.send(Publish(event(3))).await.unwrap();
    shard.send(Publish(event(4))).await.unwrap();
    assert_eq!(*a.writes.borrow(), [3, 1, 1]);
}

#[actix_web::test]
async fn a_busy_member_gets_events_through_its_inbox_and_nothing_overtakes_them() {
    let dir = tempfile::tempdir().unwrap();
    let shard = RoomRegistry::for_tests(dir.path()).start();
    let (socket, mut inbox) = member(&shard, 1, Direct::Declined).await;
    shard.send(Publish(event(0))).await.unwrap();
    // Its socket would take the next one, but the inbox still holds the first.
    socket.answer.set(WRITTEN);
    shard.send(Publish(event(1))).await.unwrap();
    assert!(socket.writes.borrow().is_empty());
    assert_eq!(taken(&mut inbox).await, ["0", "1"]);
    // Once the session took what was waiting, the socket gets events directly.
    shard.send(Publish(event(2))).await.unwrap();
    assert_eq!(*socket.writes.borrow(), [1]);
}

#[actix_web::test]
async fn a_member_whose_socket_queue_is_full_is_evicted_and_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let shard = RoomRegistry::for_tests(dir.path()).start();
    let (_, mut inbox) = member(&shard, 1, Direct::Overflow).await;
    let (healthy, _healthy) = member(&shard, 2, WRITTEN).await;
    shard.send(Publish(event(0))).await.unwrap();
    assert_eq!(taken(&mut inbox).await, ["Evicted"]);
    let stats = shard.send(Stats).await.unwrap();
    assert_eq!((stats.evicted, stats.sessions), (1, 1));
    shard.send(Publish(event(1))).await.unwrap();
    assert_eq!(*healthy.writes.borrow(), [1, 1]);
}

#[actix_web::test]
async fn a_write_the_kernel_took_in_part_wakes_the_session_to_wait_for_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let shard = RoomRegistry::for_tests(dir.path()).start();
    let backlogged = Direct::Written {
        frames: 1,
        backlogged: true,
    };
    let (_, mut inbox) = member(&shard, 1, backlogged).await;
    shard.send(Publish(event(0))).await.unwrap();
    // Until the session has armed its wait, later events queue behind the signal.
    shard.send(Publish(event(1))).await.unwrap();
    assert_eq!(taken(&mut inbox).await, ["Flush", "1"]);
}
