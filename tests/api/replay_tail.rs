//! Rejoins served from memory: a `since` inside the recent frames a room keeps is
//! replayed without reading the change log, with the very frames the log holds.

use std::time::Duration;

use crate::helpers::*;

/// Sockets in the room on every worker: connections are handed to the workers in
/// turn, so a few watchers put the room (and its recent frames) on each shard.
const WATCHERS: usize = 4;

async fn a_recent_since_is_replayed_from_memory_with_the_logged_frames(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watcher = app.ws(&provider(7)).await;
        watcher.join("provider-7", None).await;
        watchers.push(watcher);
    }
    for minute in 0..5 {
        app.create_slot(7, minute * 60).await;
    }
    let mut live = Vec::new();
    for _ in 1..=5 {
        live.push(watchers[0].recv().await);
    }
    let before = app.series("eventide_replays_from_memory_total").await;
    let reads_before = app.series("eventide_replay_reads_total").await;

    let mut rejoined = app.ws(&provider(7)).await;
    let joined = rejoined.join("provider-7", Some(2)).await;
    assert_eq!(joined["data"]["recovered"], true, "{joined}");
    assert_eq!(joined["data"]["version"], 5);
    for expected in &live[2..] {
        assert_eq!(&rejoined.recv().await, expected);
    }
    rejoined.assert_silent(Duration::from_millis(200)).await;
    assert_eq!(
        app.series("eventide_replays_from_memory_total").await,
        before + 1.0
    );
    assert_eq!(
        app.series("eventide_replay_reads_total").await,
        reads_before
    );

    // The same range read from the change log (a second node on the same data, which
    // keeps no recent frames) replays the same frames.
    let cold = TestApp::builder()
        .same_data_as(&app)
        .configure(|s| s.delivery.replay_tail_bytes = 0)
        .spawn()
        .await;
    let mut from_log = cold.ws(&provider(7)).await;
    let joined = from_log.join("provider-7", Some(2)).await;
    assert_eq!(joined["data"]["recovered"], true, "{joined}");
    for expected in &live[2..] {
        assert_eq!(&from_log.recv().await, expected);
    }
    assert_eq!(cold.series("eventide_replays_from_memory_total").await, 0.0);
    assert!(cold.series("eventide_replay_reads_total").await >= 1.0);
}

async fn a_since_older_than_the_recent_frames_is_read_from_the_change_log(backend: Backend) {
    // Room for about two frames per room: older positions need the change log.
    let app = TestApp::builder()
        .backend(backend)
        .configure(|s| s.delivery.replay_tail_bytes = 700)
        .spawn()
        .await;
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut watcher = app.ws(&provider(8)).await;
        watcher.join("provider-8", None).await;
        watchers.push(watcher);
    }
    for minute in 0..6 {
        app.create_slot(8, minute * 60).await;
    }
    for _ in 1..=6 {
        watchers[0].recv().await;
    }
    let reads_before = app.series("eventide_replay_reads_total").await;
    let mut rejoined = app.ws(&provider(8)).await;
    let joined = rejoined.join("provider-8", Some(1)).await;
    assert_eq!(joined["data"]["recovered"], true, "{joined}");
    for version in 2..=6 {
        assert_eq!(rejoined.recv().await["data"]["version"], version);
    }
    assert!(app.series("eventide_replay_reads_total").await > reads_before);
}

crate::on_both_backends!(
    a_recent_since_is_replayed_from_memory_with_the_logged_frames,
    a_since_older_than_the_recent_frames_is_read_from_the_change_log,
);
