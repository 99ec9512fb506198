//! Micro-benchmark of the registry's fan-out path: one event published to a room of
//! 10,000 sessions. It measures what the registry does per event (clone the shared
//! frame handle, `try_send` to each member) so regressions show without a load run;
//! the sessions here are minimal actors that only count what they receive.
//!
//! Run: `cargo bench --bench fanout`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventide_hub::metrics::Metrics;
use eventide_hub::rooms::{Connect, Deliver, Fanout, Hub, Join, RoomName, SessionMsg};

const SESSIONS: u64 = 10_000;

/// A stand-in session: counts the events it is handed.
struct CountingSession {
    received: Arc<AtomicU64>,
}

impl Actor for CountingSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Large enough that a benchmark burst never evicts it.
        ctx.set_mailbox_capacity(1 << 20);
    }
}

impl Handler<SessionMsg> for CountingSession {
    type Result = ();

    fn handle(&mut self, _: SessionMsg, _: &mut Self::Context) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }
}

fn fanout(c: &mut Criterion) {
    let system = actix::System::new();
    let received = Arc::new(AtomicU64::new(0));
    let room = RoomName::parse("provider-1").unwrap();
    let hub = system.block_on(async {
        let hub = Hub::start(None, Arc::new(Metrics::new(false)));
        for id in 0..SESSIONS {
            let session = CountingSession {
                received: received.clone(),
            }
            .start();
            hub.registry().do_send(Connect {
                id,
                recipient: session.recipient(),
            });
            hub.registry()
                .send(Join {
                    id,
                    room: room.clone(),
                })
                .await
                .unwrap();
        }
        hub
    });
    let frame = ByteString::from(format!(
        "{{\"event\":\"availabilityUpdated\",\"room\":\"provider-1\",\"data\":{{\"note\":\"{}\"}}}}",
        "x".repeat(300)
    ));

    let mut group = c.benchmark_group("registry");
    group.throughput(Throughput::Elements(SESSIONS));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("publish to a room of 10k sessions", |b| {
        b.iter_custom(|iterations| {
            system.block_on(async {
                let start = Instant::now();
                for version in 0..iterations {
                    // `send` waits for the registry to hand the frame to every member.
                    hub.registry()
                        .send(Fanout(Deliver {
                            room: Some(room.clone()),
                            version: Some(version as i64),
                            frame: frame.clone(),
                        }))
                        .await
                        .unwrap();
                }
                let elapsed = start.elapsed();
                // Let the sessions drain before the next sample, outside the timing.
                let target = iterations * SESSIONS;
                while received.load(Ordering::Relaxed) < target {
                    actix::clock::sleep(Duration::from_millis(1)).await;
                }
                received.store(0, Ordering::Relaxed);
                elapsed
            })
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
