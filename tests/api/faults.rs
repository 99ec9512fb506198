//! Delivery across nodes under real Redis faults: every committed change reaches every
//! subscriber of every node once and in order, on its open socket, whatever Redis did.
//!
//! Each test runs its own `redis-server` (so pausing or killing it disturbs no other
//! test) and two nodes on one fresh PostgreSQL database, with subscribers on both and
//! writers on both. Faults are caused for real: `CLIENT PAUSE`, `CLIENT KILL`, the
//! server stopped and restarted, a node killed with SIGKILL.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::cluster::{two_nodes_with, wait_for_ready};
use crate::helpers::*;
use crate::lifecycle::HubProcess;

/// How long a subscriber may take to converge after a fault ends (the contract: 10 s).
const CONVERGE: Duration = Duration::from_secs(10);

/// A private Redis and two nodes on it.
async fn cluster(
    configure: impl FnOnce(&mut eventide_hub::config::Settings),
) -> (PrivateRedis, TestApp, TestApp) {
    let redis = PrivateRedis::start(free_port()).expect("redis-server starts");
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (a, b) = two_nodes_with(&url, |s| {
        s.delivery.anti_entropy_ms = 500;
        configure(s);
    })
    .await;
    (redis, a, b)
}

/// Runs one Redis command against the private server.
fn redis_command(redis: &PrivateRedis, args: &[&str]) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query::<redis::Value>(&mut conn).unwrap();
}

/// Reads `availabilityUpdated` versions until `count` arrived (or the deadline), then
/// asserts they are exactly `1..=count`, in order, and that nothing follows.
async fn assert_versions(socket: &mut WsClient, count: i64, deadline: Instant) {
    let mut versions = Vec::new();
    while (versions.len() as i64) < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket.next_frame(left).await {
            Some(Ok(frame)) if frame["event"] == "availabilityUpdated" => {
                versions.push(frame["data"]["version"].as_i64().unwrap())
            }
            Some(Ok(frame)) => panic!("unexpected frame {frame}"),
            Some(Err(ending)) => panic!("socket ended ({ending:?}) after {versions:?}"),
            None => break,
        }
    }
    assert_eq!(versions, (1..=count).collect::<Vec<_>>());
    socket.assert_silent(Duration::from_millis(700)).await;
}

/// Subscribers to `provider-{id}`: two on each node.
async fn subscribers(a: &TestApp, b: &TestApp, provider_id: i64) -> Vec<WsClient> {
    let mut sockets = Vec::new();
    for node in [a, b, a, b] {
        let mut socket = node.ws(&provider(provider_id)).await;
        socket.join(&format!("provider-{provider_id}"), None).await;
        sockets.push(socket);
    }
    sockets
}

/// Creates slots `from..to` of `provider_id`, alternating nodes, `at_once` at a time.
async fn write_through_both(a: &TestApp, b: &TestApp, provider_id: i64, from: i64, to: i64) {
    let path = format!("/api/providers/{provider_id}/availability");
    let writes = (from..to).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        let path = path.clone();
        async move { node.post(&path, &service(), &slot_at(i * 60)).await.0 }
    });
    let statuses = join_all(writes).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_change_made_while_redis_refuses_writes_reaches_every_node() {
    let (redis, a, b) = cluster(|_| {}).await;
    let mut sockets = subscribers(&a, &b, 31).await;
    write_through_both(&a, &b, 31, 0, 2).await;
    // The last change of the test, made while PUBLISH is refused, with nothing after it.
    redis_command(&redis, &["CLIENT", "PAUSE", "4000", "WRITE"]);
    let slot = a.get("/api/providers/31/availability", &admin()).await.1["slots"][0].clone();
    let path = format!("/api/availability/{}", slot["id"]);
    let (status, _) = a.patch(&path, &service(), &json!({"note": "paused"})).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(4) + CONVERGE;
    for socket in &mut sockets {
        assert_versions(socket, 3, deadline).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn killing_the_pubsub_connections_twice_loses_nothing() {
    let (redis, a, b) = cluster(|_| {}).await;
    let mut sockets = subscribers(&a, &b, 32).await;
    for round in 0..3 {
        write_through_both(&a, &b, 32, round * 10, round * 10 + 10).await;
        if round < 2 {
            redis_command(&redis, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
    }
    let deadline = Instant::now() + CONVERGE;
    for socket in &mut sockets {
        assert_versions(socket, 30, deadline).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn changes_made_while_redis_is_down_arrive_after_it_restarts() {
    let (mut redis, a, b) = cluster(|_| {}).await;
    let mut sockets = subscribers(&a, &b, 33).await;
    write_through_both(&a, &b, 33, 0, 1).await;
    let port = redis.port;
    redis.stop();
    wait_for_ready(&a, 503).await;
    wait_for_ready(&b, 503).await;
    // Eleven changes through both nodes while Redis is away.
    for i in 1..12 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.create_slot(33, i * 60).await;
    }
    let _redis = PrivateRedis::start(port).expect("redis restarts on its port");
    let deadline = Instant::now() + CONVERGE;
    for socket in &mut sockets {
        assert_versions(socket, 12, deadline).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_black_holed_redis_does_not_hold_up_writes() {
    let (redis, a, b) = cluster(|_| {}).await;
    let mut sockets = subscribers(&a, &b, 34).await;
    // Redis takes nothing, PINGs included, for 8 s.
    let paused_at = Instant::now();
    redis_command(&redis, &["CLIENT", "PAUSE", "8000", "ALL"]);
    write_through_both(&a, &b, 34, 0, 20).await;
    // Every write answered while Redis was still paused: none waited for it.
    assert!(
        paused_at.elapsed() < Duration::from_secs(8),
        "writes waited for Redis: {:?}",
        paused_at.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(8) + CONVERGE;
    for socket in &mut sockets {
        assert_versions(socket, 20, deadline).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_node_killed_between_commit_and_publish_loses_nothing() {
    let (redis, survivor, other) = cluster(|_| {}).await;
    let mut sockets = subscribers(&survivor, &other, 35).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let mut victim = HubProcess::start(&[
        ("DATABASE_URL", survivor.settings.database_url.as_str()),
        ("EVENTIDE_REDIS_URL", url.as_str()),
        (
            "EVENTIDE_REDIS_PREFIX",
            survivor.settings.redis_prefix.as_str(),
        ),
        ("EVENTIDE_TEST_PAUSE_AFTER_COMMIT", "true"),
    ]);
    // The victim commits version 1 and stops before publishing it.
    let victim_url = format!("http://127.0.0.1:{}", victim.port);
    let write = actix_web::rt::spawn(async move {
        awc::Client::new()
            .post(format!("{victim_url}/api/providers/35/availability"))
            .bearer_auth(service())
            .send_json(&slot_at(0))
            .await
            .map(|r| r.status().as_u16())
    });
    let committed = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = survivor
            .get("/api/providers/35/availability", &admin())
            .await;
        if list["version"] == 1 {
            break;
        }
        assert!(Instant::now() < committed, "the victim never committed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    victim.child.kill().unwrap(); // SIGKILL, between commit and publish
    victim.child.wait().unwrap();
    assert!(write.await.unwrap().is_err(), "the victim never answered");
    let deadline = Instant::now() + CONVERGE;
    for socket in &mut sockets {
        assert_versions(socket, 1, deadline).await;
    }
}

async fn emit(node: &TestApp, n: i64) -> u16 {
    let body = json!({"event": "said", "data": {"n": n}});
    node.post("/api/rooms/lobby.one/events", &service(), &body)
        .await
        .0
}

fn history_rooms(s: &mut eventide_hub::config::Settings) {
    s.delivery.history_rooms = vec!["lobby.*".into()];
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn history_rooms_are_versioned_and_replayed_across_nodes() {
    let (redis, a, b) = cluster(history_rooms).await;
    let token = client_with_rooms(&["lobby.*"]);
    let mut on_b = b.ws(&token).await;
    assert_eq!(on_b.join("lobby.one", None).await["data"]["version"], 0);
    for n in 1..=3 {
        assert_eq!(emit(if n % 2 == 0 { &b } else { &a }, n).await, 202);
    }
    // While PUBLISH is refused: the last event still arrives, from the change log.
    redis_command(&redis, &["CLIENT", "PAUSE", "3000", "WRITE"]);
    assert_eq!(emit(&a, 4).await, 202);
    for version in 1..=4 {
        let frame = on_b.recv().await;
        assert_eq!(
            frame,
            json!({"event": "said", "room": "lobby.one", "data": {"n": version}, "version": version})
        );
    }
    on_b.assert_silent(Duration::from_millis(700)).await;

    let mut late = a.ws(&token).await;
    let joined = late.join("lobby.one", Some(2)).await;
    assert_eq!(joined["data"]["recovered"], true);
    assert_eq!(joined["data"]["version"], 4);
    for version in 3..=4 {
        assert_eq!(late.recv().await["version"], version);
    }
    late.assert_silent(Duration::from_millis(300)).await;
    // Rooms outside the patterns keep unversioned events.
    let mut plain = a.ws(&client_with_rooms(&["other"])).await;
    assert!(plain.join("other", None).await["data"]
        .get("version")
        .is_none());
    let (status, _) = b
        .post(
            "/api/rooms/other/events",
            &service(),
            &json!({"event": "x", "data": 1}),
        )
        .await;
    assert_eq!(status, 202);
    let frame: Value = plain.recv().await;
    assert_eq!(frame, json!({"event": "x", "room": "other", "data": 1}));
}
