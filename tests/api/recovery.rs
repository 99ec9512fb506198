//! Recovery with `since`, and ordering under concurrent writers: every subscriber gets
//! every change once, in version order.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::*;

async fn join_with_since_replays_what_was_missed_in_order(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    for minute in 0..5 {
        app.create_slot(4, minute * 60).await;
    }
    let mut socket = app.ws(&provider(4)).await;
    let joined = socket.join("provider-4", Some(2)).await;
    let epoch = joined["data"]["epoch"].clone();
    assert_eq!(epoch.as_str().map(str::len), Some(12), "{joined}");
    assert_eq!(
        joined["data"],
        json!({"room": "provider-4", "version": 5, "epoch": epoch, "recovered": true})
    );
    for version in 3..=5 {
        let frame = socket.recv().await;
        assert_eq!(frame["event"], "availabilityUpdated");
        assert_eq!(frame["data"]["version"], version);
    }
    // Then live events, with no duplicate of the replay.
    app.create_slot(4, 600).await;
    assert_eq!(socket.recv().await["data"]["version"], 6);
    socket.assert_silent(Duration::from_millis(200)).await;

    // Up to date: recovered, nothing replayed.
    let mut fresh = app.ws(&provider(4)).await;
    let joined = fresh.join("provider-4", Some(6)).await;
    assert_eq!(joined["data"]["recovered"], true);
    fresh.assert_silent(Duration::from_millis(200)).await;

    // Ahead of the database (it was reset): not recovered, the client must re-fetch.
    let mut ahead = app.ws(&provider(4)).await;
    let joined = ahead.join("provider-4", Some(99)).await;
    assert_eq!(
        joined["data"],
        json!({"room": "provider-4", "version": 6, "epoch": epoch, "recovered": false})
    );
}

async fn since_older_than_the_kept_history_is_not_recovered(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    // 1,003 changes: the first three fall out of the 1,000 kept.
    let slot = app.create_slot(11, 0).await;
    let path = format!("/api/availability/{}", slot["id"]);
    for round in 0..(1002 / 6) {
        let patches = (0..6).map(|i| {
            let note = format!("n{}", round * 6 + i);
            let path = path.clone();
            let app = &app;
            async move { app.patch(&path, &admin(), &json!({"note": note})).await.0 }
        });
        assert!(join_all(patches).await.iter().all(|s| *s == 200));
    }
    let (_, list) = app.get("/api/providers/11/availability", &admin()).await;
    let version = list["version"].as_i64().unwrap();
    assert_eq!(version, 1003);

    let mut socket = app.ws(&provider(11)).await;
    let joined = socket.join("provider-11", Some(1)).await;
    assert_eq!(joined["data"]["recovered"], false);
    assert_eq!(joined["data"]["version"], version);
    socket.assert_silent(Duration::from_millis(200)).await;

    // 1,000 back is still kept.
    let mut socket = app.ws(&provider(11)).await;
    let joined = socket.join("provider-11", Some(version - 1000)).await;
    assert_eq!(joined["data"]["recovered"], true);
    for expected in (version - 999)..=version {
        assert_eq!(socket.recv().await["data"]["version"], expected);
    }
}

async fn twenty_subscribers_get_two_hundred_concurrent_changes_in_order(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        let mut socket = app.ws(&client_with_rooms(&["provider-*"])).await;
        socket.join("provider-21", None).await;
        subscribers.push(socket);
    }
    // 200 creates of distinct slots, 10 requests in flight at a time.
    for batch in 0..20 {
        let creates = (0..10).map(|i| {
            let minute = (batch * 10 + i) * 60;
            let app = &app;
            async move {
                app.post(
                    "/api/providers/21/availability",
                    &service(),
                    &slot_at(minute),
                )
                .await
                .0
            }
        });
        assert!(join_all(creates).await.iter().all(|s| *s == 201));
    }
    let receivers = subscribers.iter_mut().map(|socket| async move {
        let mut versions = Vec::new();
        for _ in 0..200 {
            versions.push(socket.recv().await["data"]["version"].as_i64().unwrap());
        }
        socket.assert_silent(Duration::from_millis(100)).await;
        versions
    });
    let expected: Vec<i64> = (1..=200).collect();
    for versions in join_all(receivers).await {
        assert_eq!(versions, expected);
    }
}

async fn joining_during_a_stream_of_changes_loses_and_repeats_nothing(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let writer = async {
        for minute in 0..60 {
            app.create_slot(31, minute * 60).await;
        }
    };
    let reader = async {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        let mut socket = app.ws(&provider(31)).await;
        let joined = socket.join("provider-31", Some(0)).await;
        assert_eq!(joined["data"]["recovered"], true);
        let mut versions = Vec::new();
        while versions.len() < 60 {
            versions.push(socket.recv().await["data"]["version"].as_i64().unwrap());
        }
        socket.assert_silent(Duration::from_millis(200)).await;
        versions
    };
    let ((), versions) = tokio::join!(writer, reader);
    assert_eq!(versions, (1..=60).collect::<Vec<i64>>());
}

crate::on_both_backends!(
    join_with_since_replays_what_was_missed_in_order,
    since_older_than_the_kept_history_is_not_recovered,
    twenty_subscribers_get_two_hundred_concurrent_changes_in_order,
    joining_during_a_stream_of_changes_loses_and_repeats_nothing,
);

/// Runs SQL on the hub's own database, as an operator's tool would.
async fn run_sql(app: &TestApp, sql: &'static str) {
    use diesel::connection::SimpleConnection;
    let pool = app.pool.clone();
    actix_web::web::block(move || pool.get().unwrap().batch_execute(sql).unwrap())
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_room_whose_history_stays_unreadable_closes_its_sockets_with_1013() {
    let app = TestApp::builder()
        .configure(|s| {
            s.delivery.anti_entropy_ms = 100;
            s.delivery.recovery_deadline_secs = 1;
        })
        .spawn()
        .await;
    let mut socket = app.ws(&provider(61)).await;
    socket.join("provider-61", None).await;
    app.create_slot(61, 0).await;
    assert_eq!(socket.recv().await["data"]["version"], 1);
    // A version the hub never announced, whose change log cannot be read: the
    // anti-entropy check finds the gap, every read fails, and past the deadline the
    // socket is closed so that its client reconnects and recovers with `since`.
    run_sql(
        &app,
        "ALTER TABLE availability_changes RENAME TO availability_changes_away;
         UPDATE providers SET version = version + 1 WHERE id = 61;",
    )
    .await;
    assert_eq!(
        socket.ending(Duration::from_secs(10)).await,
        Ending::Close(1013)
    );
    run_sql(
        &app,
        "ALTER TABLE availability_changes_away RENAME TO availability_changes;",
    )
    .await;
    // Once the log is readable again a rejoin works; version 2 was made without a
    // change-log row, so the client is told to re-fetch rather than given a gap.
    let mut again = app.ws(&provider(61)).await;
    let joined = again.join("provider-61", Some(1)).await;
    assert_eq!(joined["data"]["recovered"], false, "{joined}");
}
