//! Micro-benchmark of the registry's fan-out path: one event published to a room of
//! 10,000 sessions, timed until every session has it. It measures what the hub and its
//! shard do per event (clone the shared frame handle, `try_send` to each member) so
//! regressions show without a load run; the sessions here are minimal actors that only
//! count what they receive.
//!
//! Run: `cargo bench --bench fanout`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventide_hub::changelog::ChangeLog;
use eventide_hub::db::{self, DatabaseTarget};
use eventide_hub::metrics::{Metrics, Origin};
use eventide_hub::rooms::sequencer::HoldLimits;
use eventide_hub::rooms::{
    inbox, Event, Hub, InboxLimits, RoomName, SessionMsg, ShardConfig, TailLimits, Target,
};

const SESSIONS: u64 = 10_000;

/// A stand-in session: counts the events it is handed.
struct CountingSession {
    received: Arc<AtomicU64>,
}

impl Actor for CountingSession {
    type Context = Context<Self>;
}

impl StreamHandler<VecDeque<SessionMsg>> for CountingSession {
    fn handle(&mut self, batch: VecDeque<SessionMsg>, _: &mut Self::Context) {
        self.received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

fn fanout(c: &mut Criterion) {
    let system = actix::System::new();
    let received = Arc::new(AtomicU64::new(0));
    let room = RoomName::parse("lobby").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target =
        DatabaseTarget::parse(&format!("sqlite://{}", dir.path().join("b.db").display())).unwrap();
    let pool = db::connect_and_migrate(&target, Duration::from_secs(4)).unwrap();
    let config = ShardConfig {
        anti_entropy_interval: Duration::from_secs(2),
        recovery_deadline: Duration::from_secs(10),
        hold: HoldLimits {
            count: 4096,
            bytes: 1 << 22,
        },
        heartbeat_interval: Duration::from_secs(10),
        tail: TailLimits {
            room_bytes: 64 * 1024,
            node_bytes: 1 << 26,
        },
    };
    let metrics = Arc::new(Metrics::new(false));
    let hub = Hub::new(config, ChangeLog::new(pool, &[], 1000), None, metrics);
    let _links = system.block_on(async {
        let mut links = Vec::new();
        for id in 0..SESSIONS {
            // Large enough that a benchmark burst never evicts it.
            let (mailbox, inbox) = inbox(InboxLimits {
                messages: 1 << 20,
                bytes: 1 << 30,
            });
            let received = received.clone();
            CountingSession::create(|ctx| {
                ctx.add_stream(inbox);
                CountingSession { received }
            });
            let link = hub.connect(id, Arc::from("bench"), mailbox, None);
            link.join(room.clone(), None).await.unwrap();
            links.push(link);
        }
        links
    });
    let frame = ByteString::from(format!(
        "{{\"event\":\"notice\",\"room\":\"lobby\",\"data\":{{\"note\":\"{}\"}}}}",
        "x".repeat(300)
    ));

    let mut group = c.benchmark_group("registry");
    group.throughput(Throughput::Elements(SESSIONS));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("publish to a room of 10k sessions", |b| {
        b.iter_custom(|iterations| {
            system.block_on(async {
                let start = Instant::now();
                let target = iterations * SESSIONS;
                for _ in 0..iterations {
                    let event = Event {
                        target: Target::Room(room.clone()),
                        version: None,
                        frame: frame.clone(),
                    };
                    hub.publish(event, Origin::Emit).await.unwrap();
                }
                while received.load(Ordering::Relaxed) < target {
                    actix::clock::sleep(Duration::from_micros(50)).await;
                }
                let elapsed = start.elapsed();
                received.store(0, Ordering::Relaxed);
                elapsed
            })
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
