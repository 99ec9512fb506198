//! The upgrade itself, on raw sockets: what a client sends with its handshake reaches
//! the session, pipelined frames are answered in order, upgrade requests that are not
//! a handshake to `/ws` get the errors a route would give, the node's socket limit,
//! and the close handshake.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use actix_web::rt::task::spawn_blocking as blocking;
use serde_json::{json, Value};

use crate::helpers::*;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// Sends `bytes` in one write and reads until the server closes or stays silent for
/// `wait`: the HTTP head, and everything after it.
fn exchange(port: u16, bytes: Vec<u8>, wait: Duration) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
        }
    }
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
        .unwrap_or(all.len());
    let rest = all.split_off(end);
    (String::from_utf8_lossy(&all).into_owned(), rest)
}

fn texts(frames: &[(u8, Vec<u8>)]) -> Vec<Value> {
    frames
        .iter()
        .filter(|(op, _)| *op == TEXT)
        .map(|(_, payload)| serde_json::from_slice(payload).unwrap())
        .collect()
}

#[actix_web::test]
async fn frames_sent_in_the_same_write_as_the_handshake_are_all_answered_in_order() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    // What a polite client would not do: the handshake and 40 requests in one write,
    // so the frames arrive in the bytes the HTTP server read with the request.
    let mut bytes = upgrade_request("GET", "/ws", port, &admin()).into_bytes();
    for i in 0..20 {
        let join =
            json!({"event": "joinRoom", "data": {"room": format!("provider-{i}")}, "ref": i});
        bytes.extend(client_frame(TEXT, join.to_string().as_bytes()));
        bytes.extend(client_frame(PING, format!("p{i}").as_bytes()));
    }
    let (head, rest) = blocking(move || exchange(port, bytes, Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let frames = server_frames(&rest);
    let replies = texts(&frames);
    let refs: Vec<_> = replies.iter().map(|r| r["ref"].as_i64().unwrap()).collect();
    assert_eq!(refs, (0..20).collect::<Vec<_>>(), "{replies:?}");
    assert!(replies.iter().all(|r| r["event"] == "joinedRoom"));
    let pongs: Vec<_> = frames
        .iter()
        .filter(|(op, _)| *op == 0xA)
        .map(|(_, payload)| String::from_utf8(payload.clone()).unwrap())
        .collect();
    assert_eq!(pongs, (0..20).map(|i| format!("p{i}")).collect::<Vec<_>>());
    app.wait_for_sessions(0).await;
}

#[actix_web::test]
async fn a_clients_close_is_answered_with_its_code() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    for code in [1000u16, 1001, 4321] {
        let mut bytes = upgrade_request("GET", "/ws", port, &admin()).into_bytes();
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        bytes.extend(client_frame(CLOSE, &payload));
        let (head, rest) = blocking(move || exchange(port, bytes, Duration::from_secs(10)))
            .await
            .unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The close comes back and then the end of the stream (the read above ended).
        assert_eq!(server_frames(&rest), [(CLOSE, code.to_be_bytes().to_vec())]);
    }
    app.wait_for_sessions(0).await;
}

#[actix_web::test]
async fn upgrade_requests_that_are_not_a_handshake_to_ws_get_a_route_like_error() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    for (path, method, status, code) in [
        ("/api/health", "GET", "404", "not_found"),
        ("/ws", "POST", "405", "method_not_allowed"),
        ("/ws", "GET", "401", "unauthorized"),
    ] {
        let token = if status == "401" {
            "not-a-jwt".to_owned()
        } else {
            admin()
        };
        let bytes = upgrade_request(method, path, port, &token).into_bytes();
        let (head, body) = blocking(move || exchange(port, bytes, Duration::from_secs(10)))
            .await
            .unwrap();
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], code, "{path} {method}: {body}");
    }
    // The hub serves on.
    let mut socket = app.ws(&admin()).await;
    socket.join("provider-1", None).await;
}

#[actix_web::test]
async fn a_node_holding_its_most_sockets_refuses_the_next_with_503() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_connections = 2)
        .spawn()
        .await;
    let first = app.ws(&admin()).await;
    let _second = app.ws(&service()).await;
    let request = app.http().ws(app.ws_url()).bearer_auth(provider(1));
    let status = app.handshake_status(request).await;
    assert_eq!(status, 503);
    first.close().await;
    app.wait_for_sessions(1).await;
    let mut third = app.ws_once_a_slot_frees(&provider(1)).await;
    third.join("provider-1", None).await;
}

#[actix_web::test]
async fn text_that_is_not_utf8_is_refused_with_1007() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    let mut bytes = upgrade_request("GET", "/ws", port, &admin()).into_bytes();
    bytes.extend(client_frame(TEXT, &[b'{', 0xff, 0xfe, b'}']));
    let (head, rest) = blocking(move || exchange(port, bytes, Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let frames = server_frames(&rest);
    let (op, payload) = frames.last().expect("a close frame");
    assert_eq!((*op, &payload[..2]), (CLOSE, &1007u16.to_be_bytes()[..]));
    app.wait_for_sessions(0).await;
}

#[actix_web::test]
async fn a_frame_larger_than_the_read_buffer_arrives_whole() {
    let app = TestApp::builder().spawn().await;
    let port = app.port;
    // A ref of 40 KB: ten times the session's small read buffer, within the message
    // limit. The reply echoes it, so it must have been read whole.
    let reference = "r".repeat(40_000);
    let join = json!({"event": "joinRoom", "data": {"room": "provider-1"}, "ref": reference});
    let mut bytes = upgrade_request("GET", "/ws", port, &admin()).into_bytes();
    bytes.extend(client_frame(TEXT, join.to_string().as_bytes()));
    let (_, rest) = blocking(move || exchange(port, bytes, Duration::from_secs(2)))
        .await
        .unwrap();
    let replies = texts(&server_frames(&rest));
    assert_eq!(replies[0]["event"], "joinedRoom");
    assert_eq!(replies[0]["ref"].as_str().map(str::len), Some(40_000));
}
