//! The node's anti-entropy tick: what no message announced is found by comparing the
//! heads in the database with what this node delivered.
//!
//! One tick per node, not per shard: it reads the heads and epochs of the node's
//! de-duplicated room index (a room with members on many shards is read once), in
//! batches of [`HEADS_BATCH`](crate::changelog::HEADS_BATCH) under one read permit at a
//! time, and hands the result to every shard, which compares its own rooms with it. The
//! same pass runs at once after a Redis resubscribe ([`Hub::recheck`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::hub::WeakHub;
use super::messages::Heads;
use super::sequencer::Epoch;
use super::{Hub, RoomName};
use crate::changelog::{ChangeLog, LogError};

/// The heads of a node's versioned rooms, as one tick read them.
#[derive(Debug, Default)]
pub struct HeadsRead {
    /// Each versioned room's head and epoch.
    pub heads: HashMap<RoomName, (i64, Epoch)>,
    /// The queries it took.
    pub queries: usize,
}

/// Reads the heads and epochs of the versioned rooms among `rooms`.
pub async fn read_heads(
    changelog: &ChangeLog,
    rooms: Vec<RoomName>,
) -> Result<HeadsRead, LogError> {
    let (rooms, streams): (Vec<RoomName>, Vec<_>) = rooms
        .into_iter()
        .filter_map(|room| Some((changelog.stream_of(&room)?, room)))
        .map(|(stream, room)| (room, stream))
        .unzip();
    if streams.is_empty() {
        return Ok(HeadsRead::default());
    }
    let found = changelog.positions(streams).await?;
    let heads = rooms.into_iter().zip(found.positions).collect();
    Ok(HeadsRead {
        heads,
        queries: found.queries,
    })
}

/// Clears the "tick running" flag when the tick's task ends, however it ends (its
/// worker stopped), so that the next shard started starts the tick again.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Ticks every `interval`, or at once when `wake` is notified, for as long as the hub
/// lives. `running` is set by the caller and cleared when this ends.
pub(super) async fn run(
    hub: WeakHub,
    interval: Duration,
    wake: Arc<Notify>,
    running: Arc<AtomicBool>,
) {
    let _running = Running(running);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
        }
        let Some(hub) = hub.upgrade() else {
            return;
        };
        tick(&hub).await;
    }
}

async fn tick(hub: &Hub) {
    let rooms = hub.index().rooms();
    if rooms.is_empty() {
        return;
    }
    let metrics = hub.metrics();
    let read = match read_heads(hub.changelog(), rooms).await {
        Ok(read) => read,
        Err(e) => return log::warn!("anti-entropy: {e}"),
    };
    metrics.hub.anti_entropy_runs.inc();
    metrics.hub.anti_entropy_queries.inc_by(read.queries as u64);
    if read.heads.is_empty() {
        return;
    }
    let heads = Arc::new(read.heads);
    for shard in hub.shards() {
        shard.do_send(Heads(heads.clone()));
    }
}
