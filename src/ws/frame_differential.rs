//! The reader against a second one built on tungstenite's frame header parser: the
//! same byte stream, whole for the reference and cut at arbitrary points for ours,
//! must give the same items (messages and fragments) and end the same way (waiting
//! for more bytes, closed, or failed with the same close code).
//!
//! The reference takes the header (opcode, reserved bits, mask, length) from
//! `tungstenite::protocol::frame::FrameHeader` and close-code validity from its
//! `CloseCode`, and checks the rest of RFC 6455 §5 and §7 the plain way: on the whole
//! stream, with each message's text checked whole. The one difference it allows is
//! close code 1014 (registered after tungstenite's table was written; RFC 6455 §7.4.2
//! leaves 1000–2999 to the registry).

use std::io::Cursor;

use proptest::prelude::*;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode as Op};
use tungstenite::protocol::frame::FrameHeader;

use super::tests::read_all;
use super::*;

/// How a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The last frame is incomplete (or there is none): more bytes are needed.
    Waiting,
    /// A close frame came; nothing after it is read.
    Closed,
    /// The connection fails with this close code.
    Failed(u16),
}

/// The reference reader.
fn reference(stream: &[u8], limits: ReaderLimits) -> (Vec<Message>, End) {
    let mut out = Vec::new();
    let mut at = 0;
    // The unfinished message: text or not, its bytes, its frames.
    let mut partial: Option<(bool, Vec<u8>, usize)> = None;
    let fail = |out, code| (out, End::Failed(code));
    loop {
        let mut cursor = Cursor::new(&stream[at..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Err(_) => return fail(out, 1002),
            Ok(None) => return (out, End::Waiting),
            Ok(Some(parsed)) => parsed,
        };
        let header_len = cursor.position() as usize;
        let control = matches!(header.opcode, Op::Control(_));
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return fail(out, 1002);
        }
        let Some(mask) = header.mask else {
            return fail(out, 1002);
        };
        if control && (!header.is_final || len > 125) {
            return fail(out, 1002);
        }
        if len >= 1 << 63 {
            return fail(out, 1002);
        }
        if len > limits.max_message as u64 {
            return fail(out, 1009);
        }
        if !control {
            match (header.opcode, &partial) {
                (Op::Data(Data::Continue), None) => return fail(out, 1002),
                (Op::Data(Data::Continue), Some((_, bytes, frames))) => {
                    if bytes.len() as u64 + len > limits.max_message as u64 {
                        return fail(out, 1009);
                    }
                    if *frames >= limits.max_fragments {
                        return fail(out, 1009);
                    }
                }
                (_, Some(_)) => return fail(out, 1002),
                (_, None) => {}
            }
        }
        let start = at + header_len;
        if ((stream.len() - start) as u64) < len {
            return (out, End::Waiting);
        }
        let end = start + len as usize;
        let payload: Vec<u8> = stream[start..end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        at = end;
        match header.opcode {
            Op::Control(Control::Ping) => out.push(Message::Ping(payload.into())),
            Op::Control(Control::Pong) => out.push(Message::Pong(payload.into())),
            Op::Control(Control::Close) => {
                if payload.is_empty() {
                    out.push(Message::Close(None));
                    return (out, End::Closed);
                }
                if payload.len() == 1 {
                    return fail(out, 1002);
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !CloseCode::from(code).is_allowed() && code != 1014 {
                    return fail(out, 1002);
                }
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return fail(out, 1007);
                }
                out.push(Message::Close(Some((code, payload[2..].to_vec().into()))));
                return (out, End::Closed);
            }
            Op::Control(_) => unreachable!("tungstenite refuses reserved opcodes"),
            Op::Data(data) => {
                let (text, mut bytes, frames) =
                    partial
                        .take()
                        .unwrap_or((data == Data::Text, Vec::new(), 0));
                bytes.extend_from_slice(&payload);
                if header.is_final {
                    if !text {
                        out.push(Message::Binary(bytes.into()));
                    } else if let Ok(text) = String::from_utf8(bytes) {
                        out.push(Message::Text(text.into()));
                    } else {
                        return fail(out, 1007);
                    }
                } else {
                    // Refused as soon as no continuation could make it UTF-8.
                    if let Err(e) = std::str::from_utf8(&bytes) {
                        if text && e.error_len().is_some() {
                            return fail(out, 1007);
                        }
                    }
                    partial = Some((text, bytes, frames + 1));
                    out.push(Message::Fragment);
                }
            }
        }
    }
}

/// Our reader, given the stream in pieces cut at `cuts`.
fn ours(stream: &[u8], cuts: &[usize], limits: ReaderLimits) -> (Vec<Message>, End) {
    let mut reader = FrameReader::new(limits, &[]);
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(0);
    cuts.push(stream.len());
    cuts.sort_unstable();
    for piece in cuts.windows(2) {
        for item in read_all(&mut reader, &stream[piece[0]..piece[1]]) {
            match item {
                Ok(message @ Message::Close(_)) => {
                    out.push(message);
                    return (out, End::Closed);
                }
                Ok(message) => out.push(message),
                Err(e) => return (out, End::Failed(e.close_code())),
            }
        }
        // The reader lets its buffer go between reads, as the socket does.
        reader.release_if_empty();
    }
    (out, End::Waiting)
}

/// One frame as a client might send it, well formed or not.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let opcode = prop_oneof![
        2 => Just(0x0u8),
        3 => Just(0x1),
        2 => Just(0x2),
        1 => Just(0x8),
        2 => Just(0x9),
        2 => Just(0xA),
        1 => 0u8..16,
    ];
    let payload = prop_oneof![
        4 => "[a-z{}\":é€😀]{0,40}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..12),
        1 => prop::collection::vec(any::<u8>(), 100..300),
        // A close payload: a code worth trying and a short reason.
        2 => (
            prop::sample::select(vec![
                0u16, 999, 1000, 1001, 1003, 1004, 1005, 1006, 1007, 1011, 1012, 1014, 1015,
                1016, 2999, 3000, 4999, 5000, 65535,
            ]),
            prop::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|(code, reason)| {
                let mut p = code.to_be_bytes().to_vec();
                p.extend(reason);
                p
            }),
    ];
    let length_form = prop_oneof![8 => Just(0u8), 1 => Just(126), 1 => Just(127), 1 => Just(255)];
    (
        prop::bool::weighted(0.7),
        prop_oneof![20 => Just(0u8), 1 => 1u8..8],
        opcode,
        prop::bool::weighted(0.95),
        length_form,
        payload,
        any::<[u8; 4]>(),
    )
        .prop_map(|(fin, rsv, opcode, masked, form, payload, mask)| {
            // Control frames are mostly final, as they must be.
            let fin = fin || (opcode >= 0x8 && mask[1] % 8 != 0);
            let mut bytes = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
            let mask_bit = if masked { 0x80 } else { 0 };
            let len = payload.len();
            match form {
                0 if len < 126 => bytes.push(mask_bit | len as u8),
                0 | 126 if len <= 0xFFFF => {
                    bytes.push(mask_bit | 126);
                    bytes.extend((len as u16).to_be_bytes());
                }
                255 => {
                    // A length no payload follows: too big, or with its top bit set.
                    bytes.push(mask_bit | 127);
                    let huge = if mask[0] & 1 == 0 {
                        1u64 << 63
                    } else {
                        1 << 40
                    };
                    bytes.extend((huge | len as u64).to_be_bytes());
                }
                _ => {
                    bytes.push(mask_bit | 127);
                    bytes.extend((len as u64).to_be_bytes());
                }
            }
            if masked {
                bytes.extend(mask);
            }
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            bytes
        })
}

/// A stream of frames, sometimes cut short or followed by noise.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (prop::collection::vec(frame(), 0..12), any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(frames, cut, truncate)| {
                let mut bytes = frames.concat();
                if truncate && !bytes.is_empty() {
                    bytes.truncate(cut % bytes.len());
                }
                bytes
            }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn the_reader_agrees_with_a_reference_built_on_tungstenite(
        stream in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max_message in 64usize..400,
        max_fragments in 1usize..6,
    ) {
        let limits = ReaderLimits { max_message, max_fragments };
        prop_assert_eq!(ours(&stream, &cuts, limits), reference(&stream, limits));
    }
}
