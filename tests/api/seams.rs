//! The seams of recovery: clients that vanish in the middle of their replay, a change
//! log that stops answering, a token narrowed during a join, replays longer than one
//! read, first events racing to create a room's stream. Every fault is real: sockets
//! reset by the kernel, a table locked by another PostgreSQL session, a pool taken.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

/// A join that no answer may take longer than: the recovery deadline (10 s) and a
/// margin for a loaded machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(16);

/// Opens `count` sockets by hand, sends each a `joinRoom` of `room` with its own
/// `since` (`first_since + i`), and resets them all at once (`SO_LINGER` 0, then
/// close: the kernel sends RST), while their replays are being read.
fn join_and_reset(port: u16, token: &str, room: &str, count: usize, first_since: i64) {
    use std::io::Write;
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        upgrade_by_hand(&mut stream, port, token);
        sockets.push((stream, first_since + i as i64));
    }
    for (stream, since) in &mut sockets {
        let join = json!({"event": "joinRoom", "data": {"room": room, "since": since}, "ref": "j"});
        stream
            .write_all(&client_frame(0x1, join.to_string().as_bytes()))
            .unwrap();
    }
    for (stream, _) in &sockets {
        socket2::SockRef::from(stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(sockets);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
async fn a_reconnect_storm_of_vanishing_joins_leaves_recovery_working() {
    let app = TestApp::builder()
        .backend(Backend::Postgres)
        .configure(|s| s.limits.max_connections_per_sub = 1_000)
        .spawn()
        .await;
    for minute in 0..130 {
        app.create_slot(81, minute * 60).await;
    }
    for round in 0..4 {
        let port = app.port;
        actix_web::web::block(move || {
            join_and_reset(port, &provider(81), "provider-81", 120, round * 2)
        })
        .await
        .unwrap();
    }
    app.wait_for_sessions(0).await;

    // Every join with `since` is answered, with its whole replay.
    let mut sockets = Vec::new();
    for since in [0, 17, 64, 129] {
        let mut socket = app.ws(&provider(81)).await;
        let joined = socket.join("provider-81", Some(since)).await;
        assert_eq!(
            joined["data"],
            json!({"room": "provider-81", "version": 130, "epoch": joined["data"]["epoch"], "recovered": true})
        );
        for version in since + 1..=130 {
            assert_eq!(socket.recv().await["data"]["version"], version);
        }
        sockets.push(socket);
    }
    // And live events flow.
    app.create_slot(81, 200 * 60).await;
    for socket in &mut sockets {
        assert_eq!(socket.recv().await["data"]["version"], 131);
    }
}

/// Runs `sql` on the test's database from a connection of its own.
fn psql(url: &str, sql: &str) {
    let mut conn = PgConnection::establish(url).unwrap();
    conn.batch_execute(sql).unwrap();
}

/// Whether another session holds `table` locked exclusively.
fn exclusively_locked(url: &str, table: &str) -> bool {
    let mut conn = PgConnection::establish(url).unwrap();
    let sql = format!(
        "(SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted)"
    );
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&sql))
        .get_result::<i64>(&mut conn)
        .unwrap()
        > 0
}

/// Sends `joinRoom` with `since` and answers the reply: `Ok` with the frame, or how
/// the socket ended. Panics if nothing comes within [`ANSWER_WITHIN`].
async fn join_answer(socket: &mut WsClient, room: &str, since: i64) -> Result<Value, Ending> {
    let reference = format!("since-{since}");
    socket
        .send(
            json!({"event": "joinRoom", "data": {"room": room, "since": since}, "ref": reference}),
        )
        .await;
    loop {
        match socket.next_frame(ANSWER_WITHIN).await {
            None => panic!("a join with since {since} got no answer within {ANSWER_WITHIN:?}"),
            Some(Ok(frame)) if frame["ref"] == reference => return Ok(frame),
            Some(Ok(_)) => continue,
            Some(Err(ending)) => return Err(ending),
        }
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
async fn a_locked_change_log_answers_joins_unavailable_by_the_deadline_then_recovers_at_once() {
    let app = TestApp::builder().backend(Backend::Postgres).spawn().await;
    for minute in 0..3 {
        app.create_slot(71, minute * 60).await;
    }
    let url = app.settings.database_url.clone();
    // Another session takes the change log and keeps it: a migration, a long
    // transaction. Ended by pg_terminate_backend below (or after 60 s).
    let locker = std::thread::spawn({
        let url = url.clone();
        move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let _ = conn.batch_execute(
                "BEGIN; LOCK TABLE availability_changes IN ACCESS EXCLUSIVE MODE; \
                 SELECT pg_sleep(60);",
            );
        }
    });
    let probe = url.clone();
    for _ in 0..200 {
        let locked = actix_web::web::block({
            let probe = probe.clone();
            move || exclusively_locked(&probe, "availability_changes")
        })
        .await
        .unwrap();
        if locked {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }

    // For about 30 s, rounds of clients join with `since`: each is answered by the
    // deadline, `unavailable` (or closed with 1013), never left waiting.
    for _round in 0..3 {
        // Each `since` below the head 3: each needs a replay.
        let clients = (0..3).map(|i| {
            let app = &app;
            async move {
                let mut socket = app.ws(&provider(71)).await;
                join_answer(&mut socket, "provider-71", i).await
            }
        });
        for answer in join_all(clients).await {
            match answer {
                Ok(frame) => {
                    assert_eq!(frame["event"], "error", "{frame}");
                    assert_eq!(frame["data"]["code"], "unavailable", "{frame}");
                }
                Err(ending) => assert_eq!(ending, Ending::Close(1013)),
            }
        }
    }

    // A write waits no longer: its statement is cancelled at the statement timeout.
    let (status, body) = app
        .post("/api/providers/71/availability", &admin(), &slot_at(900))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    // The lock goes (its session is ended, as an operator would); joins work at once.
    actix_web::web::block(move || end_lockers(&probe))
        .await
        .unwrap();
    locker.join().unwrap();
    let mut socket = app.ws(&provider(71)).await;
    let joined = join_answer(&mut socket, "provider-71", 1).await.unwrap();
    assert_eq!(
        joined["data"],
        json!({"room": "provider-71", "version": 3, "epoch": joined["data"]["epoch"], "recovered": true}),
        "{joined}"
    );
    for version in 2..=3 {
        assert_eq!(socket.recv().await["data"]["version"], version);
    }
    app.create_slot(71, 600).await;
    assert_eq!(socket.recv().await["data"]["version"], 4);
}

async fn pooled_connections_bound_their_statements(backend: Backend) {
    use eventide_hub::db::AnyConnection;
    let app = TestApp::builder()
        .backend(backend)
        .configure(|s| s.db_statement_timeout_ms = 2_500)
        .spawn()
        .await;
    let pool = app.pool.clone();
    let setting = actix_web::web::block(move || {
        let mut conn = pool.get().unwrap();
        match &mut *conn {
            AnyConnection::Postgresql(pg) => {
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                    "current_setting('statement_timeout')",
                ))
                .get_result::<String>(pg)
                .unwrap()
            }
            AnyConnection::Sqlite(sqlite) => {
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "(SELECT timeout FROM pragma_busy_timeout)",
                ))
                .get_result::<i64>(sqlite)
                .unwrap()
                .to_string()
            }
        }
    })
    .await
    .unwrap();
    let expected = match backend {
        Backend::Postgres => "2500ms",
        Backend::Sqlite => "2500",
    };
    assert_eq!(setting, expected);
}

crate::on_both_backends!(pooled_connections_bound_their_statements);

#[actix_web::test]
async fn a_replay_longer_than_one_read_is_recovered_whole() {
    let app = TestApp::builder()
        .configure(|s| {
            s.delivery.history_rooms = vec!["long-*".into()];
            s.limits.max_history_per_provider = 3_000;
        })
        .spawn()
        .await;
    let events = 2_100;
    for batch in 0..events / 10 {
        let emits = (0..10).map(|i| {
            let app = &app;
            let body = json!({"event": "tick", "data": {"n": batch * 10 + i}});
            async move {
                app.post("/api/rooms/long-1/events", &service(), &body)
                    .await
                    .0
            }
        });
        assert!(join_all(emits).await.iter().all(|s| *s == 202));
    }
    let mut socket = app.ws(&client_with_rooms(&["long-*"])).await;
    let joined = socket.join("long-1", Some(0)).await;
    assert_eq!(
        joined["data"],
        json!({"room": "long-1", "version": events, "epoch": joined["data"]["epoch"], "recovered": true})
    );
    for version in 1..=events {
        assert_eq!(socket.recv().await["version"], version);
    }
    socket.assert_silent(Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn a_join_narrowed_away_while_it_runs_is_refused_not_joined() {
    let app = TestApp::builder().spawn().await;
    app.create_slot(91, 0).await;
    let mut socket = app.ws(&client_with_rooms(&["provider-*"])).await;
    // Every connection of the hub's pool is taken: the join waits for the database.
    let pool = app.pool.clone();
    let held = actix_web::web::block(move || {
        (0..pool.max_size())
            .map(|_| pool.get().unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    socket
        .send(json!({"event": "joinRoom", "data": {"room": "provider-91", "since": 0}, "ref": "j"}))
        .await;
    socket
        .send(json!({"event": "refreshToken", "data": {"token": client_with_rooms(&["lobby"])}, "ref": "r"}))
        .await;
    let refreshed = socket.recv().await;
    assert_eq!(refreshed["event"], "tokenRefreshed", "{refreshed}");
    assert_eq!(
        socket.recv().await["data"],
        json!({"room": "provider-91", "reason": "forbidden"})
    );
    drop(held);
    let answer = socket.recv().await;
    assert_eq!(answer["ref"], "j");
    assert_eq!(
        answer["event"], "error",
        "no joinedRoom after leftRoom: {answer}"
    );
    assert_eq!(answer["data"]["code"], "forbidden");
    // Nothing of the room follows, and the registry forgot the membership.
    app.create_slot(91, 60).await;
    socket.assert_silent(Duration::from_millis(300)).await;
    assert_eq!(app.hub.stats().await.unwrap().memberships, 0);
}

/// How many sessions of the test's database wait for a lock.
fn waiting_for_locks(url: &str) -> i64 {
    let mut conn = PgConnection::establish(url).unwrap();
    let sql = "(SELECT count(*) FROM pg_stat_activity \
               WHERE datname = current_database() AND wait_event_type = 'Lock')";
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(sql))
        .get_result::<i64>(&mut conn)
        .unwrap()
}

/// Ends the sessions of the test's database that hold a `LOCK TABLE`.
fn end_lockers(url: &str) {
    psql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE '%LOCK TABLE%'",
    )
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
async fn first_events_racing_to_a_new_history_room_all_succeed() {
    let app = TestApp::builder()
        .backend(Backend::Postgres)
        .configure(|s| s.delivery.history_rooms = vec!["race-*".into()])
        .spawn()
        .await;
    let url = app.settings.database_url.clone();
    // Hold the events table so that both first events have passed the stream row's
    // update (no row yet) before either commits: the race, every time.
    let locker = std::thread::spawn({
        let url = url.clone();
        move || {
            let mut conn = PgConnection::establish(&url).unwrap();
            let _ = conn.batch_execute(
                "BEGIN; LOCK TABLE room_events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);",
            );
        }
    });
    let wait_until = |done: fn(&str) -> bool| {
        let url = url.clone();
        async move {
            for _ in 0..200 {
                let url = url.clone();
                if actix_web::web::block(move || done(&url)).await.unwrap() {
                    return;
                }
                actix_web::rt::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the database never got there");
        }
    };
    wait_until(|url| exclusively_locked(url, "room_events")).await;
    let emits: Vec<_> = (0..2)
        .map(|n| {
            let address = app.address.clone();
            actix_web::rt::spawn(async move {
                let body = json!({"event": "first", "data": {"n": n}});
                let response = crate::helpers::ws::http_client()
                    .post(format!("{address}/api/rooms/race-1/events"))
                    .bearer_auth(service())
                    .send_json(&body)
                    .await
                    .unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    // One waits for the lock, the other for the first one's new stream row.
    wait_until(|url| waiting_for_locks(url) >= 2).await;
    actix_web::web::block(move || end_lockers(&url))
        .await
        .unwrap();
    locker.join().unwrap();
    for emit in emits {
        assert_eq!(emit.await.unwrap(), 202);
    }
    let mut socket = app.ws(&client_with_rooms(&["race-*"])).await;
    let joined = socket.join("race-1", Some(0)).await;
    assert_eq!(joined["data"]["version"], 2);
    assert_eq!(joined["data"]["recovered"], true);
}
