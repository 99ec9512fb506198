//! WebSocket framing (RFC 6455) for a session that owns its socket: the few header bytes
//! written in front of a shared payload, and the reader of client frames.
//!
//! Writing: a server frame is `header(len)` followed by the payload as is (servers do
//! not mask), so an event's shared bytes go to every recipient's socket in one vectored
//! write with no copy.
//!
//! Reading: [`FrameReader`] takes bytes as they arrive and yields whole messages
//! (continuations joined), refusing what the protocol or the message limit forbids
//! with the close code the peer must get. Its buffer starts small, grows only for a
//! frame larger than it, and shrinks back once that frame is consumed.

use actix_web::web::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

/// The read buffer a reader keeps between frames.
pub const SMALL_READ_BUFFER: usize = 4096;

/// The longest frame header: 2 bytes, 8 of extended length (servers send no mask).
pub const MAX_HEADER: usize = 10;

/// The largest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcodes the hub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// The header of a final, unmasked server frame of `len` payload bytes, in `out`;
/// returns the bytes to write before the payload.
pub fn header(opcode: OpCode, len: usize, out: &mut [u8; MAX_HEADER]) -> &[u8] {
    out[0] = 0x80 | opcode.bits();
    if len < 126 {
        out[1] = len as u8;
        &out[..2]
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        &out[..4]
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        &out[..10]
    }
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Checked to be UTF-8 once, here.
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The close code and reason, if the client sent one.
    Close(Option<(u16, Bytes)>),
}

/// Why the client's stream was refused: the close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// 1002: unmasked, reserved bits, an unknown opcode, a bad continuation, a long or
    /// fragmented control frame.
    Protocol,
    /// 1007: a text message that is not UTF-8.
    NotUtf8,
    /// 1009: a message over the limit.
    TooBig,
}

impl ReadError {
    /// The close code the client gets.
    pub fn close_code(self) -> u16 {
        match self {
            ReadError::Protocol => 1002,
            ReadError::NotUtf8 => 1007,
            ReadError::TooBig => 1009,
        }
    }
}

/// Reads client frames into messages.
pub struct FrameReader {
    /// Bytes read and not yet parsed. Its capacity is `SMALL_READ_BUFFER` except while
    /// a frame larger than that is being read (`shrink` brings it back after), or none
    /// while nothing is unread (`release_if_empty`).
    buffer: BytesMut,
    /// The fragments of a message whose last frame has not come yet; their total is at
    /// most `max_message`.
    partial: Option<(OpCode, BytesMut)>,
    max_message: usize,
    /// Set while `buffer` was grown past `SMALL_READ_BUFFER` for a large frame.
    grown: bool,
}

impl FrameReader {
    /// A reader refusing messages over `max_message` bytes, starting from `unread`
    /// (bytes that came with the handshake).
    pub fn new(max_message: usize, unread: &[u8]) -> Self {
        let mut buffer = BytesMut::with_capacity(SMALL_READ_BUFFER.max(unread.len()));
        buffer.extend_from_slice(unread);
        FrameReader {
            buffer,
            partial: None,
            max_message,
            grown: false,
        }
    }

    /// Where the next read goes: the buffer, with room for at least one more byte.
    pub fn buffer(&mut self) -> &mut BytesMut {
        if self.buffer.capacity() == self.buffer.len() {
            self.buffer.reserve(SMALL_READ_BUFFER);
        }
        &mut self.buffer
    }

    /// The next whole message, `None` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            let Some((fin, opcode, payload)) = self.next_frame()? else {
                return Ok(None);
            };
            if opcode.is_control() {
                return Ok(Some(control(opcode, payload)?));
            }
            let whole = match (opcode, self.partial.take()) {
                (OpCode::Continuation, None) => return Err(ReadError::Protocol),
                (OpCode::Continuation, Some((first, mut parts))) => {
                    if parts.len() + payload.len() > self.max_message {
                        return Err(ReadError::TooBig);
                    }
                    parts.extend_from_slice(&payload);
                    if !fin {
                        self.partial = Some((first, parts));
                        continue;
                    }
                    (first, parts.freeze())
                }
                (_, Some(_)) => return Err(ReadError::Protocol),
                (first, None) if !fin => {
                    self.partial = Some((first, BytesMut::from(&payload[..])));
                    continue;
                }
                (first, None) => (first, payload),
            };
            self.shrink();
            return match whole {
                (OpCode::Text, text) => ByteString::try_from(text)
                    .map(|text| Some(Message::Text(text)))
                    .map_err(|_| ReadError::NotUtf8),
                (_, binary) => Ok(Some(Message::Binary(binary))),
            };
        }
    }

    /// One whole frame, unmasked.
    fn next_frame(&mut self) -> Result<Option<(bool, OpCode, Bytes)>, ReadError> {
        let buf = &self.buffer[..];
        if buf.len() < 2 {
            return Ok(None);
        }
        let (fin, reserved) = (buf[0] & 0x80 != 0, buf[0] & 0x70);
        let opcode = OpCode::from_bits(buf[0] & 0x0f).ok_or(ReadError::Protocol)?;
        if reserved != 0 || buf[1] & 0x80 == 0 {
            // Clients must mask; no extension is negotiated.
            return Err(ReadError::Protocol);
        }
        let (len, at) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
            126 | 127 => return Ok(None),
            len => (len as u64, 2),
        };
        if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(ReadError::Protocol);
        }
        if len > self.max_message as u64 {
            return Err(ReadError::TooBig);
        }
        let len = len as usize;
        let total = at + 4 + len;
        if buf.len() < total {
            // Room for the whole frame, and no more than it needs.
            if total > SMALL_READ_BUFFER {
                self.grown = true;
            }
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        let mask: [u8; 4] = buf[at..at + 4].try_into().unwrap();
        self.buffer.advance(at + 4);
        let mut payload = self.buffer.split_to(len);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        Ok(Some((fin, opcode, payload.freeze())))
    }

    /// Gives a buffer grown for a large frame back, keeping what is unread. (A frame's
    /// payload shares the buffer's allocation; a new small buffer lets the large one go
    /// once the session has handled the message.)
    fn shrink(&mut self) {
        if self.grown && self.buffer.len() <= SMALL_READ_BUFFER {
            let mut small = BytesMut::with_capacity(SMALL_READ_BUFFER);
            small.extend_from_slice(&self.buffer);
            self.buffer = small;
            self.grown = false;
        }
    }

    /// Lets the buffer go when it holds nothing unread, so that an idle socket keeps
    /// no read buffer at all; the next [`FrameReader::buffer`] takes a small one again.
    pub fn release_if_empty(&mut self) {
        if self.buffer.is_empty() && self.partial.is_none() {
            self.buffer = BytesMut::new();
            self.grown = false;
        }
    }

    /// The read buffer's capacity (for tests and metrics).
    pub fn capacity(&self) -> usize {
        self.buffer.capacity()
    }
}

fn control(opcode: OpCode, payload: Bytes) -> Result<Message, ReadError> {
    Ok(match opcode {
        OpCode::Ping => Message::Ping(payload),
        OpCode::Pong => Message::Pong(payload),
        _ => match payload.len() {
            0 => Message::Close(None),
            1 => return Err(ReadError::Protocol),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = payload.slice(2..);
                if std::str::from_utf8(&reason).is_err() {
                    return Err(ReadError::NotUtf8);
                }
                Message::Close(Some((code, reason)))
            }
        },
    })
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
