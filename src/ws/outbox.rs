//! A session's outgoing queue, bounded in bytes.
//!
//! actix-ws hands frames to the HTTP dispatcher through a channel of 32 messages;
//! when a client stops reading, that channel fills and `Session::text` waits. The
//! writer task here is the only thing that waits: the session actor pushes frames
//! into the outbox without blocking, the outbox counts the bytes not yet handed to
//! actix-ws, and past the cap the session is closed as a slow consumer and the queue
//! freed. So a client that never reads costs at most its cap (plus the dispatcher's
//! fixed buffers), and never slows anyone else.

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
        if !self.has_room_for(frame.len()) {
            return Err(Overflow);
        }
        self.pending.set(self.pending.get() + frame.len());
        self.push(Outgoing::Text(frame));
        Ok(())
    }

    /// Queues a ping.
    pub fn ping(&mut self) {
        self.push(Outgoing::Ping);
    }

    /// Queues a pong answering the client's ping.
    pub fn pong(&mut self, payload: Bytes) {
        self.push(Outgoing::Pong(payload));
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

async fn write_loop(
    mut session: Session,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    pending: Rc<Cell<usize>>,
) {
    while let Some(item) = rx.recv().await {
        let sent = match item {
            Outgoing::Text(frame) => {
                let len = frame.len();
                let sent = session.text(frame).await;
                pending.set(pending.get().saturating_sub(len));
                sent
            }
            Outgoing::Ping => session.ping(b"").await,
            Outgoing::Pong(payload) => session.pong(&payload).await,
            Outgoing::Close(reason) => {
                let _ = session.close(reason).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
