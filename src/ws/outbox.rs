//! A session's outgoing queue, bounded in bytes.
//!
//! actix-ws hands frames to the HTTP dispatcher through a channel of 32 messages;
//! when a client stops reading, that channel fills and `Session::text` waits. The
//! writer task here is the only thing that waits: the session actor pushes frames
//! into the outbox without blocking, the outbox counts the bytes not yet handed to
//! actix-ws (every frame: events, replies, pings and pongs alike), and past the cap
//! the session is closed as a slow consumer and the queue freed. So a client that
//! never reads costs at most its cap (plus the dispatcher's fixed buffers), and never
//! slows anyone else.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_ws::{CloseReason, Session};
use bytestring::ByteString;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a closing writer may take to flush before it is cut off. What it holds
/// meanwhile is bounded: actix-ws's channel of 32 frames whose bytes are shared with
/// every other recipient.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What one queued frame costs beyond its payload: its slot in the queue. Charging it
/// keeps frames with an empty payload (a pong to an empty ping) from being free, so no
/// frame can be queued without bound.
const ENTRY_COST: usize = std::mem::size_of::<Outgoing>();

enum Outgoing {
    Text(ByteString),
    Ping,
    Pong(Bytes),
    Close(Option<CloseReason>),
}

/// The unsent output would pass the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// The bounded outgoing queue of one session.
pub struct Outbox {
    tx: Option<mpsc::UnboundedSender<Outgoing>>,
    /// The cost ([`cost`]) of every frame queued and not yet handed to actix-ws. Only
    /// the methods of `Outbox` raise it, and only while it stays at most `cap`; the
    /// writer lowers it as frames leave. Nothing else bounds the queue.
    pending: Rc<Cell<usize>>,
    cap: usize,
    writer: Option<JoinHandle<()>>,
    session: Session,
}

impl Outbox {
    /// Starts the writer task for `session` (on the current arbiter) with a cap of
    /// `cap` unsent bytes.
    pub fn new(session: Session, cap: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Rc::new(Cell::new(0));
        let writer = actix_web::rt::spawn(write_loop(session.clone(), rx, pending.clone()));
        Outbox {
            tx: Some(tx),
            pending,
            cap,
            writer: Some(writer),
            session,
        }
    }

    /// Bytes queued and not yet handed to the connection.
    pub fn pending_bytes(&self) -> usize {
        self.pending.get()
    }

    /// Whether `extra` more bytes would still fit under the cap.
    pub fn has_room_for(&self, extra: usize) -> bool {
        self.pending.get() + extra <= self.cap
    }

    /// Queues a text frame, unless that would pass the cap.
    pub fn text(&mut self, frame: ByteString) -> Result<(), Overflow> {
        self.counted(Outgoing::Text(frame))
    }

    /// Queues a ping, unless that would pass the cap.
    pub fn ping(&mut self) -> Result<(), Overflow> {
        self.counted(Outgoing::Ping)
    }

    /// Queues a pong answering the client's ping, unless that would pass the cap: a
    /// client that pings and never reads fills its outbox like any other.
    pub fn pong(&mut self, payload: Bytes) -> Result<(), Overflow> {
        self.counted(Outgoing::Pong(payload))
    }

    /// Queues a close frame after everything already queued; nothing can follow it.
    pub fn close(&mut self, reason: Option<CloseReason>) {
        self.push(Outgoing::Close(reason));
        self.tx = None;
    }

    /// Drops everything queued and closes at once: for a client that does not read,
    /// whose queue must not be kept. The close frame is best effort.
    pub fn abandon(&mut self, reason: CloseReason) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        self.pending.set(0);
        let session = self.session.clone();
        actix_web::rt::spawn(async move {
            let _ = tokio::time::timeout(CLOSE_GRACE, session.close(Some(reason))).await;
        });
    }

    fn counted(&mut self, item: Outgoing) -> Result<(), Overflow> {
        let cost = cost(&item);
        if !self.has_room_for(cost) {
            return Err(Overflow);
        }
        self.pending.set(self.pending.get() + cost);
        self.push(item);
        Ok(())
    }

    fn push(&mut self, item: Outgoing) {
        if let Some(tx) = &self.tx {
            // The writer only stops when the connection is gone; then frames are moot.
            let _ = tx.send(item);
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.tx = None;
        // The writer flushes what is queued (a close frame, typically); a client that
        // does not read gets CLOSE_GRACE, then the writer and its queue are dropped.
        if let Some(writer) = self.writer.take().filter(|w| !w.is_finished()) {
            actix_web::rt::spawn(async move {
                tokio::time::sleep(CLOSE_GRACE).await;
                writer.abort();
            });
        }
    }
}

/// What a queued frame counts against the cap: its payload and its queue slot.
fn cost(item: &Outgoing) -> usize {
    ENTRY_COST
        + match item {
            Outgoing::Text(frame) => frame.len(),
            Outgoing::Pong(payload) => payload.len(),
            Outgoing::Ping | Outgoing::Close(_) => 0,
        }
}

async fn write_loop(
    mut session: Session,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    pending: Rc<Cell<usize>>,
) {
    while let Some(item) = rx.recv().await {
        let cost = cost(&item);
        let sent = match item {
            Outgoing::Text(frame) => session.text(frame).await,
            Outgoing::Ping => session.ping(b"").await,
            Outgoing::Pong(payload) => session.pong(&payload).await,
            Outgoing::Close(reason) => {
                let _ = session.close(reason).await;
                return;
            }
        };
        pending.set(pending.get().saturating_sub(cost));
        if sent.is_err() {
            return;
        }
    }
}
