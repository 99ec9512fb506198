//! Limits: rooms per connection, rate limit and flooding, message size, sockets per
//! subject, token expiry and refresh, pongs to a client that never reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use actix_web::rt::task::spawn_blocking as blocking;

use eventide_hub::auth::Role;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn too_many_rooms() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_rooms_per_connection = 3)
        .spawn()
        .await;
    let mut socket = app.ws(&admin()).await;
    for room in ["a", "b", "c"] {
        socket.join(room, None).await;
    }
    socket
        .send(json!({"event": "joinRoom", "data": {"room": "d"}, "ref": 4}))
        .await;
    let reply = socket.recv().await;
    assert_eq!(reply["data"]["code"], "too_many_rooms", "{reply}");
    assert_eq!(reply["ref"], 4);
    // Rejoining a room it is in is not a new room; leaving makes space.
    socket.join("a", None).await;
    socket
        .send(json!({"event": "leaveRoom", "data": {"room": "a"}}))
        .await;
    socket.recv_event("leftRoom").await;
    socket.join("d", None).await;
}

#[actix_web::test]
async fn flooding_is_rate_limited_then_closed_while_others_are_served() {
    let app = TestApp::builder()
        .configure(|s| {
            s.limits.max_frames_per_sec = 5;
            s.limits.max_frame_burst = 10;
            s.limits.max_rate_limited_frames = 20;
        })
        .spawn()
        .await;
    let mut calm = app.ws(&provider(1)).await;
    calm.join("provider-1", None).await;

    let mut flood = app.ws(&admin()).await;
    for i in 0..10 {
        flood
            .send(json!({"event": "leaveRoom", "data": {"room": "x"}, "ref": i}))
            .await;
    }
    for _ in 0..10 {
        assert_eq!(flood.recv().await["event"], "leftRoom");
    }
    flood
        .send(json!({"event": "leaveRoom", "data": {"room": "x"}, "ref": "over"}))
        .await;
    let refused = flood.recv().await;
    assert_eq!(refused["data"]["code"], "rate_limited", "{refused}");
    // The dropped frame's ref comes back, so the client knows which one to resend.
    assert_eq!(refused["ref"], "over", "{refused}");
    for _ in 0..40 {
        flood.send_text("{}").await;
    }
    assert_eq!(
        flood.ending(Duration::from_secs(5)).await,
        Ending::Close(1008)
    );

    // The calm client was served throughout.
    app.create_slot(1, 0).await;
    assert_eq!(calm.recv().await["event"], "availabilityUpdated");
}

#[actix_web::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_message_bytes = 4096)
        .spawn()
        .await;
    let mut socket = app.ws(&admin()).await;
    socket
        .send_text(&format!(
            "{{\"event\":\"joinRoom\",\"data\":{{\"room\":\"{}\"}}}}",
            "x".repeat(5000)
        ))
        .await;
    assert_eq!(
        socket.ending(Duration::from_secs(5)).await,
        Ending::Close(1009)
    );

    // Continuation frames count too.
    use actix_http::ws::Item;
    use awc::ws::Message;
    use futures_util::SinkExt;
    let mut socket = app.ws(&admin()).await;
    let chunk = bytestring::ByteString::from("y".repeat(3000));
    socket
        .framed
        .send(Message::Continuation(Item::FirstText(
            chunk.clone().into_bytes(),
        )))
        .await
        .unwrap();
    socket
        .framed
        .send(Message::Continuation(Item::Continue(
            chunk.clone().into_bytes(),
        )))
        .await
        .unwrap();
    socket
        .framed
        .send(Message::Continuation(Item::Last(chunk.into_bytes())))
        .await
        .unwrap();
    assert_eq!(
        socket.ending(Duration::from_secs(5)).await,
        Ending::Close(1009)
    );
    app.wait_for_sessions(0).await;
}

#[actix_web::test]
async fn sockets_per_subject_are_limited() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_connections_per_sub = 2)
        .spawn()
        .await;
    let token = provider(5);
    let first = app.ws(&token).await;
    let _second = app.ws(&token).await;
    assert_eq!(
        app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(&token))
            .await,
        429
    );
    // Another subject is not affected; a closed socket frees its place.
    assert_eq!(
        app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(provider(6)))
            .await,
        101
    );
    first.close().await;
    // Left: the second socket (the other subject's socket closed after its handshake).
    app.wait_for_sessions(1).await;
    app.ws_once_a_slot_frees(&token).await;
}

#[actix_web::test]
async fn a_token_that_never_expires_is_served_like_any_other() {
    let app = TestApp::builder().spawn().await;
    let token = sign(&json!({"sub": "eternal", "role": "admin", "exp": u64::MAX}));
    let mut socket = app.ws(&token).await;
    socket.join("lobby", None).await;
    socket
        .send(json!({"event": "refreshToken", "data": {"token": token}, "ref": 1}))
        .await;
    assert_eq!(socket.recv().await["event"], "tokenRefreshed");
    socket.assert_silent(Duration::from_millis(200)).await;
    assert_eq!(
        app.get("/api/providers/1/availability", &token).await.0,
        200
    );
}

#[actix_web::test]
async fn an_expired_token_closes_the_socket_with_4001() {
    let app = TestApp::builder()
        .configure(|s| s.jwt_leeway_secs = 0)
        .spawn()
        .await;
    let mut c = claims(Role::Provider, Some(3));
    c.exp = now() + 2;
    let mut socket = app.ws(&sign(&c)).await;
    socket.join("provider-3", None).await;
    assert_eq!(
        socket.ending(Duration::from_secs(6)).await,
        Ending::Close(4001)
    );
}

#[actix_web::test]
async fn a_token_expiring_heartbeats_after_the_connect_still_closes_on_time() {
    // Far from `exp` a session keeps no timer; a heartbeat arms one when it nears.
    let app = TestApp::builder()
        .configure(|s| {
            s.jwt_leeway_secs = 0;
            s.limits.heartbeat_secs = 1;
        })
        .spawn()
        .await;
    let mut c = claims(Role::Provider, Some(3));
    c.exp = now() + 5;
    let mut socket = app.ws(&sign(&c)).await;
    socket.join("provider-3", None).await;
    let started = std::time::Instant::now();
    assert_eq!(
        socket.ending(Duration::from_secs(9)).await,
        Ending::Close(4001)
    );
    // Not before `exp` (whole seconds: at least 3 s after the join).
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3), "closed after {waited:?}");
}

#[actix_web::test]
async fn refresh_keeps_the_socket_open_and_a_foreign_token_does_not() {
    let app = TestApp::builder()
        .configure(|s| s.jwt_leeway_secs = 0)
        .spawn()
        .await;
    let mut short = claims(Role::Provider, Some(3));
    short.exp = now() + 2;
    let mut socket = app.ws(&sign(&short)).await;

    let mut longer = claims(Role::Provider, Some(3));
    longer.exp = now() + 3600;
    socket
        .send(json!({"event": "refreshToken", "data": {"token": sign(&longer)}, "ref": "t"}))
        .await;
    let reply = socket.recv().await;
    assert_eq!(
        reply,
        json!({"event": "tokenRefreshed", "data": {"exp": longer.exp}, "ref": "t"})
    );
    socket.join("provider-3", None).await;
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    app.create_slot(3, 0).await;
    assert_eq!(
        socket.recv().await["event"],
        "availabilityUpdated",
        "still open after the old exp"
    );

    // Another identity's token is refused and the old expiry stands.
    short.exp = now() + 2;
    let mut socket = app.ws(&sign(&short)).await;
    let mut foreign = claims(Role::Provider, Some(4));
    foreign.exp = now() + 3600;
    socket
        .send(json!({"event": "refreshToken", "data": {"token": sign(&foreign)}}))
        .await;
    let reply = socket.recv().await;
    assert_eq!(reply["data"]["code"], "unauthorized", "{reply}");
    assert_eq!(
        socket.ending(Duration::from_secs(6)).await,
        Ending::Close(4001)
    );
}

/// Opens a WebSocket by hand with a small receive buffer, so little sits in the
/// client's kernel once it stops reading.
fn raw_socket(port: u16, token: &str) -> TcpStream {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&address.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    upgrade_by_hand(&mut stream, port, token);
    stream
}

#[actix_web::test]
async fn a_client_that_pings_and_never_reads_is_closed_with_1013() {
    let app = TestApp::builder()
        .configure(|s| {
            s.limits.max_pending_bytes = 64 * 1024;
            s.limits.max_frames_per_sec = 1_000_000;
            s.limits.max_frame_burst = 1_000_000;
        })
        .spawn()
        .await;
    let port = app.port;
    let mut stream = blocking(move || raw_socket(port, &admin())).await.unwrap();
    app.wait_for_sessions(1).await;
    stream = blocking(move || {
        // Masked pings (a zero mask keeps the payload as is) with the largest payload
        // a control frame may carry: 4 MB of them, many times what the kernel buffers
        // and the 64 KiB cap hold together. Once the hub has cut the client off it may
        // stop reading; then a write stalls or fails, and the client stops sending.
        let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
        ping.extend_from_slice(&[b'p'; 125]);
        let batch = ping.repeat(100);
        stream
            .set_write_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        for _ in 0..320 {
            if stream.write_all(&batch).is_err() {
                break;
            }
        }
        stream
    })
    .await
    .unwrap();
    // The session ends while the client still reads nothing: its pongs were counted.
    app.wait_for_sessions(0).await;

    let (read, frames) = blocking(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut tail = Vec::new();
        let read = stream.read_to_end(&mut tail);
        (read.map_err(|e| e.kind()), server_frames(&tail))
    })
    .await
    .unwrap();
    let pongs = frames.iter().filter(|(op, _)| *op == 0xA).count();
    let close = frames.iter().find(|(op, _)| *op == 0x8);
    let code = close.map(|(_, payload)| u16::from_be_bytes([payload[0], payload[1]]));
    assert_eq!(
        code,
        Some(1013),
        "no 1013 close after {pongs} pongs (read ended with {read:?})"
    );
    // At most what was in flight when the cap was passed, not one pong per ping.
    assert!(pongs < 32_000, "{pongs} pongs");
}
