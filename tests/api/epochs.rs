//! Stream epochs: `joinedRoom` reports the epoch of a versioned room's stream; a
//! `since` of another epoch is not replayed; a stream that moves back in the database
//! (a restore, a failover to a replica that lacked the last commits; here the version
//! is lowered and the change-log rows above it deleted) restarts under a new epoch on
//! every node, each subscriber is told `recovered: false`, and the commits that reuse
//! the lowered numbers are delivered.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use crate::cluster::two_nodes_with;
use crate::helpers::*;

/// Moves provider `id`'s stream back to `version`, as a failover that lost the later
/// commits would.
async fn move_back(app: &TestApp, id: i64, version: i64) {
    let pool = app.pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get().expect("a connection");
        conn.batch_execute(&format!(
            "UPDATE providers SET version = {version} WHERE id = {id};
             DELETE FROM availability_changes WHERE provider_id = {id} AND version > {version};"
        ))
        .expect("the stream moves back");
    })
    .await
    .unwrap();
}

fn epoch_of(frame: &Value) -> String {
    frame["data"]["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch in {frame}"))
        .to_owned()
}

/// The next frame on `socket`, which must be an availability change; answers it
/// with its version.
async fn next_change(socket: &mut WsClient) -> (i64, Value) {
    let frame = socket.recv().await;
    assert_eq!(
        frame["event"], "availabilityUpdated",
        "expected a change: {frame}"
    );
    let version = frame["data"]["version"].as_i64().expect("a version");
    (version, frame)
}

async fn join_with_epoch(socket: &mut WsClient, room: &str, since: i64, epoch: &str) -> Value {
    let data = json!({"room": room, "since": since, "epoch": epoch});
    socket
        .send(json!({"event": "joinRoom", "data": data, "ref": "again"}))
        .await;
    socket.recv_event("joinedRoom").await
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_stream_moved_back_restarts_under_a_new_epoch_on_every_node() {
    let redis = PrivateRedis::spawn(free_port());
    let (a, b) = two_nodes_with(&redis.url(), |s| s.delivery.anti_entropy_ms = 500).await;
    for minute in 0..5 {
        a.create_slot(7, minute * 60).await;
    }
    let mut sockets = Vec::new();
    for node in [&a, &b] {
        let mut socket = node.ws(&client_with_rooms(&["provider-7"])).await;
        let joined = socket.join("provider-7", None).await;
        assert_eq!(joined["data"]["version"], 5);
        sockets.push((socket, epoch_of(&joined)));
    }
    let old = sockets[0].1.clone();
    assert_eq!(
        sockets[1].1, old,
        "both nodes report the stream's one epoch"
    );

    // The database forgets versions 4 and 5; the next commit takes 4 again.
    move_back(&a, 7, 3).await;
    let created = b.create_slot(7, 600).await;
    for (socket, _) in &mut sockets {
        let notice = socket.recv_event("joinedRoom").await;
        assert_eq!(notice["data"]["room"], "provider-7");
        assert_eq!(notice["data"]["recovered"], false, "{notice}");
        assert!(notice.get("ref").is_none(), "unsolicited: {notice}");
        let version = notice["data"]["version"].as_i64().unwrap();
        assert!((3..=4).contains(&version), "restarts at the head: {notice}");
        let fresh = epoch_of(&notice);
        assert_ne!(fresh, old);
        if version == 3 {
            // Told before the commit was seen: the commit follows as version 4.
            let (version, change) = next_change(socket).await;
            assert_eq!(version, 4);
            assert_eq!(change["data"]["slot"]["id"], created["id"]);
        }
    }
    // Both nodes ended on the same new epoch, and the stream goes on from there.
    let fresh = {
        let mut socket = a.ws(&client_with_rooms(&["provider-7"])).await;
        epoch_of(&socket.join("provider-7", None).await)
    };
    let mut other = b.ws(&client_with_rooms(&["provider-7"])).await;
    assert_eq!(epoch_of(&other.join("provider-7", None).await), fresh);
    assert_ne!(fresh, old);
    a.create_slot(7, 700).await;
    for (socket, _) in &mut sockets {
        assert_eq!(next_change(socket).await.0, 5, "5 is not a duplicate");
    }
    assert_eq!(next_change(&mut other).await.0, 5);
    for (socket, _) in &mut sockets {
        socket.assert_silent(Duration::from_millis(300)).await;
    }
    assert!(b.series("eventide_stream_rewinds_total").await >= 1.0);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn the_tick_finds_a_stream_moved_back_without_any_commit() {
    let redis = PrivateRedis::spawn(free_port());
    let (a, b) = two_nodes_with(&redis.url(), |s| s.delivery.anti_entropy_ms = 300).await;
    for minute in 0..4 {
        a.create_slot(8, minute * 60).await;
    }
    let mut sockets = Vec::new();
    for node in [&a, &b] {
        let mut socket = node.ws(&client_with_rooms(&["provider-8"])).await;
        let joined = socket.join("provider-8", None).await;
        sockets.push((socket, epoch_of(&joined)));
    }
    move_back(&a, 8, 2).await;
    let mut epochs = Vec::new();
    for (socket, old) in &mut sockets {
        let notice = socket.recv_event("joinedRoom").await;
        assert_eq!(notice["data"]["version"], 2, "{notice}");
        assert_eq!(notice["data"]["recovered"], false);
        assert_ne!(&epoch_of(&notice), old);
        epochs.push(epoch_of(&notice));
    }
    assert_eq!(epochs[0], epochs[1], "every node ends on one epoch");
    // No read loop and no second notice: the stream is quiet until the next commit.
    for (socket, _) in &mut sockets {
        socket.assert_silent(Duration::from_secs(1)).await;
    }
    b.create_slot(8, 900).await;
    for (socket, _) in &mut sockets {
        assert_eq!(next_change(socket).await.0, 3);
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL"]
async fn a_since_of_another_epoch_is_not_replayed() {
    let app = TestApp::builder().backend(Backend::Postgres).spawn().await;
    for minute in 0..3 {
        app.create_slot(9, minute * 60).await;
    }
    let mut socket = app.ws(&client_with_rooms(&["provider-9"])).await;
    let epoch = epoch_of(&socket.join("provider-9", None).await);

    let same = join_with_epoch(&mut socket, "provider-9", 1, &epoch).await;
    assert_eq!(same["data"]["recovered"], true, "{same}");
    assert_eq!(next_change(&mut socket).await.0, 2);
    assert_eq!(next_change(&mut socket).await.0, 3);

    let other = join_with_epoch(&mut socket, "provider-9", 1, "not-this-one").await;
    assert_eq!(other["data"]["recovered"], false, "{other}");
    assert_eq!(other["data"]["version"], 3);
    assert_eq!(epoch_of(&other), epoch);
    socket.assert_silent(Duration::from_millis(300)).await;
    // The stream goes on for the client that re-fetched.
    app.create_slot(9, 500).await;
    assert_eq!(next_change(&mut socket).await.0, 4);
}

/// The epoch a fresh socket's join of `room` on `app` reports, once it is not `""`.
async fn settled_epoch(app: &TestApp, room: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut socket = app.ws(&client_with_rooms(&[room])).await;
        let epoch = epoch_of(&socket.join(room, None).await);
        if !epoch.is_empty() {
            return epoch;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{room} never got an epoch"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn the_epoch_is_reported_and_outlives_a_restart_on_sqlite() {
    let app = TestApp::builder().spawn().await;
    let mut socket = app.ws(&client_with_rooms(&["provider-3"])).await;
    let unborn = socket.join("provider-3", None).await;
    assert_eq!(
        unborn["data"]["epoch"], "",
        "a stream without changes: {unborn}"
    );
    app.create_slot(3, 0).await;
    assert_eq!(next_change(&mut socket).await.0, 1);
    // The first change made the stream's epoch; the node learns it.
    let epoch = settled_epoch(&app, "provider-3").await;
    assert_eq!(epoch.len(), 12, "{epoch}");
    // A client that had the stream before its first change catches up.
    let caught_up = join_with_epoch(&mut socket, "provider-3", 0, "").await;
    assert_eq!(caught_up["data"]["recovered"], true, "{caught_up}");

    let (settings, dir) = (app.settings.clone(), app.dir.clone());
    app.shutdown.clone().run().await;
    drop(app);
    let again = TestApp::builder().same_data(settings, dir).spawn().await;
    let mut socket = again.ws(&client_with_rooms(&["provider-3"])).await;
    let joined = join_with_epoch(&mut socket, "provider-3", 0, &epoch).await;
    assert_eq!(
        epoch_of(&joined),
        epoch,
        "the epoch is the stream's, not the process's"
    );
    assert_eq!(joined["data"]["recovered"], true);
    assert_eq!(next_change(&mut socket).await.0, 1);
}

#[actix_web::test]
async fn a_history_room_moved_back_restarts_under_a_new_epoch_on_sqlite() {
    let app = TestApp::builder()
        .configure(|s| {
            s.delivery.history_rooms = vec!["orders-*".into()];
            s.delivery.anti_entropy_ms = 200;
        })
        .spawn()
        .await;
    let emit = |n: i64| {
        let app = &app;
        async move {
            let body = json!({"event": "order", "data": {"n": n}});
            let (status, _) = app
                .post("/api/rooms/orders-9/events", &service(), &body)
                .await;
            assert_eq!(status, 202);
        }
    };
    for n in 1..=3 {
        emit(n).await;
    }
    let mut socket = app.ws(&client_with_rooms(&["orders-*"])).await;
    let joined = socket.join("orders-9", None).await;
    assert_eq!(joined["data"]["version"], 3);
    let old = epoch_of(&joined);
    assert_eq!(
        old.len(),
        12,
        "the room's first event made its epoch: {joined}"
    );

    let pool = app.pool.clone();
    actix_web::web::block(move || {
        pool.get()
            .unwrap()
            .batch_execute(
                "UPDATE room_streams SET version = 1 WHERE room = 'orders-9';
                 DELETE FROM room_events WHERE room = 'orders-9' AND version > 1;",
            )
            .unwrap();
    })
    .await
    .unwrap();
    let notice = socket.recv_event("joinedRoom").await;
    assert_eq!(notice["data"]["version"], 1, "{notice}");
    assert_eq!(notice["data"]["recovered"], false);
    assert_ne!(epoch_of(&notice), old);
    // The number 2 is used again, and delivered.
    emit(20).await;
    let frame = socket.recv().await;
    assert_eq!(frame["version"], 2, "{frame}");
    assert_eq!(frame["data"]["n"], 20);
}
