//! The WebSocket protocol: acks with `ref`, room authorization, fan-out of every
//! action to the right room only, emits, and bad frames that never close the socket.

use std::time::Duration;

use awc::ws;
use futures_util::SinkExt;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn join_and_leave_are_acknowledged_with_ref() {
    let app = TestApp::builder().spawn().await;
    let mut socket = app.ws(&provider(42)).await;
    let joined = socket.join("provider-42", None).await;
    assert_eq!(
        joined["data"],
        json!({"room": "provider-42", "version": 0, "epoch": ""})
    );

    // Joining again answers again, with one membership.
    socket.join("provider-42", None).await;
    assert_eq!(app.hub.stats().await.unwrap().memberships, 1);

    socket
        .send(json!({"event": "leaveRoom", "data": {"room": "provider-42"}, "ref": 7}))
        .await;
    let left = socket.recv().await;
    assert_eq!(
        left,
        json!({"event": "leftRoom", "data": {"room": "provider-42"}, "ref": 7})
    );
    assert_eq!(app.hub.stats().await.unwrap().memberships, 0);
    // Leaving a room not joined still answers.
    socket
        .send(json!({"event": "leaveRoom", "data": {"room": "provider-42"}}))
        .await;
    assert_eq!(socket.recv().await["event"], "leftRoom");

    // Non-provider rooms have no version.
    let mut admin_socket = app.ws(&admin()).await;
    let joined = admin_socket.join("lobby", None).await;
    assert_eq!(joined["data"], json!({"room": "lobby"}));
}

#[actix_web::test]
async fn rooms_are_authorized_by_role_provider_and_rooms_claim() {
    let app = TestApp::builder().spawn().await;
    let cases = [
        (provider(42), "provider-42", true),
        (provider(42), "provider-43", false),
        (provider(42), "lobby", false),
        (client_with_rooms(&[]), "provider-42", false),
        (client_with_rooms(&["provider-*"]), "provider-42", true),
        (client_with_rooms(&["lobby"]), "lobby", true),
        (client_with_rooms(&["lobby"]), "lobby-2", false),
        (service(), "provider-1", true),
        (admin(), "anything.at:all", true),
    ];
    for (token, room, allowed) in cases {
        let mut socket = app.ws(&token).await;
        socket
            .send(json!({"event": "joinRoom", "data": {"room": room}, "ref": "r"}))
            .await;
        let reply = socket.recv().await;
        if allowed {
            assert_eq!(reply["event"], "joinedRoom", "{room}: {reply}");
        } else {
            assert_eq!(reply["event"], "error", "{room}: {reply}");
            assert_eq!(reply["data"]["code"], "forbidden");
            assert_eq!(reply["ref"], "r");
        }
    }
}

async fn every_action_reaches_the_room_and_only_the_room(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let mut watcher = app.ws(&provider(1)).await;
    watcher.join("provider-1", None).await;
    let mut other = app.ws(&provider(2)).await;
    other.join("provider-2", None).await;
    let mut bystander = app.ws(&admin()).await;

    let slot = app.create_slot(1, 0).await;
    let id = slot["id"].as_i64().unwrap();
    let created = watcher.recv().await;
    assert_eq!(created["event"], "availabilityUpdated");
    assert_eq!(created["room"], "provider-1");
    assert_eq!(created["data"]["action"], "created");
    assert_eq!(created["data"]["version"], 1);
    assert_eq!(created["data"]["slot"], slot);

    let (_, patched) = app
        .patch(
            &format!("/api/availability/{id}"),
            &admin(),
            &json!({"status": "blocked"}),
        )
        .await;
    let updated = watcher.recv().await;
    assert_eq!(updated["data"]["action"], "updated");
    assert_eq!(updated["data"]["version"], 2);
    assert_eq!(updated["data"]["slot"], patched);

    app.delete(&format!("/api/availability/{id}"), &admin())
        .await;
    let deleted = watcher.recv().await;
    assert_eq!(deleted["data"]["action"], "deleted");
    assert_eq!(deleted["data"]["version"], 3);
    assert_eq!(
        deleted["data"]["slot"], patched,
        "a deleted event carries the slot as it was"
    );

    // Provider 2's room and a socket in no room heard nothing.
    other.assert_silent(Duration::from_millis(300)).await;
    bystander.assert_silent(Duration::from_millis(100)).await;
    // Provider 2's own change reaches only provider 2.
    app.create_slot(2, 0).await;
    assert_eq!(other.recv().await["data"]["slot"]["providerId"], 2);
    watcher.assert_silent(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn emit_to_room_and_broadcast() {
    let app = TestApp::builder().spawn().await;
    let mut in_room = app.ws(&client_with_rooms(&["lobby"])).await;
    in_room.join("lobby", None).await;
    let mut elsewhere = app.ws(&provider(3)).await;

    let (status, _) = app
        .post(
            "/api/rooms/lobby/events",
            &service(),
            &json!({"event": "promo", "data": {"pct": 10}}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        in_room.recv().await,
        json!({"event": "promo", "room": "lobby", "data": {"pct": 10}})
    );
    elsewhere.assert_silent(Duration::from_millis(200)).await;

    let (status, _) = app
        .post(
            "/api/broadcast",
            &admin(),
            &json!({"event": "maintenance", "data": "soon"}),
        )
        .await;
    assert_eq!(status, 202);
    let expected = json!({"event": "maintenance", "data": "soon"});
    assert_eq!(in_room.recv().await, expected);
    assert_eq!(elsewhere.recv().await, expected);

    // Only admin and service may emit.
    for token in [provider(3), client_with_rooms(&["*"])] {
        assert_eq!(
            app.post("/api/broadcast", &token, &json!({"event": "x"}))
                .await
                .0,
            403
        );
        assert_eq!(
            app.post("/api/rooms/lobby/events", &token, &json!({"event": "x"}))
                .await
                .0,
            403
        );
    }
}

#[actix_web::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_usable() {
    let app = TestApp::builder().spawn().await;
    let mut socket = app.ws(&provider(8)).await;
    let cases = [
        ("not json", "bad_request"),
        ("[1,2]", "bad_request"),
        ("\"joinRoom\"", "bad_request"),
        ("{}", "bad_request"),
        (r#"{"event": 5}"#, "bad_request"),
        (r#"{"event": "dance", "ref": "d"}"#, "unknown_event"),
        (r#"{"event": "joinRoom"}"#, "bad_request"),
        (
            r#"{"event": "joinRoom", "data": "provider-8"}"#,
            "bad_request",
        ),
        (
            r#"{"event": "joinRoom", "data": {"room": 8}}"#,
            "bad_request",
        ),
        (
            r#"{"event": "joinRoom", "data": {"room": ""}}"#,
            "bad_request",
        ),
        (
            r#"{"event": "joinRoom", "data": {"room": "has space"}}"#,
            "bad_request",
        ),
        (
            r#"{"event": "joinRoom", "data": {"room": "provider-8", "since": "3"}}"#,
            "bad_request",
        ),
        (
            r#"{"event": "joinRoom", "data": {"room": "provider-8", "since": -3}}"#,
            "bad_request",
        ),
        (r#"{"event": "leaveRoom", "data": {}}"#, "bad_request"),
        (
            r#"{"event": "refreshToken", "data": {"token": 1}}"#,
            "bad_request",
        ),
        (
            r#"{"event": "refreshToken", "data": {"token": "nope"}}"#,
            "unauthorized",
        ),
        (
            r#"{"event": "joinRoom", "data": {"room": "provider-9"}}"#,
            "forbidden",
        ),
    ];
    for (text, code) in cases {
        socket.send_text(text).await;
        let reply = socket.recv().await;
        assert_eq!(reply["event"], "error", "{text} answered {reply}");
        assert_eq!(reply["data"]["code"], code, "{text} answered {reply}");
        assert!(reply["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let long_room = "r".repeat(129);
    socket
        .send(json!({"event": "joinRoom", "data": {"room": long_room}}))
        .await;
    assert_eq!(socket.recv().await["data"]["code"], "bad_request");

    socket
        .framed
        .send(ws::Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let reply = socket.recv().await;
    assert_eq!(reply["data"]["code"], "bad_request");
    // A binary frame is not JSON: it has no ref to echo.
    assert!(reply.get("ref").is_none(), "{reply}");

    // Still usable.
    socket.join("provider-8", None).await;
    app.create_slot(8, 0).await;
    assert_eq!(socket.recv().await["event"], "availabilityUpdated");
}

#[actix_web::test]
async fn server_pings_and_answers_pings() {
    let app = TestApp::builder()
        .configure(|s| s.limits.heartbeat_secs = 1)
        .spawn()
        .await;
    let mut socket = app.ws(&admin()).await;
    socket
        .framed
        .send(ws::Message::Ping("hi".into()))
        .await
        .unwrap();
    let mut got_pong = false;
    let mut got_ping = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !(got_pong && got_ping) && std::time::Instant::now() < deadline {
        use futures_util::StreamExt;
        match actix_web::rt::time::timeout(Duration::from_secs(3), socket.framed.next()).await {
            Ok(Some(Ok(ws::Frame::Pong(p)))) => got_pong = &p[..] == b"hi",
            Ok(Some(Ok(ws::Frame::Ping(_)))) => got_ping = true,
            _ => {}
        }
    }
    assert!(got_pong, "the hub answers a client ping");
    assert!(got_ping, "the hub pings every heartbeat");
}

#[actix_web::test]
async fn a_silent_client_is_dropped() {
    let app = TestApp::builder()
        .configure(|s| {
            s.limits.heartbeat_secs = 1;
            s.limits.client_timeout_secs = 2;
        })
        .spawn()
        .await;
    // This client never answers pings: `framed` is read only through `ending`, which
    // skips pings without answering them.
    let mut socket = app.ws(&admin()).await;
    let started = std::time::Instant::now();
    let ending = loop {
        use futures_util::StreamExt;
        match actix_web::rt::time::timeout(Duration::from_secs(10), socket.framed.next()).await {
            Ok(Some(Ok(ws::Frame::Close(reason)))) => {
                break Ending::Close(reason.map(|r| u16::from(r.code)).unwrap_or(1005))
            }
            Ok(Some(Ok(_))) => continue,
            _ => break Ending::Dropped,
        }
    };
    assert_eq!(ending, Ending::Close(1000));
    assert!(started.elapsed() >= Duration::from_secs(2));
    app.wait_for_sessions(0).await;
}

crate::on_both_backends!(every_action_reaches_the_room_and_only_the_room,);

#[actix_web::test]
async fn ping_is_answered_with_pong_and_counts_against_the_frame_rate() {
    let app = TestApp::builder()
        .configure(|s| {
            s.limits.max_frames_per_sec = 1;
            s.limits.max_frame_burst = 2;
        })
        .spawn()
        .await;
    let mut socket = app.ws(&provider(42)).await;
    socket.send(json!({"event": "ping", "ref": "hb-1"})).await;
    assert_eq!(socket.recv().await, json!({"event": "pong", "ref": "hb-1"}));
    // The burst of 2 is spent by the second ping; the third is refused like any frame.
    socket.send(json!({"event": "ping", "ref": "hb-2"})).await;
    socket.send(json!({"event": "ping", "ref": "hb-3"})).await;
    assert_eq!(socket.recv().await, json!({"event": "pong", "ref": "hb-2"}));
    let refused = socket.recv().await;
    assert_eq!(refused["event"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "rate_limited");
}
