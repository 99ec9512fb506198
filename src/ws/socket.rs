//! The socket a session owns once its connection has left the HTTP dispatcher.
//!
//! [`Connection`] is the TCP stream, shared (on the session's own thread) by the
//! reader, the session's [`Outbox`](super::outbox::Outbox) and, after the session
//! ends, the task that flushes its last frames. When the last of them lets go, the
//! socket closes.
//!
//! [`Incoming`] reads the client's frames with a [`FrameReader`]: a small buffer that
//! grows only for a large frame, and no buffer at all while the client is quiet.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use futures_util::Stream;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::frame::{FrameReader, Message, ReadError};
use super::writer::TryWrite;

/// One client's TCP stream.
pub struct Connection {
    stream: TcpStream,
}

impl Connection {
    /// Wraps an upgraded stream.
    pub fn new(stream: TcpStream) -> Rc<Connection> {
        Rc::new(Connection { stream })
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
            socket2::SockRef::from(&self.stream).send_vectored(bufs)
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
    /// Reads `connection`, starting with `unread` (bytes that came with the handshake).
    pub fn new(connection: Rc<Connection>, max_message: usize, unread: &[u8]) -> Self {
        Incoming {
            connection,
            reader: FrameReader::new(max_message, unread),
            done: false,
        }
    }
}

impl Stream for Incoming {
    /// A whole message, or why the stream was refused (its close code); the stream ends
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
