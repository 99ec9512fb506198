//! Fuzzes the reader of client WebSocket frames: any bytes, cut anywhere and read as
//! the socket reads them, give messages or a close code the protocol names, never a
//! panic; the buffer holds about what came, never what a header announced; and what
//! comes out keeps the limits (message size, fragments, control frames, close codes).
#![no_main]

use eventide_hub::ws::frame::{
    close_code_allowed, FrameReader, Message, ReaderLimits, SMALL_READ_BUFFER,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [size, fragments, cut, rest @ ..] = data else {
        return;
    };
    let limits = ReaderLimits {
        max_message: 16 + usize::from(*size) * 64,
        max_fragments: 1 + usize::from(*fragments % 16),
    };
    // The most the buffer may hold: less than one frame unread when it grows, and it
    // at most doubles.
    let most = 2 * (limits.max_message + 14) + 2 * SMALL_READ_BUFFER;
    let mut reader = FrameReader::new(limits, &[]);
    let mut in_message = 0;
    for piece in rest.chunks(1 + usize::from(*cut)) {
        let mut piece = piece;
        while !piece.is_empty() {
            let buffer = reader.buffer();
            let n = (buffer.capacity() - buffer.len()).min(piece.len());
            buffer.extend_from_slice(&piece[..n]);
            piece = &piece[n..];
            assert!(reader.capacity() <= most, "{} > {most}", reader.capacity());
            loop {
                match reader.next_message() {
                    Ok(None) => break,
                    Ok(Some(message)) => match message {
                        // `in_message` frames of the message came before this one.
                        Message::Fragment => {
                            in_message += 1;
                            assert!(in_message <= limits.max_fragments);
                        }
                        Message::Text(text) => {
                            assert!(text.len() <= limits.max_message);
                            assert!(in_message < limits.max_fragments);
                            in_message = 0;
                        }
                        Message::Binary(bytes) => {
                            assert!(bytes.len() <= limits.max_message);
                            assert!(in_message < limits.max_fragments);
                            in_message = 0;
                        }
                        Message::Ping(bytes) | Message::Pong(bytes) => assert!(bytes.len() <= 125),
                        Message::Close(Some((code, reason))) => {
                            assert!(close_code_allowed(code));
                            assert!(std::str::from_utf8(&reason).is_ok());
                        }
                        Message::Close(None) => {}
                    },
                    Err(e) => {
                        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                        return;
                    }
                }
            }
        }
        reader.release_if_empty();
    }
});
