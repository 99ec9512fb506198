//! The socket a session owns once its connection has left the HTTP dispatcher.
//!
//! [`Connection`] is the TCP stream, shared (on the session's own thread) by the
//! reader, the session's [`Outbox`](super::outbox::Outbox) and, after the session
//! ends, the task that flushes its last frames. When the last of them lets go, the
//! socket closes, and only then is its [`ConnectionSlot`] given back: a closing socket
//! still counts against `EVENTIDE_MAX_CONNECTIONS`.
//!
//! [`Incoming`] reads the client's frames with a [`FrameReader`]: a small buffer that
//! grows only with the bytes that arrive, and no buffer at all while the client is
//! quiet. It yields one item per frame, so the session counts every frame.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::frame::{FrameReader, Message, ReadError, ReaderLimits};
use super::writer::TryWrite;
use super::ConnectionSlot;

/// `sendmsg` flags: no `SIGPIPE` when the client has reset the connection (an error
/// instead), whatever the embedding process does with that signal.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const SEND_FLAGS: libc::c_int = 0;

/// One client's TCP stream and the slot it holds.
pub struct Connection {
    /// Declared before `_slot`: the descriptor closes first, then the slot is freed.
    stream: TcpStream,
    _slot: ConnectionSlot,
}

impl Connection {
    /// Wraps an upgraded stream, which holds `slot` until it closes.
    pub fn new(stream: TcpStream, slot: ConnectionSlot) -> Rc<Connection> {
        Rc::new(Connection {
            stream,
            _slot: slot,
        })
    }

    /// The stream, for waiting on readiness.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends FIN: the client reads what was written, then the end of the stream.
    pub fn shutdown_write(&self) {
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
    }
}

impl TryWrite for Connection {
    /// `sendmsg` rather than `writev`: the same bytes without the file layer
    /// (`writev` on a socket costs a few percent more per frame in the kernel).
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(&self.stream).send_vectored_with_flags(bufs, SEND_FLAGS)
        })
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.stream.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(&self.stream).send_with_flags(buf, SEND_FLAGS)
        })
    }
}

/// The client's messages, read straight from the socket.
pub struct Incoming {
    connection: Rc<Connection>,
    reader: FrameReader,
    /// Set once the stream has ended or broken the protocol: nothing more is read.
    done: bool,
}

impl Incoming {
    /// Reads `connection` within `limits`, starting with `unread` (bytes that came
    /// with the handshake).
    pub fn new(connection: Rc<Connection>, limits: ReaderLimits, unread: &[u8]) -> Self {
        Incoming {
            connection,
            reader: FrameReader::new(limits, unread),
            done: false,
        }
    }
}

impl Stream for Incoming {
    /// One per frame: a whole message or a fragment, or why the stream was refused
    /// (its close code); the stream ends
    /// after an error, at the client's end of stream, or when the socket fails.
    type Item = Result<Message, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.reader.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            // An idle socket holds no read buffer while it waits.
            this.reader.release_if_empty();
            if ready!(this.connection.stream.poll_read_ready(cx)).is_err() {
                this.done = true;
                return Poll::Ready(None);
            }
            match this.connection.stream.try_read_buf(this.reader.buffer()) {
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(_) => {}
                // Readiness was stale; `poll_read_ready` registers for the next wake.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}
