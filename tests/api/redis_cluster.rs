//! The hub on a Redis Cluster: rooms over sharded pub/sub on the master that owns each
//! room's slot, and every promise of a single Redis kept, across a master failover.
//!
//! Each test starts its own Redis Cluster (three masters; three replicas more for the
//! failover) and two nodes on one fresh PostgreSQL database, with subscribers and
//! writers on both. The failover is real: a master killed with SIGKILL, its replica
//! promoted by the cluster after the node timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::cluster::wait_for_ready;
use crate::helpers::redis_cluster::RedisCluster;
use crate::helpers::*;
use crate::users::{eventually, handshake, token_of};

/// How long a subscriber may take to converge after a fault ends (the contract: 10 s).
const CONVERGE: Duration = Duration::from_secs(10);

/// Two nodes on one fresh PostgreSQL database and `redis`.
async fn two_nodes(
    redis: &RedisCluster,
    configure: impl FnOnce(&mut eventide_hub::config::Settings),
) -> (TestApp, TestApp) {
    let seeds = redis.seeds();
    let a = TestApp::builder()
        .backend(Backend::Postgres)
        .configure(|s| {
            s.redis_cluster_urls = seeds;
            configure(s);
        })
        .spawn()
        .await;
    let b = TestApp::builder().same_data_as(&a).spawn().await;
    (a, b)
}

/// The channel of a room, under the default prefix.
fn channel(room: &str) -> String {
    format!("eventide:room:{room}")
}

/// One provider per master: ids whose room channels hash to slots on three different
/// masters, as the cluster itself says (`CLUSTER KEYSLOT`, `CLUSTER NODES`).
fn providers_on_every_shard(redis: &RedisCluster) -> Vec<(i64, u16)> {
    let mut by_master: BTreeMap<u16, i64> = BTreeMap::new();
    for id in 1..200 {
        let slot = redis.keyslot(&channel(&format!("provider-{id}")));
        let master = redis.master_of(slot).expect("every slot has a master");
        by_master.entry(master).or_insert(id);
        if by_master.len() == 3 {
            break;
        }
    }
    assert_eq!(by_master.len(), 3, "three masters serve the rooms");
    by_master.into_iter().map(|(port, id)| (id, port)).collect()
}

/// Sockets that each join every room of `ids` (and the lobby): two on each node.
async fn subscribers(a: &TestApp, b: &TestApp, ids: &[i64]) -> Vec<WsClient> {
    let token = client_with_rooms(&["provider-*", "lobby"]);
    let mut sockets = Vec::new();
    for node in [a, b, a, b] {
        let mut socket = node.ws(&token).await;
        for id in ids {
            socket.join(&format!("provider-{id}"), None).await;
        }
        socket.join("lobby", None).await;
        sockets.push(socket);
    }
    sockets
}

/// Creates changes `from..to` in every room of `ids`, alternating nodes, one round
/// at a time (all rooms at once), waiting `pause` between rounds.
async fn write_rounds(a: &TestApp, b: &TestApp, ids: &[i64], from: i64, to: i64, pause: Duration) {
    for i in from..to {
        let writes = ids.iter().map(|id| {
            let node = if (i + id) % 2 == 0 { a } else { b };
            async move {
                let path = format!("/api/providers/{id}/availability");
                node.post(&path, &service(), &slot_at(i * 60)).await.0
            }
        });
        let statuses = join_all(writes).await;
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
        actix_web::rt::time::sleep(pause).await;
    }
}

/// Reads frames until every room of `ids` delivered versions `1..=count` (or the
/// deadline), returning the other frames; asserts each room's versions arrived once
/// and in order.
async fn assert_versions(
    socket: &mut WsClient,
    ids: &[i64],
    count: i64,
    deadline: Instant,
) -> Vec<Value> {
    let mut versions: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut others = Vec::new();
    let done = |v: &BTreeMap<String, Vec<i64>>| {
        ids.iter()
            .all(|id| v.get(&format!("provider-{id}")).map_or(0, Vec::len) as i64 >= count)
    };
    while !done(&versions) {
        let left = deadline.saturating_duration_since(Instant::now());
        match socket.next_frame(left).await {
            Some(Ok(frame)) if frame["event"] == "availabilityUpdated" => versions
                .entry(frame["room"].as_str().unwrap().to_owned())
                .or_default()
                .push(frame["data"]["version"].as_i64().unwrap()),
            Some(Ok(frame)) => others.push(frame),
            Some(Err(ending)) => panic!("socket ended ({ending:?}) after {versions:?}"),
            None => break,
        }
    }
    for id in ids {
        assert_eq!(
            versions
                .remove(&format!("provider-{id}"))
                .unwrap_or_default(),
            (1..=count).collect::<Vec<_>>(),
            "provider-{id}"
        );
    }
    assert!(versions.is_empty(), "{versions:?}");
    others
}

/// Waits until both nodes subscribe to `room`'s channel on the master that owns it.
async fn wait_for_subscribers(redis: &RedisCluster, room: &str) -> u16 {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let master = redis.master_of(redis.keyslot(&channel(room)));
        if let Some(port) = master {
            let counts = redis.cli(port, &["PUBSUB", "SHARDNUMSUB", &channel(room)]);
            if counts.lines().nth(1) == Some("2") {
                return port;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{room}: not subscribed on its master"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
#[ignore = "needs redis-server and PostgreSQL"]
async fn every_change_reaches_every_subscriber_once_in_order_over_three_shards() {
    let redis = RedisCluster::start(3, 0);
    // Only Redis may carry the changes across nodes here: anti-entropy is a minute away.
    let (a, b) = two_nodes(&redis, |s| s.delivery.anti_entropy_ms = 60_000).await;
    let rooms = providers_on_every_shard(&redis);
    let ids: Vec<i64> = rooms.iter().map(|(id, _)| *id).collect();
    let mut sockets = subscribers(&a, &b, &ids).await;

    // Each room's channel lives on its own master, and only there.
    for (id, port) in &rooms {
        let room = format!("provider-{id}");
        assert_eq!(wait_for_subscribers(&redis, &room).await, *port);
        for master in redis.masters() {
            let listed = redis.shard_channels(master).contains(&channel(&room));
            assert_eq!(listed, master == *port, "{room} on {master}");
        }
    }

    write_rounds(&a, &b, &ids, 0, 12, Duration::ZERO).await;
    let hello = json!({"event": "hello", "data": 1});
    assert_eq!(
        b.post("/api/rooms/lobby/events", &service(), &hello)
            .await
            .0,
        202
    );
    let bye = json!({"event": "bye", "data": 2});
    assert_eq!(a.post("/api/broadcast", &admin(), &bye).await.0, 202);

    let deadline = Instant::now() + CONVERGE;
    for socket in &mut sockets {
        let mut others = assert_versions(socket, &ids, 12, deadline).await;
        while others.len() < 2 {
            others.push(socket.recv().await);
        }
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
#[ignore = "needs redis-server and PostgreSQL"]
async fn a_master_killed_while_changes_stream_loses_nothing_and_delivery_resumes() {
    let mut redis = RedisCluster::start(3, 1);
    let (a, b) = two_nodes(&redis, |s| s.delivery.anti_entropy_ms = 500).await;
    let rooms = providers_on_every_shard(&redis);
    let ids: Vec<i64> = rooms.iter().map(|(id, _)| *id).collect();
    let (victim_room, victim) = (format!("provider-{}", rooms[0].0), rooms[0].1);
    let mut sockets = subscribers(&a, &b, &ids).await;
    wait_for_subscribers(&redis, &victim_room).await;

    // About five seconds of changes; the master of the first room dies one second in.
    let writes = write_rounds(&a, &b, &ids, 0, 40, Duration::from_millis(120));
    let kill = async {
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        redis.kill(victim);
    };
    tokio::join!(writes, kill);

    // The replica took over the slot, and every change reached every socket once.
    let slot = redis.keyslot(&channel(&victim_room));
    let deadline = Instant::now() + CONVERGE;
    while redis.master_of(slot).is_none_or(|port| port == victim) {
        assert!(
            Instant::now() < deadline,
            "no replica took over slot {slot}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + CONVERGE;
    for socket in &mut sockets {
        let others = assert_versions(socket, &ids, 40, deadline).await;
        assert!(others.is_empty(), "{others:?}");
    }

    // Both nodes subscribe again on the new master and Redis carries events again:
    // an event without a version can only come that way.
    let promoted = wait_for_subscribers(&redis, &victim_room).await;
    assert_ne!(promoted, victim);
    wait_for_ready(&a, 200).await;
    wait_for_ready(&b, 200).await;
    let note = json!({"event": "note", "data": 3});
    let path = format!("/api/rooms/{victim_room}/events");
    assert_eq!(a.post(&path, &service(), &note).await.0, 202);
    b.create_slot(rooms[0].0, 40 * 60).await;
    for socket in &mut sockets {
        let note = socket.recv_event("note").await;
        assert_eq!(note["room"], victim_room.as_str());
        let next = socket.recv_event("availabilityUpdated").await;
        assert_eq!(next["data"]["version"], 41);
        socket.assert_silent(Duration::from_millis(700)).await;
    }
}

#[actix_web::test]
#[ignore = "needs redis-server and PostgreSQL"]
async fn a_manual_failover_moves_a_slot_and_events_keep_flowing_through_redis() {
    let redis = RedisCluster::start(3, 1);
    // Only Redis may carry the changes across nodes here: anti-entropy is a minute away.
    let (a, b) = two_nodes(&redis, |s| s.delivery.anti_entropy_ms = 60_000).await;
    let rooms = providers_on_every_shard(&redis);
    let ids: Vec<i64> = rooms.iter().map(|(id, _)| *id).collect();
    let (moved_room, old_master) = (format!("provider-{}", rooms[0].0), rooms[0].1);
    let mut sockets = subscribers(&a, &b, &ids).await;
    wait_for_subscribers(&redis, &moved_room).await;
    write_rounds(&a, &b, &ids, 0, 3, Duration::ZERO).await;

    // The replica takes over its master's slots, the old master becomes its replica.
    let replica = redis
        .replica_of(old_master)
        .expect("every master has a replica");
    assert_eq!(redis.cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
    let slot = redis.keyslot(&channel(&moved_room));
    let deadline = Instant::now() + CONVERGE;
    while redis.master_of(slot) != Some(replica) {
        assert!(Instant::now() < deadline, "the replica never took over");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    redis.wait_until_ok();

    write_rounds(&a, &b, &ids, 3, 6, Duration::ZERO).await;
    // An event without a version is carried by Redis alone, and only to nodes
    // subscribed at the time: both must be subscribed on the new master first.
    assert_eq!(wait_for_subscribers(&redis, &moved_room).await, replica);
    let note = json!({"event": "note", "data": 4});
    let path = format!("/api/rooms/{moved_room}/events");
    assert_eq!(b.post(&path, &service(), &note).await.0, 202);
    let deadline = Instant::now() + CONVERGE;
    for socket in &mut sockets {
        let mut others = assert_versions(socket, &ids, 6, deadline).await;
        if others.is_empty() {
            others.push(socket.recv().await);
        }
        assert_eq!(
            others,
            [json!({"event": "note", "room": moved_room, "data": 4})]
        );
        socket.assert_silent(Duration::from_millis(300)).await;
    }
}

#[actix_web::test]
#[ignore = "needs redis-server and PostgreSQL"]
async fn presence_and_the_per_subject_limit_hold_across_nodes() {
    let redis = RedisCluster::start(3, 0);
    let (a, b) = two_nodes(&redis, |s| s.limits.max_connections_per_sub = 3).await;
    let fay = token_of("fay", Some(now()));
    let mut on_a = a.ws(&fay).await;
    let mut on_b = b.ws(&fay).await;
    on_a.join("lobby", None).await;
    on_b.join("lobby", None).await;
    let mut watcher = b.ws(&token_of("gus", Some(now()))).await;
    watcher.join("lobby", None).await;

    let path = "/api/rooms/lobby/presence";
    let presence = eventually(&a, path, Duration::from_secs(2), |p| p["connections"] == 3).await;
    assert_eq!(presence["users"], 2, "{presence}");
    assert_eq!(presence["subs"], json!(["fay", "gus"]));

    // Fay has two sockets, one on each node; the census tells both within a second.
    let _third = a.ws(&fay).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handshake(&b, &fay).await, 429);
    assert_eq!(handshake(&a, &fay).await, 429);
    drop(on_b);
    let deadline = Instant::now() + CONVERGE;
    while handshake(&b, &fay).await != 101 {
        assert!(Instant::now() < deadline, "a closed socket still counts");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let presence = eventually(&b, path, Duration::from_secs(2), |p| p["connections"] == 2).await;
    assert_eq!(presence["subs"], json!(["fay", "gus"]));
}

#[actix_web::test]
#[ignore = "needs redis-server and PostgreSQL"]
async fn user_events_broadcasts_and_disconnects_reach_every_node() {
    let redis = RedisCluster::start(3, 0);
    let (a, b) = two_nodes(&redis, |_| {}).await;
    let token = token_of("fay", Some(now() - 5));
    let mut on_a = a.ws(&token).await;
    let mut on_b = b.ws(&token).await;
    let mut watcher = a.ws(&token_of("gus", Some(now()))).await;

    let note = json!({"event": "note", "data": 1});
    assert_eq!(
        b.post("/api/users/fay/events", &service(), &note).await.0,
        202
    );
    for socket in [&mut on_a, &mut on_b] {
        assert_eq!(socket.recv().await["user"], "fay");
    }
    watcher.assert_silent(Duration::from_millis(200)).await;

    let news = json!({"event": "news", "data": 2});
    assert_eq!(b.post("/api/broadcast", &admin(), &news).await.0, 202);
    for socket in [&mut on_a, &mut on_b, &mut watcher] {
        assert_eq!(socket.recv().await, json!({"event": "news", "data": 2}));
    }

    let revoke = json!({"revokeTokens": true});
    assert_eq!(
        b.post("/api/users/fay/disconnect", &admin(), &revoke)
            .await
            .0,
        202
    );
    for socket in [&mut on_a, &mut on_b] {
        assert_eq!(
            socket.ending(Duration::from_secs(2)).await,
            Ending::Close(4003)
        );
    }
    assert_eq!(handshake(&a, &token).await, 401);
    watcher.assert_silent(Duration::from_millis(200)).await;
}
