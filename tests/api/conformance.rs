//! RFC 6455 §5–§7 on raw sockets: every rule a server MUST keep that a client can
//! check from outside. Close codes, reserved bits and opcodes, masking, the control
//! frame rules, fragmentation with control frames between fragments, UTF-8 across
//! fragment boundaries, and the close handshake begun by either side.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use actix_web::rt::task::spawn_blocking as blocking;
use serde_json::Value;

use crate::helpers::*;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// A client frame with the given first byte (FIN, reserved bits, opcode), masked.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = client_frame(0, payload);
    bytes[0] = first;
    bytes
}

/// A blocking WebSocket client that sees every byte the hub sends.
struct Raw {
    stream: TcpStream,
    unread: Vec<u8>,
}

impl Raw {
    fn open(port: u16) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        upgrade_by_hand(&mut stream, port, &admin());
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            unread: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next server frame (first byte, payload), or `None` at the end of the stream.
    fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.unread.len() >= 2 {
                assert_eq!(self.unread[1] & 0x80, 0, "a server must not mask");
                let (len, at) = match self.unread[1] {
                    126 if self.unread.len() >= 4 => (
                        usize::from(u16::from_be_bytes([self.unread[2], self.unread[3]])),
                        4,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    len => (usize::from(len), 2),
                };
                if at > 0 && self.unread.len() >= at + len {
                    let payload = self.unread[at..at + len].to_vec();
                    let first = self.unread[0];
                    self.unread.drain(..at + len);
                    return Some((first, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("no frame from the hub: {e}"),
            }
        }
    }

    /// The frames before the hub's close frame, and that frame's code.
    fn until_close(&mut self) -> (Vec<(u8, Vec<u8>)>, Option<u16>) {
        let mut before = Vec::new();
        while let Some((first, payload)) = self.next() {
            assert_eq!(first & 0x70, 0, "reserved bits set by the hub");
            if first & 0x0f == CLOSE {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                return (before, code);
            }
            before.push((first, payload));
        }
        panic!("the stream ended without a close frame after {before:?}");
    }

    /// Answers the hub's close with ours, then expects the end of the stream: after
    /// the close handshake the hub closes the TCP connection.
    fn finish_close(mut self) {
        let _ = self
            .stream
            .write_all(&frame(FIN | CLOSE, &1000u16.to_be_bytes()));
        assert_eq!(self.next(), None, "nothing may follow the close frame");
    }
}

/// Sends `bytes` on a new socket and returns the frames before the hub's close and
/// its close code; then completes the close handshake.
async fn refused(port: u16, bytes: Vec<u8>) -> (Vec<(u8, Vec<u8>)>, Option<u16>) {
    blocking(move || {
        let mut raw = Raw::open(port);
        raw.send(&bytes);
        let outcome = raw.until_close();
        raw.finish_close();
        outcome
    })
    .await
    .unwrap()
}

fn replies(frames: &[(u8, Vec<u8>)]) -> Vec<Value> {
    frames
        .iter()
        .filter(|(first, _)| first & 0x0f == TEXT)
        .map(|(_, payload)| serde_json::from_slice(payload).unwrap())
        .collect()
}

#[actix_web::test]
async fn close_codes_no_endpoint_may_send_fail_the_connection_with_1002() {
    let app = TestApp::builder().spawn().await;
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let (_, got) = refused(app.port, frame(FIN | CLOSE, &code.to_be_bytes())).await;
        assert_eq!(got, Some(1002), "close code {code}");
    }
    app.wait_for_sessions(0).await;
}

#[actix_web::test]
async fn a_clients_close_is_echoed_and_nothing_after_it_is_read() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    for code in [
        Some(1000u16),
        Some(1003),
        Some(1007),
        Some(1014),
        Some(3000),
        Some(4999),
        None,
    ] {
        let ended = blocking(move || {
            let mut raw = Raw::open(port);
            let payload = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
            let mut bytes = frame(FIN | CLOSE, &payload);
            // A request after the close: never answered.
            bytes.extend(frame(FIN | TEXT, br#"{"event":"ping","ref":1}"#));
            raw.send(&bytes);
            let outcome = raw.until_close();
            // The hub half-closes after its close: the stream ends for the client.
            (outcome, raw.next())
        })
        .await
        .unwrap();
        assert_eq!(
            ended,
            ((vec![], Some(code.unwrap_or(1000))), None),
            "{code:?}"
        );
    }
    app.wait_for_sessions(0).await;
}

#[actix_web::test]
async fn bad_close_payloads_fail_the_connection() {
    let app = TestApp::builder().spawn().await;
    let (_, got) = refused(app.port, frame(FIN | CLOSE, &[0x03])).await;
    assert_eq!(got, Some(1002), "a one-byte close payload");
    let (_, got) = refused(app.port, frame(FIN | CLOSE, &[0x03, 0xE8, b'o', 0xC3])).await;
    assert_eq!(got, Some(1007), "a close reason that is not UTF-8");
    let (_, got) = refused(app.port, frame(FIN | CLOSE, &[b'x'; 126])).await;
    assert_eq!(got, Some(1002), "a close frame over 125 bytes");
}

#[actix_web::test]
async fn reserved_bits_reserved_opcodes_and_unmasked_frames_fail_with_1002() {
    let app = TestApp::builder().spawn().await;
    for rsv in [0x40, 0x20, 0x10] {
        let (_, got) = refused(app.port, frame(FIN | rsv | TEXT, b"{}")).await;
        assert_eq!(got, Some(1002), "reserved bit {rsv:#x}");
    }
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        let (_, got) = refused(app.port, frame(FIN | opcode, b"")).await;
        assert_eq!(got, Some(1002), "reserved opcode {opcode:#x}");
    }
    let unmasked = vec![FIN | TEXT, 2, b'{', b'}'];
    let (_, got) = refused(app.port, unmasked).await;
    assert_eq!(got, Some(1002), "an unmasked frame");
}

#[actix_web::test]
async fn control_frames_are_short_and_never_fragmented() {
    let app = TestApp::builder().spawn().await;
    for (what, bytes) in [
        ("a ping of 126 bytes", frame(FIN | PING, &[b'p'; 126])),
        ("a fragmented ping", frame(PING, b"p")),
        ("a fragmented pong", frame(PONG, b"p")),
        ("a fragmented close", frame(CLOSE, &1000u16.to_be_bytes())),
    ] {
        let (_, got) = refused(app.port, bytes).await;
        assert_eq!(got, Some(1002), "{what}");
    }
    // 125 bytes is the longest a control frame may be: answered.
    let port = app.port;
    let pong = blocking(move || {
        let mut raw = Raw::open(port);
        raw.send(&frame(FIN | PING, &[b'p'; 125]));
        raw.next()
    })
    .await
    .unwrap();
    assert_eq!(pong, Some((FIN | PONG, vec![b'p'; 125])));
}

#[actix_web::test]
async fn a_64_bit_length_with_its_top_bit_set_fails_with_1002() {
    let app = TestApp::builder().spawn().await;
    let mut bytes = vec![FIN | BINARY, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63 | 4).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]);
    let (_, got) = refused(app.port, bytes).await;
    assert_eq!(got, Some(1002));
}

#[actix_web::test]
async fn fragments_join_and_control_frames_between_them_are_answered_first() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    let frames = blocking(move || {
        let mut raw = Raw::open(port);
        let mut bytes = frame(TEXT, br#"{"event":"ping","#);
        bytes.extend(frame(FIN | PING, b"between"));
        bytes.extend(frame(0, br#""ref":"fr"#));
        bytes.extend(frame(FIN | PONG, b""));
        bytes.extend(frame(FIN, br#"agments"}"#));
        raw.send(&bytes);
        [raw.next().unwrap(), raw.next().unwrap()]
    })
    .await
    .unwrap();
    assert_eq!(frames[0], (FIN | PONG, b"between".to_vec()));
    let reply: Value = serde_json::from_slice(&frames[1].1).unwrap();
    assert_eq!(
        (reply["event"].as_str(), reply["ref"].as_str()),
        (Some("pong"), Some("fragments"))
    );
}

#[actix_web::test]
async fn continuations_out_of_order_fail_with_1002() {
    let app = TestApp::builder().spawn().await;
    let first = frame(FIN, b"{}");
    let mut second = frame(TEXT, b"{");
    second.extend(frame(FIN | TEXT, b"{}"));
    let mut third = frame(BINARY, b"x");
    third.extend(frame(TEXT, b"y"));
    for (what, bytes) in [
        ("a continuation of nothing", first),
        ("a new message inside a fragmented one", second),
        ("a new fragmented message inside one", third),
    ] {
        let (before, got) = refused(app.port, bytes).await;
        assert_eq!((replies(&before), got), (vec![], Some(1002)), "{what}");
    }
}

#[actix_web::test]
async fn text_is_utf8_across_fragment_boundaries() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    // "é€😀" in the ref, each code point cut between two frames.
    let text = r#"{"event":"ping","ref":"é€😀"}"#.as_bytes();
    let at = text.iter().position(|b| *b == 0xC3).unwrap();
    let cuts = [0, at + 1, at + 3, at + 6, text.len()];
    let reply = blocking(move || {
        let mut raw = Raw::open(port);
        for (i, part) in cuts.windows(2).enumerate() {
            let opcode = if i == 0 { TEXT } else { 0 };
            let fin = if part[1] == text.len() { FIN } else { 0 };
            raw.send(&frame(fin | opcode, &text[part[0]..part[1]]));
        }
        raw.next().unwrap()
    })
    .await
    .unwrap();
    let reply: Value = serde_json::from_slice(&reply.1).unwrap();
    assert_eq!(reply["ref"], "é€😀", "{reply}");

    // A message whose last frame ends inside a code point.
    let mut cut_at_the_end = frame(TEXT, br#"{"ref":"#);
    cut_at_the_end.extend(frame(FIN, b"\"\xE2\x82"));
    // An invalid sequence in a fragment, refused before the message ends.
    let mut invalid_inside = frame(TEXT, b"{\"ref\":\"\xF0\x28");
    invalid_inside.extend(frame(0, b"\x8C\x28\"}"));
    // A single frame ending in half a code point.
    let single = frame(FIN | TEXT, b"{}\xC3");
    for (what, bytes) in [
        ("cut at the end", cut_at_the_end),
        ("invalid inside", invalid_inside),
        ("a single frame", single),
    ] {
        let (before, got) = refused(app.port, bytes).await;
        assert_eq!((replies(&before), got), (vec![], Some(1007)), "{what}");
    }
}

#[actix_web::test]
async fn the_hubs_close_waits_for_the_clients_and_then_ends_the_connection() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    let (before, code) = blocking(move || {
        let mut raw = Raw::open(port);
        raw.send(&frame(FIN | 0x3, b""));
        let outcome = raw.until_close();
        // The hub sends nothing after its close; the client's close ends the
        // connection (`finish_close` reads the end of the stream).
        raw.finish_close();
        outcome
    })
    .await
    .unwrap();
    assert_eq!((before, code), (vec![], Some(1002)));
    app.wait_for_sessions(0).await;
}
