//! Room membership as a client that pipelines sees it: requests take effect in the
//! order sent, the registry and the session always agree, the cap counts what is
//! pending, and a narrower token leaves the rooms it no longer allows.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

fn join_frame(room: &str) -> String {
    json!({"event": "joinRoom", "data": {"room": room}, "ref": format!("j-{room}")}).to_string()
}

fn leave_frame(room: &str) -> String {
    json!({"event": "leaveRoom", "data": {"room": room}, "ref": format!("l-{room}")}).to_string()
}

#[actix_web::test]
async fn pipelined_join_and_leave_pairs_leave_no_membership_behind() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_frame_burst = 200)
        .spawn()
        .await;
    let mut socket = app.ws(&admin()).await;
    // 40 pairs on the same room and on 40 rooms, sent without waiting for any reply.
    for i in 0..40 {
        let room = if i % 2 == 0 {
            "x".to_owned()
        } else {
            format!("r{i}")
        };
        socket.send_text(&join_frame(&room)).await;
        socket.send_text(&leave_frame(&room)).await;
    }
    for i in 0..40 {
        let room = if i % 2 == 0 {
            "x".to_owned()
        } else {
            format!("r{i}")
        };
        let joined = socket.recv().await;
        assert_eq!(joined["event"], "joinedRoom", "{joined}");
        assert_eq!(joined["ref"], format!("j-{room}"));
        let left = socket.recv().await;
        assert_eq!(left["event"], "leftRoom", "{left}");
        assert_eq!(left["data"]["room"], room.as_str());
    }
    let stats = app.hub.stats().await.unwrap();
    assert_eq!((stats.memberships, stats.rooms), (0, 0), "{stats:?}");
    // And nothing is delivered for the rooms left.
    let (status, _) = app
        .post(
            "/api/rooms/x/events",
            &service(),
            &json!({"event": "e", "data": 1}),
        )
        .await;
    assert_eq!(status, 202);
    socket.assert_silent(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn the_room_cap_counts_joins_still_pending() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_rooms_per_connection = 3)
        .spawn()
        .await;
    let mut socket = app.ws(&admin()).await;
    for room in ["a", "b", "c", "d"] {
        socket.send_text(&join_frame(room)).await;
    }
    // `d` is refused at once; a, b and c are joined in order.
    let mut events = Vec::new();
    for _ in 0..4 {
        let frame = socket.recv().await;
        events.push((frame["event"].clone(), frame["ref"].clone()));
    }
    assert!(
        events.contains(&(json!("error"), json!("j-d"))),
        "{events:?}"
    );
    let joined: Vec<_> = events
        .iter()
        .filter(|(e, _)| e == "joinedRoom")
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(joined, [json!("j-a"), json!("j-b"), json!("j-c")]);
    // A leave queued behind a join frees its place for the join after it.
    socket.send_text(&leave_frame("a")).await;
    socket.send_text(&join_frame("d")).await;
    assert_eq!(socket.recv().await["event"], "leftRoom");
    assert_eq!(socket.recv().await["event"], "joinedRoom");
    assert_eq!(app.hub.stats().await.unwrap().memberships, 3);
}

#[actix_web::test]
async fn a_refresh_to_a_narrower_token_leaves_the_rooms_it_no_longer_allows() {
    let app = TestApp::builder().spawn().await;
    let mut socket = app.ws(&client_with_rooms(&["a", "b"])).await;
    socket.join("a", None).await;
    socket.join("b", None).await;
    socket
        .send(json!({"event": "refreshToken", "data": {"token": client_with_rooms(&["a"])}, "ref": "r"}))
        .await;
    assert_eq!(socket.recv().await["event"], "tokenRefreshed");
    assert_eq!(
        socket.recv().await,
        json!({"event": "leftRoom", "data": {"room": "b", "reason": "forbidden"}})
    );
    for room in ["b", "a"] {
        let path = format!("/api/rooms/{room}/events");
        let (status, _) = app
            .post(&path, &service(), &json!({"event": "e", "data": room}))
            .await;
        assert_eq!(status, 202);
    }
    assert_eq!(socket.recv().await["data"], "a");
    socket.assert_silent(Duration::from_millis(300)).await;
    assert_eq!(app.hub.stats().await.unwrap().memberships, 1);
}

#[actix_web::test]
async fn a_history_room_on_one_node_versions_and_replays_its_events() {
    let app = TestApp::builder()
        .configure(|s| s.delivery.history_rooms = vec!["orders-*".into()])
        .spawn()
        .await;
    let token = client_with_rooms(&["orders-*"]);
    for n in 1..=3 {
        let body = json!({"event": "order", "data": {"n": n}});
        let (status, _) = app
            .post("/api/rooms/orders-7/events", &service(), &body)
            .await;
        assert_eq!(status, 202);
    }
    let mut socket = app.ws(&token).await;
    let joined = socket.join("orders-7", Some(1)).await;
    assert_eq!(joined["data"]["version"], 3);
    assert_eq!(joined["data"]["recovered"], true);
    for n in 2..=3 {
        assert_eq!(
            socket.recv().await,
            json!({"event": "order", "room": "orders-7", "data": {"n": n}, "version": n})
        );
    }
    socket.assert_silent(Duration::from_millis(200)).await;
}
