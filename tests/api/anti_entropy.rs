//! The node's anti-entropy tick: one per node, however many worker threads serve a
//! room's sockets; and at scale, 50,000 versioned rooms with members on one node, their
//! heads read in batches by one tick. The scale test prints the queries and the time of
//! a tick (the figures in BENCHMARKS.md); it asserts only the count of queries.
//!
//! `EVENTIDE_TEST_PG_URL=postgres://… cargo test --test api
//!  anti_entropy_over_50000_rooms -- --include-ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use eventide_hub::changelog::{ChangeLog, HEADS_BATCH};
use eventide_hub::db::{connect_and_migrate, DatabaseTarget};
use eventide_hub::rooms::{read_heads, RoomIndex, RoomName};

use crate::helpers::*;

const ROOMS: i64 = 50_000;

#[actix_web::test]
async fn a_room_on_many_workers_is_read_once_per_tick() {
    let app = TestApp::builder()
        .configure(|s| s.delivery.anti_entropy_ms = 100)
        .spawn()
        .await;
    app.create_slot(1, 0).await;
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let mut socket = app.ws(&client_with_rooms(&["provider-1", "lobby"])).await;
        socket.join("provider-1", None).await;
        socket.join("lobby", None).await;
        sockets.push(socket);
    }
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    // Read both before and after, so a tick between the two reads is not miscounted.
    let runs = app.series("eventide_anti_entropy_runs_total").await;
    let queries = app.series("eventide_anti_entropy_queries_total").await;
    let runs_after = app.series("eventide_anti_entropy_runs_total").await;
    assert!(runs >= 2.0, "the tick runs: {runs}");
    assert!(
        queries >= runs && queries <= runs_after,
        "one query per tick for one versioned room: {queries} queries in {runs}..{runs_after} ticks"
    );
    // The stream still moves: the tick found nothing to do and delivered nothing twice.
    app.create_slot(1, 60).await;
    for socket in &mut sockets {
        assert_eq!(socket.recv().await["data"]["version"], 2);
        socket.assert_silent(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL"]
async fn anti_entropy_over_50000_rooms() {
    let (_data, url) = actix_web::web::block(|| fresh_data(Backend::Postgres))
        .await
        .unwrap();
    let pool = actix_web::web::block(move || {
        let pool = connect_and_migrate(&DatabaseTarget::parse(&url).unwrap(), Duration::from_secs(60))
            .unwrap();
        pool.get()
            .unwrap()
            .batch_execute(&format!(
                "INSERT INTO providers (id, version) SELECT g, g % 97 FROM generate_series(1, {ROOMS}) g"
            ))
            .unwrap();
        pool
    })
    .await
    .unwrap();
    // Every room has members on this node; a room joined by sockets of many shards is
    // one entry in the node's index.
    let index = RoomIndex::default();
    let sub: Arc<str> = Arc::from("member");
    for id in 1..=ROOMS {
        let room = RoomName::parse(&format!("provider-{id}")).unwrap();
        for _ in 0..3 {
            index.join(&room, &sub);
        }
    }
    let changelog = ChangeLog::new(pool, &[], 100);
    for tick in 1..=3 {
        let started = Instant::now();
        let read = read_heads(&changelog, index.rooms()).await.unwrap();
        let took = started.elapsed();
        println!(
            "tick {tick}: {} rooms, {} queries, {:.1} ms",
            read.heads.len(),
            read.queries,
            took.as_secs_f64() * 1e3
        );
        assert_eq!(read.heads.len(), ROOMS as usize);
        assert_eq!(read.queries, (ROOMS as usize).div_ceil(HEADS_BATCH));
        let id = 4_242;
        let room = RoomName::parse(&format!("provider-{id}")).unwrap();
        assert_eq!(read.heads[&room].0, id % 97);
    }
}
