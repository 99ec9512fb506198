//! How a session that owns its socket writes to it.
//!
//! A frame is a few header bytes and a payload shared with every other recipient
//! (`Bytes`). The writer offers both to the kernel in one vectored write; usually the
//! kernel takes all of it and nothing is copied or queued. Only what the kernel does
//! not take is queued — the header's rest and a clone of the payload handle, never a
//! copy — and byte-counted against the session's cap, so a client that does not read
//! costs at most that cap before it is cut off.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use actix_web::web::Bytes;

use super::frame::{header, OpCode, MAX_HEADER};

/// What one queued frame costs beyond its unsent bytes: its slot in the queue, so
/// frames with little or no payload are never free.
const ENTRY_COST: usize = std::mem::size_of::<Queued>();

/// Frames offered to the kernel in one vectored write when flushing a queue.
const MAX_SLICES: usize = 64;

/// Frames up to this size (header included) are copied into one buffer and written
/// with a plain `send`: for a small frame, copying it costs less than the kernel's
/// taking a two-part `sendmsg` apart (measured with 10,000 subscribers in one room at
/// saturation, one system call per frame either way: 12.5 instead of 14.0 µs of CPU
/// per frame).
const SMALL_FRAME: usize = 1024;

/// A socket the writer can offer bytes to without waiting.
pub trait TryWrite {
    /// Writes what the kernel takes now; `WouldBlock` when it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Writes what the kernel takes of one buffer now, as [`TryWrite::try_write_vectored`].
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(buf)])
    }
}

impl TryWrite for tokio::net::TcpStream {
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write_vectored(self, bufs)
    }
}

/// The queue would pass the cap: the session must be closed as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// A frame the kernel has not fully taken.
struct Queued {
    header: [u8; MAX_HEADER],
    header_len: u8,
    payload: Bytes,
    /// Bytes of header-then-payload already written.
    written: usize,
}

impl Queued {
    /// A whole, unwritten frame: its header and its payload.
    fn new(opcode: OpCode, payload: Bytes) -> Self {
        let mut header_buf = [0u8; MAX_HEADER];
        let header_len = header(opcode, payload.len(), &mut header_buf).len();
        Queued {
            header: header_buf,
            header_len: header_len as u8,
            payload,
            written: 0,
        }
    }

    fn unsent(&self) -> usize {
        self.header_len as usize + self.payload.len() - self.written
    }

    /// The unsent parts, header first.
    fn slices(&self) -> [&[u8]; 2] {
        let header_len = self.header_len as usize;
        if self.written < header_len {
            [&self.header[self.written..header_len], &self.payload[..]]
        } else {
            [&[], &self.payload[self.written - header_len..]]
        }
    }
}

/// One session's writes.
pub struct SocketWriter {
    /// Frames in the order they must reach the client; only the first may be partly
    /// written. Whenever it is empty, a new frame may be written straight away.
    queue: VecDeque<Queued>,
    /// The unsent bytes of `queue` plus `ENTRY_COST` per entry; at most `cap` after
    /// every `send` that returned `Ok`, plus the close frame once one was sent.
    queued: usize,
    cap: usize,
}

impl SocketWriter {
    /// A writer that queues at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        SocketWriter {
            queue: VecDeque::new(),
            queued: 0,
            cap,
        }
    }

    /// Bytes (and slots) queued, not yet taken by the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Whether `extra` more queued bytes would stay within the cap.
    pub fn has_room_for(&self, extra: usize) -> bool {
        self.queued.saturating_add(extra) <= self.cap
    }

    /// Whether frames wait for the socket to become writable.
    pub fn has_queue(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Writes a frame, or queues what the kernel does not take now.
    pub fn send(
        &mut self,
        io: &impl TryWrite,
        opcode: OpCode,
        payload: Bytes,
    ) -> Result<(), Overflow> {
        let frame = self.write_now(io, Queued::new(opcode, payload));
        self.push(frame, self.cap)
    }

    /// Queues a frame without writing it, for a [`SocketWriter::flush`] that writes
    /// every frame queued meanwhile in one call.
    pub fn queue(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Overflow> {
        self.push(Some(Queued::new(opcode, payload)), self.cap)
    }

    /// Queues a frame like [`SocketWriter::queue`], but if the queue would pass the
    /// cap, first writes what is queued: frames held for one write count against the
    /// cap although the kernel may take them all, so a full queue is only a slow
    /// consumer once the kernel has refused.
    pub fn queue_or_flush(
        &mut self,
        io: &impl TryWrite,
        opcode: OpCode,
        payload: Bytes,
    ) -> Result<(), Overflow> {
        let frame = Queued::new(opcode, payload);
        if self.queued.saturating_add(frame.unsent() + ENTRY_COST) > self.cap {
            // A failing socket is seen by the reader; the push below then overflows.
            let _ = self.flush(io);
        }
        self.push(Some(frame), self.cap)
    }

    /// Writes the close frame, queueing what the kernel does not take even past the
    /// cap: it is the last frame, and at most 125 bytes.
    pub fn send_close(&mut self, io: &impl TryWrite, payload: Bytes) {
        let frame = self.write_now(io, Queued::new(OpCode::Close, payload));
        let _ = self.push(frame, usize::MAX);
    }

    /// Drops every queued frame but a partly written first one (the client must get
    /// whole frames): for a client cut off as a slow consumer, whose close frame
    /// follows.
    pub fn abandon(&mut self) {
        let partial = self.queue.pop_front().filter(|first| first.written > 0);
        self.clear();
        if let Some(first) = partial {
            self.queued = first.unsent() + ENTRY_COST;
            self.queue.push_back(first);
        }
    }

    /// Offers `frame` to the kernel if nothing is queued before it; what is left of
    /// it, if anything.
    fn write_now(&self, io: &impl TryWrite, mut frame: Queued) -> Option<Queued> {
        if self.queue.is_empty() {
            let [head, body] = frame.slices();
            let written = if head.len() + body.len() <= SMALL_FRAME {
                let mut whole = [0u8; SMALL_FRAME];
                let (first, rest) = whole.split_at_mut(head.len());
                first.copy_from_slice(head);
                rest[..body.len()].copy_from_slice(body);
                io.try_write(&whole[..head.len() + body.len()])
            } else {
                io.try_write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            };
            match written {
                Ok(n) if n == frame.unsent() => return None,
                Ok(n) => frame.written = n,
                // Closed or failing: the reader sees it and ends the session; frames
                // queued meanwhile are bounded by the cap like any others.
                Err(_) => {}
            }
        }
        Some(frame)
    }

    /// Queues what is left of a frame, unless the queue would pass `cap`.
    fn push(&mut self, frame: Option<Queued>, cap: usize) -> Result<(), Overflow> {
        let Some(frame) = frame else {
            return Ok(());
        };
        let cost = frame.unsent() + ENTRY_COST;
        if self.queued.saturating_add(cost) > cap {
            return Err(Overflow);
        }
        self.queued += cost;
        self.queue.push_back(frame);
        Ok(())
    }

    /// Writes queued frames while the kernel takes them; `Ok(true)` once the queue is
    /// empty, `Ok(false)` if the socket must become writable again first.
    pub fn flush(&mut self, io: &impl TryWrite) -> io::Result<bool> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 2 * MAX_SLICES];
            let mut count = 0;
            for frame in self.queue.iter().take(MAX_SLICES) {
                for part in frame.slices() {
                    if !part.is_empty() {
                        slices[count] = IoSlice::new(part);
                        count += 1;
                    }
                }
            }
            let mut n = match io.try_write_vectored(&slices[..count]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            while n > 0 {
                let front = self.queue.front_mut().expect("n counts queued bytes");
                let unsent = front.unsent();
                if n >= unsent {
                    n -= unsent;
                    self.queued -= unsent + ENTRY_COST;
                    self.queue.pop_front();
                } else {
                    front.written += n;
                    self.queued -= n;
                    n = 0;
                }
            }
        }
        // The queue is for bursts and slow readers; an idle socket keeps none.
        self.queue = VecDeque::new();
        Ok(true)
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.queued = 0;
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
