//! Operations: `/metrics` counts real traffic exactly (each hub has its own registry,
//! so these tests run beside any other), is open to loopback and admins only, and
//! `/readyz` flips to 503 when the SQLite file cannot be opened or Redis stops.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::ResponseError;
use eventide_hub::auth::{Revocations, TokenVerifier};
use eventide_hub::db::DatabaseTarget;
use serde_json::json;

use crate::helpers::*;

/// One scrape of `/metrics`: series (name with labels, as the hub prints them) → value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The value of a series; absent counts as 0.
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    fn has(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|k| k == name || k.starts_with(&format!("{name}{{")))
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let mut response = app
        .http()
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("the hub answers");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = response.body().limit(4 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value` lines");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect();
    Scrape(series)
}

/// Scrapes until `series` has `value` (gauges that follow a disconnect lag a little).
async fn wait_for(app: &TestApp, series: &str, value: f64) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(app).await;
        if now.get(series) == value {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {}, expected {value}",
            now.get(series)
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

fn http(method: &str, route: &str, status: u16) -> String {
    format!(
        "eventide_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
    )
}

fn published(origin: &str) -> String {
    format!("eventide_events_published_total{{origin=\"{origin}\"}}")
}

fn rejected(reason: &str) -> String {
    format!("eventide_ws_handshakes_rejected_total{{reason=\"{reason}\"}}")
}

fn by_role(role: &str) -> String {
    format!("eventide_ws_connections_by_role{{role=\"{role}\"}}")
}

#[actix_web::test]
async fn counters_move_by_exactly_the_traffic_sent() {
    let app = TestApp::builder().spawn().await;
    let before = scrape(&app).await;
    assert!(
        !before.has("eventide_redis_backplane_up"),
        "a node without a cluster reports no Redis state"
    );
    assert_eq!(before.get("eventide_db_pool_max_connections"), 8.0);

    let mut a = app.ws(&provider(1)).await; // in 0, out 0
    let mut b = app.ws(&client_with_rooms(&["lobby"])).await;
    a.join("provider-1", None).await; // in 1, out 1
    b.join("lobby", None).await; // in 2, out 2
    a.join("provider-1", None).await; // a rejoin: in 3, out 3, no new membership
    a.send(json!({"event": "dance", "ref": "x"})).await; // in 4
    assert_eq!(a.recv().await["data"]["code"], "unknown_event"); // out 4
    b.send_text("not json").await; // in 5
    assert_eq!(b.recv().await["data"]["code"], "bad_request"); // out 5

    let during = scrape(&app).await;
    assert_eq!(during.get("eventide_ws_connections"), 2.0);
    assert_eq!(during.get(&by_role("provider")), 1.0);
    assert_eq!(during.get(&by_role("client")), 1.0);
    assert_eq!(during.get(&by_role("admin")), 0.0);
    assert_eq!(during.get("eventide_rooms"), 2.0);

    app.create_slot(1, 0).await;
    assert_eq!(a.recv().await["event"], "availabilityUpdated"); // out 6
    let (status, _) = app
        .post(
            "/api/rooms/lobby/events",
            &service(),
            &json!({"event": "hello", "data": 1}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(b.recv().await["event"], "hello"); // out 7
    let (status, _) = app
        .post("/api/broadcast", &admin(), &json!({"event": "bye"}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(a.recv().await["event"], "bye"); // out 8
    assert_eq!(b.recv().await["event"], "bye"); // out 9
    a.send(json!({"event": "leaveRoom", "data": {"room": "provider-1"}}))
        .await; // in 6
    assert_eq!(a.recv().await["event"], "leftRoom"); // out 10
    assert_eq!(app.get("/api/availability/999999", &admin()).await.0, 404);
    assert_eq!(app.get("/api/availability/abc", &admin()).await.0, 400);
    assert_eq!(app.call("GET", "/no/such/route", None, None).await.0, 404);

    let after = scrape(&app).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    assert_eq!(delta("eventide_ws_frames_received_total"), 6.0);
    assert_eq!(delta("eventide_ws_frames_sent_total"), 10.0);
    assert_eq!(delta("eventide_room_joins_total"), 2.0);
    assert_eq!(delta("eventide_room_leaves_total"), 1.0);
    assert_eq!(after.get("eventide_rooms"), 1.0);
    assert_eq!(delta(&published("rest")), 1.0);
    assert_eq!(delta(&published("emit")), 2.0);
    assert_eq!(delta(&published("backplane")), 0.0);
    // One observation per registry shard with recipients: the two sockets may sit on
    // one worker thread or on two.
    let fanouts = delta("eventide_fanout_duration_seconds_count");
    assert!((3.0..=6.0).contains(&fanouts), "{fanouts}");
    assert_eq!(delta("eventide_rate_limited_frames_total"), 0.0);
    assert_eq!(delta("eventide_slow_consumer_disconnects_total"), 0.0);
    // REST by route pattern, never by raw path.
    assert_eq!(
        delta(&http(
            "POST",
            "/api/providers/{providerId}/availability",
            201
        )),
        1.0
    );
    assert_eq!(delta(&http("POST", "/api/rooms/{room}/events", 202)), 1.0);
    assert_eq!(delta(&http("POST", "/api/broadcast", 202)), 1.0);
    assert_eq!(delta(&http("GET", "/api/availability/{id}", 404)), 1.0);
    assert_eq!(delta(&http("GET", "/api/availability/{id}", 400)), 1.0);
    assert_eq!(delta(&http("GET", "unmatched", 404)), 1.0);
    assert_eq!(delta(&http("GET", "/ws", 101)), 2.0);
    assert!(!after.0.keys().any(|k| k.contains("999999")));
    assert_eq!(
        delta("eventide_http_request_duration_seconds_count{method=\"POST\",route=\"/api/broadcast\"}"),
        1.0
    );

    a.close().await;
    b.close().await;
    let end = wait_for(&app, "eventide_ws_connections", 0.0).await;
    let end = if end.get("eventide_rooms") == 0.0 {
        end
    } else {
        wait_for(&app, "eventide_rooms", 0.0).await
    };
    assert_eq!(end.get(&by_role("provider")), 0.0);
    assert_eq!(end.get(&by_role("client")), 0.0);
    assert_eq!(
        end.get("eventide_room_leaves_total") - before.get("eventide_room_leaves_total"),
        2.0
    );
}

#[actix_web::test]
async fn refused_handshakes_are_counted_by_reason() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_connections_per_sub = 1)
        .spawn()
        .await;
    let before = scrape(&app).await;
    let ws = || app.http().ws(app.ws_url());

    assert_eq!(app.handshake_status(ws()).await, 401);
    assert_eq!(
        app.handshake_status(ws().bearer_auth("not-a-jwt")).await,
        401
    );
    assert_eq!(
        app.handshake_status(ws().bearer_auth(provider(3)).origin("http://evil.example"))
            .await,
        403
    );
    let _held = app.ws(&provider(3)).await;
    assert_eq!(
        app.handshake_status(ws().bearer_auth(provider(3))).await,
        429
    );
    assert_eq!(app.get("/ws", &admin()).await.0, 400);

    let after = scrape(&app).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    assert_eq!(delta(&rejected("token")), 2.0);
    assert_eq!(delta(&rejected("origin")), 1.0);
    assert_eq!(delta(&rejected("too_many_connections")), 1.0);
    assert_eq!(delta(&rejected("not_websocket")), 1.0);
    assert_eq!(delta(&http("GET", "/ws", 401)), 2.0);
    assert_eq!(delta(&http("GET", "/ws", 429)), 1.0);
    assert_eq!(after.get("eventide_ws_connections"), 1.0);
}

#[actix_web::test]
async fn refused_frames_are_counted() {
    let app = TestApp::builder()
        .configure(|s| {
            s.limits.max_frames_per_sec = 1;
            s.limits.max_frame_burst = 3;
        })
        .spawn()
        .await;
    let before = scrape(&app).await;
    let mut socket = app.ws(&admin()).await;
    for i in 0..8 {
        socket
            .send(json!({"event": "dance", "ref": i.to_string()}))
            .await;
    }
    let mut refused = 0.0;
    for _ in 0..8 {
        let frame = socket.recv().await;
        match frame["data"]["code"].as_str() {
            Some("rate_limited") => refused += 1.0,
            Some("unknown_event") => {}
            other => panic!("unexpected {other:?} in {frame}"),
        }
    }
    // A burst of 3 at 1/s refuses most of 8 frames, however slow the machine.
    assert!(refused >= 1.0, "nothing was rate limited");
    let after = scrape(&app).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    assert_eq!(delta("eventide_rate_limited_frames_total"), refused);
    assert_eq!(delta("eventide_ws_frames_received_total"), 8.0);
    assert_eq!(delta("eventide_ws_frames_sent_total"), 8.0);
}

#[actix_web::test]
async fn a_slow_consumer_is_counted_once() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_pending_bytes = 64 * 1024)
        .spawn()
        .await;
    let before = scrape(&app).await;
    let mut stalled = app.ws(&client_with_rooms(&["lobby"])).await;
    stalled.join("lobby", None).await;
    // Never read again: the kernel buffers fill, then the hub's outbox, then 1013.
    let payload = "x".repeat(48 * 1024);
    let mut cut_off = false;
    for i in 0..800 {
        let (status, body) = app
            .post(
                "/api/rooms/lobby/events",
                &service(),
                &json!({"event": "big", "data": payload}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        if i % 10 == 9
            && scrape(&app)
                .await
                .get("eventide_slow_consumer_disconnects_total")
                > before.get("eventide_slow_consumer_disconnects_total")
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "40 MB never filled a 64 KiB outbox");
    let after = wait_for(&app, "eventide_ws_connections", 0.0).await;
    assert_eq!(
        after.get("eventide_slow_consumer_disconnects_total")
            - before.get("eventide_slow_consumer_disconnects_total"),
        1.0
    );
    drop(stalled);
}

#[actix_web::test]
async fn metrics_are_open_to_loopback_and_to_admins_only() {
    use actix_web::test::TestRequest;
    let settings = test_settings("sqlite://unused.db");
    let target = DatabaseTarget::parse(&settings.database_url).unwrap();
    let verifier = TokenVerifier::from_settings(&settings, &target).unwrap();
    let app = TestApp::builder().spawn().await;
    let pool = app.pool.clone();
    let revocations = actix_web::web::block(move || Revocations::load(pool))
        .await
        .unwrap()
        .unwrap();
    let status = |req: TestRequest| match eventide_hub::metrics::authorize(
        &req.to_http_request(),
        &verifier,
        &revocations,
        true,
    ) {
        Ok(()) => 200,
        Err(e) => e.status_code().as_u16(),
    };
    let local = || TestRequest::get().peer_addr("127.0.0.1:40000".parse().unwrap());
    let local6 = || TestRequest::get().peer_addr("[::1]:40000".parse().unwrap());
    let remote = || TestRequest::get().peer_addr("192.0.2.7:40000".parse().unwrap());
    let bearer = |t: String| ("Authorization", format!("Bearer {t}"));

    assert_eq!(status(local()), 200);
    assert_eq!(status(local6()), 200);
    assert_eq!(status(remote()), 401);
    assert_eq!(status(remote().insert_header(bearer("junk".into()))), 401);
    assert_eq!(status(remote().insert_header(bearer(provider(1)))), 403);
    assert_eq!(status(remote().insert_header(bearer(service()))), 403);
    assert_eq!(status(remote().insert_header(bearer(admin()))), 200);

    // And the real route, from loopback, without a token.
    scrape(&app).await;
}

/// Renames a directory away and puts it back when dropped, even if the test fails.
struct MovedAway {
    from: std::path::PathBuf,
    to: std::path::PathBuf,
}

impl MovedAway {
    fn new(dir: &std::path::Path) -> MovedAway {
        let to = dir.with_extension("moved-away");
        std::fs::rename(dir, &to).unwrap();
        MovedAway {
            from: dir.to_owned(),
            to,
        }
    }
}

impl Drop for MovedAway {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.to, &self.from);
    }
}

async fn wait_for_readiness(app: &TestApp, status: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (now, body) = app.call("GET", "/readyz", None, None).await;
        if now == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {now}: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pool's open connections would keep answering `SELECT 1` on a file that was
/// moved (and root ignores `chmod 000`), so the probe opens the file afresh: with its
/// directory moved away, the hub could not open its next connection, and says so.
#[actix_web::test]
async fn readiness_fails_while_the_sqlite_file_cannot_be_opened() {
    let app = TestApp::builder().spawn().await;
    let body = wait_for_readiness(&app, 200).await;
    assert_eq!(body, json!({"status": "ready", "database": "ok"}));

    let moved = MovedAway::new(app.dir.path());
    let body = wait_for_readiness(&app, 503).await;
    assert_eq!(body["status"], "not ready");
    let why = body["database"].as_str().unwrap();
    assert!(why.contains("cannot open"), "{why}");

    drop(moved);
    wait_for_readiness(&app, 200).await;
    // And the hub serves its data again.
    app.create_slot(2, 0).await;
}

/// Deleting the file, or replacing it with an empty database, also flips readiness:
/// open connections would go on using the deleted file, and a new connection would
/// find no hub schema.
#[actix_web::test]
async fn readiness_fails_when_the_sqlite_file_is_deleted_or_replaced() {
    let app = TestApp::builder().spawn().await;
    wait_for_readiness(&app, 200).await;
    let db = app.dir.path().join("hub.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let body = wait_for_readiness(&app, 503).await;
    let why = body["database"].as_str().unwrap();
    assert!(
        why.contains("cannot open") || why.contains("no such table"),
        "{why}"
    );

    std::fs::write(&db, b"").unwrap();
    // A report is reused for about a second: wait for one made after the write.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = wait_for_readiness(&app, 503).await;
        let why = body["database"].as_str().unwrap().to_owned();
        if why.contains("no such table") {
            break;
        }
        assert!(Instant::now() < deadline, "{why}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
#[ignore = "needs Redis (starts its own redis-server)"]
async fn the_redis_gauge_and_readiness_follow_redis() {
    let port = free_port();
    let mut redis = PrivateRedis::spawn(port);
    let url = redis.url();
    // One node is enough to watch the backplane; SQLite only draws a warning.
    let app = TestApp::builder()
        .configure(|s| s.redis_url = Some(url))
        .spawn()
        .await;
    let up = wait_for(&app, "eventide_redis_backplane_up", 1.0).await;
    wait_for_readiness(&app, 200).await;

    // A change is delivered here at once and published to Redis for the other nodes;
    // this node does not take its own message back.
    let mut socket = app.ws(&provider(4)).await;
    socket.join("provider-4", None).await;
    app.create_slot(4, 0).await;
    assert_eq!(socket.recv().await["data"]["version"], 1);
    wait_for(&app, "eventide_relay_published_total", 1.0).await;
    let after = scrape(&app).await;
    assert_eq!(
        after.get(&published("rest")) - up.get(&published("rest")),
        1.0
    );
    assert_eq!(
        after.get(&published("backplane")) - up.get(&published("backplane")),
        0.0
    );
    socket.assert_silent(Duration::from_millis(200)).await;

    redis.stop();
    wait_for(&app, "eventide_redis_backplane_up", 0.0).await;
    let body = wait_for_readiness(&app, 503).await;
    assert_eq!(body["database"], "ok");
    assert_ne!(body["redis"], "ok");

    let _redis = PrivateRedis::spawn(port);
    wait_for(&app, "eventide_redis_backplane_up", 1.0).await;
    wait_for_readiness(&app, 200).await;
}
