//! The node's anti-entropy tick at scale: 50,000 versioned rooms with members on one
//! node, their heads read in batches by one tick. Prints the queries and the time of a
//! tick (the figures in BENCHMARKS.md); asserts only the count of queries.
//!
//! `EVENTIDE_TEST_PG_URL=postgres://… cargo test --test api
//!  anti_entropy_over_50000_rooms -- --include-ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use eventide_hub::changelog::{ChangeLog, HEADS_BATCH};
use eventide_hub::db::{connect_and_migrate, DatabaseTarget};
use eventide_hub::rooms::{read_heads, RoomIndex, RoomName};

use crate::helpers::*;

const ROOMS: i64 = 50_000;

#[actix_web::test]
#[ignore = "needs PostgreSQL"]
async fn anti_entropy_over_50000_rooms() {
    let (_data, url) = actix_web::web::block(|| fresh_data(Backend::Postgres))
        .await
        .unwrap();
    let pool = actix_web::web::block(move || {
        let pool = connect_and_migrate(&DatabaseTarget::parse(&url).unwrap()).unwrap();
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
