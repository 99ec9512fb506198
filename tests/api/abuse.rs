//! A hostile client against the real binary: every frame counts, a fragmented message
//! is bounded in frames and in time, and a socket counts against
//! `EVENTIDE_MAX_CONNECTIONS` until its descriptor is closed.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actix_web::rt::task::spawn_blocking as blocking;

use crate::helpers::*;

/// A masked frame with `first` as its first byte and an empty payload.
fn empty_frame(first: u8) -> [u8; 6] {
    [first, 0x80, 1, 2, 3, 4]
}

/// Reads until the hub's close frame and returns its code (`None`: the stream ended
/// without one).
fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let frames = server_frames(&bytes);
        if let Some((_, payload)) = frames.iter().find(|(op, _)| *op == 0x8) {
            return Some(u16::from_be_bytes([payload[0], payload[1]]));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(_) => return None,
        }
    }
}

#[actix_web::test]
async fn twenty_thousand_empty_continuations_are_closed_with_1009() {
    let hub = HubProcess::start(&[]);
    let port = hub.port;
    let code = blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        upgrade_by_hand(&mut stream, port, &admin());
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut bytes = empty_frame(0x01).to_vec();
        for _ in 0..20_000 {
            bytes.extend(empty_frame(0x00));
        }
        // The hub may close before it has read them all.
        let _ = stream.write_all(&bytes);
        close_code(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1009));
}

#[actix_web::test]
async fn a_fragment_left_unfinished_is_closed_although_pongs_keep_coming() {
    // Pings every second, a client silent for 2 s is gone: an unfinished message
    // must be finished within those 2 s too.
    let hub = HubProcess::start(&[
        ("EVENTIDE_HEARTBEAT_SECS", "1"),
        ("EVENTIDE_CLIENT_TIMEOUT_SECS", "2"),
    ]);
    let port = hub.port;
    let (code, pongs) = blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        upgrade_by_hand(&mut stream, port, &admin());
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut fragment = vec![0x01, 0x80 | 1, 0, 0, 0, 0];
        fragment.push(b'{');
        stream.write_all(&fragment).unwrap();
        // A pong every 300 ms keeps the socket alive; the message stays unfinished.
        // The bound is the timeout plus a heartbeat; a minute is far past it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut pongs = 0;
        while Instant::now() < deadline {
            if stream.write_all(&empty_frame(0x8A)).is_err() {
                break;
            }
            pongs += 1;
            if let Some(code) = close_code(&mut stream) {
                return (Some(code), pongs);
            }
        }
        (None, pongs)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1008), "after {pongs} pongs");
}

/// The sockets `pid` holds open.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[actix_web::test]
async fn a_closing_socket_counts_until_its_descriptor_closes() {
    const MAX: usize = 40;
    let hub = HubProcess::start(&[("EVENTIDE_MAX_CONNECTIONS", "40")]);
    let (port, pid) = (hub.port, hub.child.id());
    let (most, accepted, refused) = blocking(move || {
        let baseline = sockets_of(pid);
        // Each client sends its close with the handshake, then neither reads nor
        // closes: the hub keeps the socket through its close grace and linger.
        let mut held = VecDeque::new();
        let (mut most, mut accepted, mut refused) = (0, 0, 0);
        for _ in 0..400 {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut bytes = upgrade_request("GET", "/ws", port, &admin()).into_bytes();
            bytes.extend(client_frame(0x8, &1000u16.to_be_bytes()));
            stream.write_all(&bytes).unwrap();
            let mut status = [0u8; 12];
            stream.read_exact(&mut status).unwrap();
            match &status[9..12] {
                b"101" => {
                    accepted += 1;
                    held.push_back((Instant::now(), stream));
                }
                b"503" => refused += 1,
                other => panic!("unexpected status {}", String::from_utf8_lossy(other)),
            }
            most = most.max(sockets_of(pid).saturating_sub(baseline));
            // Let go only of sockets the hub has long closed (its linger is 2 s), so
            // the client's own close never shortens what the hub holds.
            while held
                .front()
                .is_some_and(|(at, _)| at.elapsed() > Duration::from_secs(15))
            {
                held.pop_front();
            }
        }
        (most, accepted, refused)
    })
    .await
    .unwrap();
    assert!(
        refused > 0,
        "the limit was never reached ({accepted} accepted)"
    );
    // The limit, plus the few in the middle of a handshake: this loop's, and refused
    // ones whose descriptor the hub is about to close. (Without the limit holding to
    // the descriptor, a loop like this one makes the hub hold hundreds.)
    assert!(
        most <= MAX + 5,
        "the hub held {most} client sockets with EVENTIDE_MAX_CONNECTIONS={MAX}"
    );
}

/// A hub whose sockets may send a burst of 10 frames and then 1 a second, closed
/// after 5 refused ones.
async fn strict_hub(max_fragments: usize) -> TestApp {
    TestApp::builder()
        .configure(move |s| {
            s.limits.max_frame_burst = 10;
            s.limits.max_frames_per_sec = 1;
            s.limits.max_rate_limited_frames = 5;
            s.limits.max_fragments = max_fragments;
        })
        .spawn()
        .await
}

/// Opens a raw socket to `app`, sends `bytes` and returns the hub's close code.
async fn close_code_after(app: &TestApp, bytes: Vec<u8>) -> Option<u16> {
    let port = app.port;
    blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        upgrade_by_hand(&mut stream, port, &admin());
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(&bytes);
        close_code(&mut stream)
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn pongs_continuations_and_closes_count_against_the_frame_rate() {
    let app = strict_hub(1000).await;
    // 20 pongs: 10 allowed, then refused; the 6th refusal closes.
    let pongs = empty_frame(0x8A).repeat(20);
    assert_eq!(close_code_after(&app, pongs).await, Some(1008));
    // The same with the frames of one unfinished message.
    let mut fragments = empty_frame(0x01).to_vec();
    fragments.extend(empty_frame(0x00).repeat(19));
    assert_eq!(close_code_after(&app, fragments).await, Some(1008));
    // A close over the rate is honoured all the same.
    let mut then_close = empty_frame(0x8A).repeat(12);
    then_close.extend(client_frame(0x8, &4000u16.to_be_bytes()));
    assert_eq!(close_code_after(&app, then_close).await, Some(4000));
}

#[actix_web::test]
async fn a_message_with_a_fragment_over_the_rate_is_dropped_whole() {
    let app = strict_hub(64).await;
    let port = app.port;
    let reply = blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        upgrade_by_hand(&mut stream, port, &admin());
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // 12 frames of one ping request: the 11th and 12th are over the burst.
        let text = br#"{"event":"ping","ref":"whole"}"#;
        let mut bytes = Vec::new();
        for (i, byte) in text.iter().enumerate().take(11) {
            let first = if i == 0 { 0x01 } else { 0x00 };
            let mut frame = client_frame(0, &[*byte]);
            frame[0] = first;
            bytes.extend(frame);
        }
        bytes.extend(client_frame(0, &text[11..]));
        stream.write_all(&bytes).unwrap();
        let mut reply = Vec::new();
        let mut chunk = [0u8; 1024];
        while server_frames(&reply).is_empty() {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the stream ended");
            reply.extend_from_slice(&chunk[..n]);
        }
        server_frames(&reply).remove(0)
    })
    .await
    .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.1).unwrap();
    assert_eq!(reply["event"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "rate_limited", "{reply}");
    assert_eq!(reply["ref"], "whole", "{reply}");
}
