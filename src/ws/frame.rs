//! WebSocket framing (RFC 6455) for a session that owns its socket: the few header bytes
//! written in front of a shared payload, and the reader of client frames.
//!
//! Writing: a server frame is `header(len)` followed by the payload as is (servers do
//! not mask), so an event's shared bytes go to every recipient's socket in one vectored
//! write with no copy.
//!
//! Reading: [`FrameReader`] takes bytes as they arrive and yields one item per frame:
//! a whole message (continuations joined) or a fragment of one, refusing what RFC
//! 6455 §5 and §7 or the limits forbid with the close code the peer must get (text is
//! checked to be UTF-8 as its fragments come, a code point may be cut between them).
//! Its buffer starts small, grows only with the bytes that arrive, and shrinks back
//! once a large frame is consumed.

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
    /// The close code and reason, if the client sent one: a code a close frame may
    /// carry ([`close_code_allowed`]) and a UTF-8 reason.
    Close(Option<(u16, Bytes)>),
    /// A data frame that does not finish its message: nothing to handle yet, but a
    /// frame all the same (it counts against the frame rate).
    Fragment,
}

/// Why the client's stream was refused: the close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// 1002: unmasked, reserved bits, an unknown opcode, a bad continuation, a long or
    /// fragmented control frame, a 64-bit length with its top bit set, a close frame
    /// of one byte or with a code no endpoint may send.
    Protocol,
    /// 1007: a text message (or a close reason) that is not UTF-8.
    NotUtf8,
    /// 1009: a message over the byte limit.
    TooBig,
    /// 1009: a message in more fragments than the limit.
    TooManyFragments,
}

impl ReadError {
    /// The close code the client gets.
    pub fn close_code(self) -> u16 {
        match self {
            ReadError::Protocol => 1002,
            ReadError::NotUtf8 => 1007,
            ReadError::TooBig | ReadError::TooManyFragments => 1009,
        }
    }
}

/// What a reader refuses beyond the protocol's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderLimits {
    /// The largest message, its fragments together.
    pub max_message: usize,
    /// The most frames one message may come in.
    pub max_fragments: usize,
}

/// Whether a close frame may carry `code` (RFC 6455 §7.4): 1000–1003, 1007–1014 and
/// 3000–4999. The others are reserved, or (1005, 1006, 1015) never sent on the wire.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A client frame's header, checked against the protocol's rules for one frame.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: OpCode,
    /// The payload length, at most `max_message` (so adding it to a header length or
    /// a message's size never overflows).
    len: usize,
    /// Header bytes, mask included.
    size: usize,
    mask: [u8; 4],
}

impl Header {
    /// Parses the header at the start of `buf`: `None` until all of it (up to 14 bytes)
    /// has come. Only then is anything refused, in this order: the opcode, reserved
    /// bits, the mask, the control-frame rules, a length with its top bit set, and
    /// last a frame over `max_message`.
    fn parse(buf: &[u8], max_message: usize) -> Result<Option<Header>, ReadError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        let (len_bytes, masked) = match second & 0x7f {
            126 => (2, second & 0x80 != 0),
            127 => (8, second & 0x80 != 0),
            _ => (0, second & 0x80 != 0),
        };
        let size = 2 + len_bytes + if masked { 4 } else { 0 };
        if buf.len() < size {
            return Ok(None);
        }
        let len = match len_bytes {
            0 => u64::from(second & 0x7f),
            2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            _ => u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
        };
        let fin = first & 0x80 != 0;
        let opcode = OpCode::from_bits(first & 0x0f).ok_or(ReadError::Protocol)?;
        if first & 0x70 != 0 || !masked {
            // No extension is negotiated, and clients must mask.
            return Err(ReadError::Protocol);
        }
        if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(ReadError::Protocol);
        }
        if len >> 63 != 0 {
            return Err(ReadError::Protocol);
        }
        if len > max_message as u64 {
            return Err(ReadError::TooBig);
        }
        let mask = buf[size - 4..size].try_into().expect("4 bytes");
        Ok(Some(Header {
            fin,
            opcode,
            len: len as usize,
            size,
            mask,
        }))
    }
}

/// A message whose last frame has not come yet.
struct Partial {
    opcode: OpCode,
    /// Its payload so far: at most `max_message` bytes.
    parts: BytesMut,
    /// Frames so far: at most `max_fragments`.
    fragments: usize,
    /// For text, how far `parts` is known to be UTF-8 (a code point cut between
    /// frames is checked once its rest comes).
    checked: usize,
}

impl Partial {
    /// Checks the text received since the last check, allowing a code point cut at
    /// the end: a message that can no longer be UTF-8 is refused at once.
    fn check_text(&mut self) -> Result<(), ReadError> {
        if self.opcode != OpCode::Text {
            return Ok(());
        }
        match std::str::from_utf8(&self.parts[self.checked..]) {
            Ok(_) => self.checked = self.parts.len(),
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(ReadError::NotUtf8),
        }
        Ok(())
    }
}

/// Reads client frames into messages.
pub struct FrameReader {
    /// Bytes read and not yet parsed. It grows only as bytes arrive (doubling when
    /// full), never by the length a header announces; so it holds at most about twice
    /// one frame (a frame is at most `max_message` plus its header). While nothing
    /// is unread it is released (`release_if_empty`), and after a large frame it
    /// shrinks back to `SMALL_READ_BUFFER` (`shrink`).
    buffer: BytesMut,
    partial: Option<Partial>,
    limits: ReaderLimits,
    /// Set while `buffer`'s allocation was grown past `SMALL_READ_BUFFER` (its view
    /// may look small once a large frame was split off it).
    grown: bool,
}

impl FrameReader {
    /// A reader within `limits`, starting from `unread` (bytes that came with the
    /// handshake).
    pub fn new(limits: ReaderLimits, unread: &[u8]) -> Self {
        let mut buffer = BytesMut::with_capacity(SMALL_READ_BUFFER.max(unread.len()));
        buffer.extend_from_slice(unread);
        FrameReader {
            buffer,
            partial: None,
            limits,
            grown: false,
        }
    }

    /// Where the next read goes: the buffer, with room for at least one more byte.
    pub fn buffer(&mut self) -> &mut BytesMut {
        if self.buffer.capacity() == self.buffer.len() {
            let more = self.buffer.len().max(SMALL_READ_BUFFER);
            self.buffer.reserve(more);
            self.grown |= self.buffer.capacity() > SMALL_READ_BUFFER;
        }
        &mut self.buffer
    }

    /// What the next frame makes: a whole message, a [`Message::Fragment`] for a frame
    /// that does not finish its message, or `None` if more bytes are needed. Each
    /// frame gives exactly one item, so that every frame can be counted.
    pub fn next_message(&mut self) -> Result<Option<Message>, ReadError> {
        let Some(header) = Header::parse(&self.buffer, self.limits.max_message)? else {
            return Ok(None);
        };
        if !header.opcode.is_control() {
            self.check_sequence(&header)?;
        }
        if self.buffer.len() - header.size < header.len {
            return Ok(None);
        }
        self.buffer.advance(header.size);
        let mut payload = self.buffer.split_to(header.len);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= header.mask[i % 4];
        }
        self.shrink();
        let payload = payload.freeze();
        if header.opcode.is_control() {
            return control(header.opcode, payload).map(Some);
        }
        let whole = match self.partial.take() {
            None if header.fin => (header.opcode, payload),
            None => {
                let mut partial = Partial {
                    opcode: header.opcode,
                    parts: BytesMut::from(&payload[..]),
                    fragments: 1,
                    checked: 0,
                };
                partial.check_text()?;
                self.partial = Some(partial);
                return Ok(Some(Message::Fragment));
            }
            Some(mut partial) => {
                partial.parts.extend_from_slice(&payload);
                partial.fragments += 1;
                if !header.fin {
                    partial.check_text()?;
                    self.partial = Some(partial);
                    return Ok(Some(Message::Fragment));
                }
                (partial.opcode, partial.parts.freeze())
            }
        };
        match whole {
            (OpCode::Text, text) => ByteString::try_from(text)
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| ReadError::NotUtf8),
            (_, binary) => Ok(Some(Message::Binary(binary))),
        }
    }

    /// Refuses a data frame that cannot come now, before its payload is read: a
    /// continuation of nothing, a new message before the last one finished, or one
    /// that would pass the size or fragment limit.
    fn check_sequence(&self, header: &Header) -> Result<(), ReadError> {
        match (&self.partial, header.opcode) {
            (None, OpCode::Continuation) => Err(ReadError::Protocol),
            (None, _) => Ok(()),
            (Some(_), opcode) if opcode != OpCode::Continuation => Err(ReadError::Protocol),
            (Some(partial), _) => {
                if header.len > self.limits.max_message - partial.parts.len() {
                    Err(ReadError::TooBig)
                } else if partial.fragments >= self.limits.max_fragments {
                    Err(ReadError::TooManyFragments)
                } else {
                    Ok(())
                }
            }
        }
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

    /// Whether a message's first frames came and its last has not.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
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
                if !close_code_allowed(code) {
                    return Err(ReadError::Protocol);
                }
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

#[cfg(test)]
#[path = "frame_differential.rs"]
mod differential;
