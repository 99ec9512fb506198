//! Reads that outlive their callers, on a real SQLite database: whatever the callers
//! do, every read gives its permit back and leaves the table of reads in flight.

use std::time::Duration;

use diesel::r2d2::Pool;
use tempfile::TempDir;

use super::*;
use crate::db::{DatabaseTarget, Manager};

/// A migrated SQLite database and a pool of `size` connections whose callers wait for
/// a free connection up to 30 s: a test that takes every connection hangs the reads.
fn pool(size: u32) -> (TempDir, DbPool) {
    let dir = tempfile::tempdir().unwrap();
    let target = DatabaseTarget::Sqlite(dir.path().join("log.db"));
    crate::db::connect_and_migrate(&target, Duration::from_secs(4)).unwrap();
    let pool = Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(30))
        .build(Manager::new(target))
        .unwrap();
    (dir, pool)
}

/// Takes every connection of `pool`: reads wait for one until they are given back.
fn take_all(pool: &DbPool) -> Vec<crate::db::PooledConnection> {
    (0..pool.max_size()).map(|_| pool.get().unwrap()).collect()
}

/// Waits (a bounded while) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

fn provider(id: i64) -> Stream {
    Stream::Provider(id)
}

#[actix_web::test]
async fn a_read_whose_waiters_are_all_dropped_still_releases_its_permit() {
    let (_dir, pool) = pool(4);
    let log = ChangeLog::new(pool.clone(), &[], 1000).with_read_deadline(Duration::from_secs(60));
    assert_eq!(log.idle_permits(), 1);
    let held = take_all(&pool);
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let log = log.clone();
            actix_web::rt::spawn(async move { log.read(provider(1), Read::After(0)).await })
        })
        .collect();
    eventually("the read holds the permit", || log.idle_permits() == 0).await;
    assert_eq!(log.reads_in_flight(), 1, "the three callers share one read");
    // Every caller goes away (their sessions stopped) while the read waits.
    for waiter in waiters {
        waiter.abort();
    }
    drop(held);
    eventually("the permit is back", || log.idle_permits() == 1).await;
    eventually("the read left", || log.reads_in_flight() == 0).await;
    let read = log.read(provider(1), Read::After(0)).await.unwrap();
    assert_eq!(read.head, 0);
}

#[actix_web::test]
async fn a_read_queued_for_a_permit_whose_waiters_vanish_does_not_keep_one() {
    let (_dir, pool) = pool(4);
    let log = ChangeLog::new(pool.clone(), &[], 1000).with_read_deadline(Duration::from_secs(60));
    let held = take_all(&pool);
    let first = {
        let log = log.clone();
        actix_web::rt::spawn(async move { log.read(provider(1), Read::Head).await })
    };
    eventually("the first read holds the permit", || {
        log.idle_permits() == 0
    })
    .await;
    // Queued behind it, for the one permit: callers that vanish at once.
    let queued: Vec<_> = (2..6)
        .map(|id| {
            let log = log.clone();
            actix_web::rt::spawn(async move { log.read(provider(id), Read::After(0)).await })
        })
        .collect();
    eventually("every read is in flight", || log.reads_in_flight() == 5).await;
    for waiter in queued {
        waiter.abort();
    }
    drop(held);
    // The first read's caller still gets its answer; the queued reads take the permit
    // in turn, find nobody waiting, and give it straight back.
    assert_eq!(first.await.unwrap().unwrap().head, 0);
    eventually("the permit is back", || log.idle_permits() == 1).await;
    eventually("every read left", || log.reads_in_flight() == 0).await;
    let read = log.read(provider(3), Read::After(0)).await.unwrap();
    assert_eq!(read.head, 0);
}

#[actix_web::test]
async fn a_hanging_read_answers_at_its_deadline_and_frees_its_permit_with_the_database() {
    let (_dir, pool) = pool(4);
    let log =
        ChangeLog::new(pool.clone(), &[], 1000).with_read_deadline(Duration::from_millis(200));
    let held = take_all(&pool);
    // The database does not answer (every connection is taken): the read does.
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        log.read(provider(1), Read::After(0)),
    )
    .await
    .expect("a read never waits without bound");
    let error = answer.unwrap_err();
    assert!(error.0.contains("no answer within 200 ms"), "{error}");
    assert_eq!(log.reads_in_flight(), 0, "the next read starts afresh");
    // The same holds for the batched heads.
    let heads = tokio::time::timeout(Duration::from_secs(20), log.positions(vec![provider(1)]))
        .await
        .expect("a heads read never waits without bound");
    assert!(heads.is_err());
    // The permit stays with the work that still waits for the database, and comes
    // back when it has answered.
    assert_eq!(log.idle_permits(), 0);
    drop(held);
    eventually("the permit is back", || log.idle_permits() == 1).await;
    let read = log.read(provider(1), Read::After(0)).await.unwrap();
    assert_eq!(read.head, 0);
}

#[actix_web::test]
async fn a_room_s_first_events_racing_for_its_stream_row_all_append() {
    let (_dir, pool) = pool(8);
    let log = ChangeLog::new(pool, &["race-*".to_owned()], 1000);
    let room = RoomName::parse("race-1").unwrap();
    let appends = (0..8).map(|n| {
        let (log, room) = (log.clone(), room.clone());
        async move { log.append(&room, "e", &serde_json::json!({"n": n})).await }
    });
    let mut versions: Vec<i64> = futures_util::future::join_all(appends)
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
}
