//! A session's outgoing frames, written straight to its socket and bounded in bytes.
//!
//! A frame goes to the kernel at once: one vectored write of its small header and its
//! shared payload, never copied per recipient. A burst the session knows of (a join's
//! reply, replay and held events) is queued and written in one call instead
//! ([`Outbox::hold`], [`Outbox::release`]). What the kernel does not take stays
//! queued, counted against the session's cap (every frame alike: events, replies,
//! pings and pongs); past the cap the session is closed as a slow consumer and the
//! queue dropped. So a client that never reads costs at most its cap, and never slows
//! anyone else.
//!
//! While frames are queued, the session keeps one wait for writability armed
//! ([`Outbox::wait_writable`]) and flushes when it completes. When the session ends,
//! [`Outbox::finish`] hands the socket to a short task that writes what is left (the
//! close frame, usually), half-closes, and reads until the client closes too.

use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use actix_web::web::Bytes;

use super::frame::OpCode;
use super::socket::Connection;
use super::writer::{Overflow, SocketWriter};

/// How long a closing session's last frames may take to reach a client that does not
/// read. What is held meanwhile is bounded: the cap, or after a cut-off one frame.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// How long a closed socket keeps reading, so that the kernel ends the connection
/// with FIN rather than RST (unread bytes at close mean RST, and a client may then
/// lose the close frame it had not read yet).
const LINGER: Duration = Duration::from_secs(2);

/// What the outbox is doing besides writing at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Nothing: frames are written as they come; any left queued need a wait armed.
    Idle,
    /// Frames are queued, not written, until [`Outbox::release`].
    Holding,
    /// A wait for the socket to take more is armed.
    Writable,
}

/// The outgoing side of one session's socket.
pub struct Outbox {
    connection: Rc<Connection>,
    writer: SocketWriter,
    flush: Flush,
    /// Set once the close frame was sent, or the socket handed to the closing task:
    /// nothing more may be sent.
    closed: bool,
}

impl Outbox {
    /// The outbox of `connection`, queueing at most `cap` bytes.
    pub fn new(connection: Rc<Connection>, cap: usize) -> Self {
        Outbox {
            connection,
            writer: SocketWriter::new(cap),
            flush: Flush::Idle,
            closed: false,
        }
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn pending_bytes(&self) -> usize {
        self.writer.queued_bytes()
    }

    /// Whether `extra` more bytes would still fit under the cap.
    pub fn has_room_for(&self, extra: usize) -> bool {
        self.writer.has_room_for(extra)
    }

    /// Sends a text frame (its bytes shared, never copied): written at once unless
    /// held or behind queued frames, refused if queueing it would pass the cap.
    pub fn text(&mut self, frame: Bytes) -> Result<(), Overflow> {
        self.send(OpCode::Text, frame)
    }

    /// Sends a ping, as [`Outbox::text`].
    pub fn ping(&mut self) -> Result<(), Overflow> {
        self.send(OpCode::Ping, Bytes::new())
    }

    /// Answers the client's ping, unless that would pass the cap: a client that pings
    /// and never reads fills its outbox like any other.
    pub fn pong(&mut self, payload: Bytes) -> Result<(), Overflow> {
        self.send(OpCode::Pong, payload)
    }

    /// Sends the close frame after everything already sent; nothing can follow it.
    pub fn close(&mut self, code: u16, reason: &str) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        self.writer
            .send_close(&*self.connection, close_payload(code, reason));
    }

    /// Drops everything queued (but the rest of a frame the client has begun to get)
    /// and sends the close frame: for a client that does not read, whose queue must
    /// not be kept.
    pub fn abandon(&mut self, code: u16, reason: &str) {
        self.writer.abandon();
        self.close(code, reason);
    }

    /// Queues frames from now on instead of writing each, until [`Outbox::release`].
    pub fn hold(&mut self) {
        if self.flush == Flush::Idle {
            self.flush = Flush::Holding;
        }
    }

    /// Writes what was queued since [`Outbox::hold`] in one call.
    pub fn release(&mut self) -> io::Result<()> {
        if self.flush != Flush::Holding {
            return Ok(());
        }
        self.flush()
    }

    /// Writes queued frames while the kernel takes them; if some are left, the
    /// session arms [`Outbox::wait_writable`].
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush = Flush::Idle;
        self.writer.flush(&*self.connection).map(drop)
    }

    /// A wait for the socket to take more, when frames are queued and neither held
    /// nor waited for yet; [`Outbox::flush`] once it completes.
    pub fn wait_writable(&mut self) -> Option<impl Future<Output = io::Result<()>> + 'static> {
        if !self.needs_wait() {
            return None;
        }
        self.flush = Flush::Writable;
        let connection = self.connection.clone();
        Some(async move { connection.stream().writable().await })
    }

    /// Whether the close frame went out (or the session finished): nothing more is sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether frames are queued with no wait for writability armed: the session must
    /// arm one ([`Outbox::wait_writable`]) or they stay queued.
    pub fn needs_wait(&self) -> bool {
        self.flush == Flush::Idle && self.writer.has_queue()
    }

    /// Hands what is left to a task on this thread: it writes the queued frames
    /// (within [`CLOSE_GRACE`]), half-closes and lingers; the socket closes after,
    /// and only then is its connection slot freed (it goes with the socket).
    pub fn finish(&mut self) {
        // The task owns the socket's writes from now on: a frame written here after
        // it could land in the middle of one it is writing.
        self.closed = true;
        let writer = std::mem::replace(&mut self.writer, SocketWriter::new(0));
        let connection = self.connection.clone();
        actix_web::rt::spawn(async move {
            let flushed = tokio::time::timeout(CLOSE_GRACE, write_all(&connection, writer));
            if let Ok(Ok(())) = flushed.await {
                connection.shutdown_write();
                let _ = tokio::time::timeout(LINGER, read_to_end(&connection)).await;
            }
        });
    }

    fn send(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Overflow> {
        if self.closed {
            return Ok(());
        }
        match self.flush {
            Flush::Idle => self.writer.send(&*self.connection, opcode, payload),
            Flush::Writable => self.writer.queue(opcode, payload),
            Flush::Holding => self
                .writer
                .queue_or_flush(&*self.connection, opcode, payload),
        }
    }
}

/// The payload of a close frame: the code, then the reason cut to fit 125 bytes at a
/// character boundary.
fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    Bytes::from(payload)
}

async fn write_all(connection: &Connection, mut writer: SocketWriter) -> io::Result<()> {
    while !writer.flush(connection)? {
        connection.stream().writable().await?;
    }
    Ok(())
}

/// Reads and drops what the client still sends, until it closes.
async fn read_to_end(connection: &Connection) {
    let mut scratch = [0u8; 1024];
    loop {
        if connection.stream().readable().await.is_err() {
            return;
        }
        match connection.stream().try_read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close_payload;

    #[test]
    fn a_close_payload_is_the_code_then_the_reason() {
        assert_eq!(&close_payload(1013, "slow")[..], b"\x03\xf5slow");
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary_to_fit_a_control_frame() {
        let payload = close_payload(1000, &"é".repeat(100));
        assert!(payload.len() <= 125, "{}", payload.len());
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
