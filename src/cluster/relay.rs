//! The relay: publishes this node's events to Redis, after commit and outside every
//! lock, so that a slow or dead Redis never holds a writer or a database connection.
//!
//! The queue is bounded in bytes. The relay task sends what is queued in pipelined
//! batches and retries a failed batch with backoff; a message that could not be sent
//! within [`GIVE_UP_AFTER`], or that finds the queue full, is dropped and counted —
//! the other nodes' anti-entropy finds any versioned event that never arrived.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::link::{Connection, RedisLink, REDIS_TIMEOUT};
use crate::metrics::Metrics;

/// Bytes the relay queues at most.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Messages the relay queues at most.
const MAX_QUEUED: usize = 65_536;
/// Messages sent in one pipelined batch at most.
const BATCH: usize = 256;
/// A message not published within this long is dropped.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Outgoing {
    channel: String,
    payload: Vec<u8>,
    queued_at: Instant,
}

/// The sending half: cheap to call from any thread, never waits.
pub struct Relay {
    tx: mpsc::Sender<Outgoing>,
    /// Bytes queued and not yet acknowledged by Redis.
    queued_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Relay {
    /// Starts the relay task on the current runtime.
    pub fn start(link: RedisLink, metrics: Arc<Metrics>) -> Relay {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        actix_web::rt::spawn(run(link, rx, queued_bytes.clone(), metrics.clone()));
        Relay {
            tx,
            queued_bytes,
            metrics,
        }
    }

    /// Queues `payload` for `channel`; drops it (counted) when the queue is full.
    pub fn send(&self, channel: String, payload: Vec<u8>) {
        let size = payload.len();
        if self.queued_bytes.fetch_add(size, Ordering::AcqRel) + size > MAX_QUEUED_BYTES {
            return self.dropped(size, "its queue is full");
        }
        let outgoing = Outgoing {
            channel,
            payload,
            queued_at: Instant::now(),
        };
        if self.tx.try_send(outgoing).is_err() {
            self.dropped(size, "its queue is full");
        } else {
            self.metrics.hub.relay_queued_bytes.add(size as i64);
        }
    }

    fn dropped(&self, size: usize, why: &str) {
        self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        self.metrics.hub.relay_dropped.inc();
        log::warn!("relay: dropped an event for Redis: {why}");
    }

    /// Waits until everything queued is published, or `timeout`.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.queued_bytes.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Publishes `batch` in one pipeline per group the link asks for, all at once; which
/// messages went out, or why not.
async fn publish(
    link: &RedisLink,
    conn: &Connection,
    batch: &[Outgoing],
) -> (Vec<bool>, Option<String>) {
    let groups = link.groups(batch.iter().map(|m| m.channel.as_str()));
    let sends = groups.iter().map(|group| {
        let mut pipe = redis::pipe();
        for i in group {
            link.publish(&mut pipe, &batch[*i].channel, &batch[*i].payload);
        }
        let mut conn = conn.clone();
        async move {
            match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer".to_owned()),
            }
        }
    });
    let mut sent = vec![false; batch.len()];
    let mut why = None;
    for (group, outcome) in groups.iter().zip(join_all(sends).await) {
        match outcome {
            Ok(()) => group.iter().for_each(|i| sent[*i] = true),
            Err(e) => why = Some(e),
        }
    }
    (sent, why)
}

async fn run(
    link: RedisLink,
    mut rx: mpsc::Receiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    let mut connection: Option<Connection> = None;
    let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let mut backoff = Duration::from_millis(50);
    let settle = |batch: &mut Vec<Outgoing>, keep: &mut dyn FnMut(&Outgoing) -> bool| {
        let mut released = 0;
        batch.retain(|m| {
            let kept = keep(m);
            if !kept {
                released += m.payload.len();
            }
            kept
        });
        queued_bytes.fetch_sub(released, Ordering::AcqRel);
        metrics.hub.relay_queued_bytes.sub(released as i64);
    };
    loop {
        if batch.is_empty() && rx.recv_many(&mut batch, BATCH).await == 0 {
            return; // every sender is gone
        }
        let before = batch.len();
        settle(&mut batch, &mut |m| m.queued_at.elapsed() < GIVE_UP_AFTER);
        if batch.len() < before {
            let lost = (before - batch.len()) as u64;
            metrics.hub.relay_dropped.inc_by(lost);
            log::warn!("relay: gave up on {lost} events after {GIVE_UP_AFTER:?} without Redis");
        }
        if batch.is_empty() {
            continue;
        }
        if connection.is_none() {
            match link.connect().await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    log::warn!("relay: cannot connect to Redis: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let conn = connection.as_ref().expect("connected above");
        let (sent, failed) = publish(&link, conn, &batch).await;
        let published = sent.iter().filter(|s| **s).count();
        metrics.hub.relay_published.inc_by(published as u64);
        // What went out leaves the batch; the rest keeps its order for the retry.
        let mut outcome = sent.into_iter();
        settle(&mut batch, &mut |_| !outcome.next().unwrap_or(false));
        match failed {
            None => backoff = Duration::from_millis(50),
            Some(why) => {
                log::warn!(
                    "relay: PUBLISH failed ({why}); retrying {} events",
                    batch.len()
                );
                metrics.hub.relay_retries.inc();
                // A timed-out PUBLISH may still go through: receivers drop the repeat.
                connection = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
