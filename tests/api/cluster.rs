//! A cluster of hubs on one PostgreSQL and one Redis: every event reaches every node's
//! subscribers once and in version order; Redis outages and killed nodes lose nothing
//! that was committed.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::*;
use crate::lifecycle::HubProcess;

/// The shared test Redis; panics, saying what to set, when there is none.
pub(crate) fn redis_url() -> String {
    std::env::var("EVENTIDE_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("this test needs Redis: set EVENTIDE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379)")
}

fn unique_prefix() -> String {
    format!("eventide-test:{}:{}:", std::process::id(), now_nanos())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Two nodes on one fresh PostgreSQL database and the given Redis.
async fn two_nodes(redis: &str) -> (TestApp, TestApp) {
    two_nodes_with(redis, |_| {}).await
}

/// Two nodes on one fresh PostgreSQL database and the given Redis, with settings
/// adjusted by `configure`.
pub(crate) async fn two_nodes_with(
    redis: &str,
    configure: impl FnOnce(&mut eventide_hub::config::Settings),
) -> (TestApp, TestApp) {
    let prefix = unique_prefix();
    let redis = redis.to_owned();
    let a = TestApp::builder()
        .backend(Backend::Postgres)
        .configure(|s| {
            s.redis_url = Some(redis);
            s.redis_prefix = prefix;
            configure(s);
        })
        .spawn()
        .await;
    let b = TestApp::builder().same_data_as(&a).spawn().await;
    (a, b)
}

pub(crate) async fn ready_status(app: &TestApp) -> u16 {
    app.call("GET", "/readyz", None, None).await.0
}

pub(crate) async fn wait_for_ready(app: &TestApp, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready_status(app).await != status {
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn events_from_any_node_reach_every_node_once_in_order() {
    let (a, b) = two_nodes(&redis_url()).await;
    assert_eq!(ready_status(&a).await, 200);

    let mut subscribers = Vec::new();
    for node in [&a, &b, &a, &b] {
        let mut socket = node.ws(&client_with_rooms(&["provider-*", "lobby"])).await;
        socket.join("provider-5", None).await;
        socket.join("lobby", None).await;
        subscribers.push(socket);
    }
    // 40 changes, alternating nodes, 8 at a time.
    for batch in 0..5 {
        let writes = (0..8).map(|j| {
            let i = batch * 8 + j;
            let node = if i % 2 == 0 { &a } else { &b };
            async move {
                node.post(
                    "/api/providers/5/availability",
                    &service(),
                    &slot_at(i * 60),
                )
                .await
                .0
            }
        });
        assert!(join_all(writes).await.iter().all(|s| *s == 201));
    }
    let (status, _) = b
        .post(
            "/api/rooms/lobby/events",
            &service(),
            &json!({"event": "hello", "data": 1}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = a
        .post(
            "/api/broadcast",
            &admin(),
            &json!({"event": "bye", "data": 2}),
        )
        .await;
    assert_eq!(status, 202);

    // Order holds within a room; a broadcast or another room's event may pass a
    // version still on its way, and events from two nodes may arrive either way round.
    for socket in &mut subscribers {
        let mut versions = Vec::new();
        let mut others = Vec::new();
        while versions.len() < 40 || others.len() < 2 {
            let frame = socket.recv().await;
            if frame["event"] == "availabilityUpdated" {
                versions.push(frame["data"]["version"].as_i64().unwrap());
            } else {
                others.push(frame);
            }
        }
        assert_eq!(versions, (1..=40).collect::<Vec<i64>>());
        others.sort_by_key(|f| f["event"] != "hello");
        assert_eq!(
            others,
            [
                json!({"event": "hello", "room": "lobby", "data": 1}),
                json!({"event": "bye", "data": 2})
            ]
        );
        socket.assert_silent(Duration::from_millis(300)).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_redis_restart_flips_readiness_and_subscribers_catch_up() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port).expect("redis-server starts");
    let (a, b) = two_nodes(&format!("redis://127.0.0.1:{}", redis.port)).await;
    let mut on_a = a.ws(&provider(6)).await;
    on_a.join("provider-6", None).await;
    let mut on_b = b.ws(&provider(6)).await;
    on_b.join("provider-6", None).await;
    a.create_slot(6, 0).await;
    assert_eq!(on_a.recv().await["data"]["version"], 1);
    assert_eq!(on_b.recv().await["data"]["version"], 1);

    redis.stop();
    wait_for_ready(&a, 503).await;
    wait_for_ready(&b, 503).await;
    // Each node keeps serving its own sockets.
    a.create_slot(6, 60).await;
    assert_eq!(on_a.recv().await["data"]["version"], 2);

    let mut redis = PrivateRedis::start(port).expect("redis restarts");
    wait_for_ready(&a, 200).await;
    wait_for_ready(&b, 200).await;
    // B's subscriber catches up on what it missed, then gets live events; no duplicates.
    assert_eq!(on_b.recv().await["data"]["version"], 2);
    b.create_slot(6, 120).await;
    assert_eq!(on_a.recv().await["data"]["version"], 3);
    assert_eq!(on_b.recv().await["data"]["version"], 3);
    on_a.assert_silent(Duration::from_millis(300)).await;
    on_b.assert_silent(Duration::from_millis(100)).await;
    redis.stop();
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn clients_of_a_killed_node_move_to_another_and_lose_nothing() {
    let redis = redis_url();
    let (survivor, _other) = two_nodes(&redis).await;
    let victim = HubProcess::start(&[
        ("DATABASE_URL", survivor.settings.database_url.as_str()),
        ("EVENTIDE_REDIS_URL", redis.as_str()),
        (
            "EVENTIDE_REDIS_PREFIX",
            survivor.settings.redis_prefix.as_str(),
        ),
    ]);
    let (_, framed) = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/ws", victim.port))
        .bearer_auth(provider(8))
        .connect()
        .await
        .unwrap();
    let mut socket = WsClient { framed };
    socket.join("provider-8", None).await;
    survivor.create_slot(8, 0).await;
    assert_eq!(socket.recv().await["data"]["version"], 1);

    let mut victim = victim;
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    assert!(matches!(
        socket.ending(Duration::from_secs(10)).await,
        Ending::Dropped | Ending::Close(_)
    ));
    // Committed while the client is away.
    survivor.create_slot(8, 60).await;
    survivor.create_slot(8, 120).await;

    let mut moved = survivor.ws(&provider(8)).await;
    let joined = moved.join("provider-8", Some(1)).await;
    assert_eq!(joined["data"]["recovered"], true);
    assert_eq!(moved.recv().await["data"]["version"], 2);
    assert_eq!(moved.recv().await["data"]["version"], 3);
    survivor.create_slot(8, 180).await;
    assert_eq!(moved.recv().await["data"]["version"], 4);
    moved.assert_silent(Duration::from_millis(200)).await;
}
