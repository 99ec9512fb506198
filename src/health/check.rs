//! One readiness probe at a time, its result shared.
//!
//! `/readyz` is unauthenticated, so a flood of it must not become a flood of probes:
//! each probe takes a pool connection and (on SQLite) opens the file afresh, on the
//! blocking pool. [`ReadinessCheck::report`] therefore joins the probe in flight if
//! there is one, reuses a finished one for [`CACHE_FOR`], and only otherwise starts a
//! new one. A probe that outlives its 2 s timeout keeps its blocking thread until the
//! dependency answers; until then no new blocking probe of that dependency starts (the
//! report says the previous one has not finished), so a hung database cannot pile up
//! blocking tasks either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use prometheus::IntCounter;

use super::DatabaseProbe;
use crate::metrics::Metrics;
use crate::rooms::Hub;

/// How long readiness waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a finished probe's result answers `/readyz`.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// What one probe found: `Ok` or why each dependency did not answer.
#[derive(Debug, Clone)]
pub struct Report {
    /// The database.
    pub database: Result<(), String>,
    /// Redis, in a cluster; `None` on a single node.
    pub redis: Option<Result<(), String>>,
}

impl Report {
    /// Whether every dependency answered.
    pub fn ready(&self) -> bool {
        self.database.is_ok() && self.redis.as_ref().is_none_or(Result::is_ok)
    }
}

type Flight = Shared<BoxFuture<'static, Arc<Report>>>;

/// Runs readiness probes one at a time and shares their results.
pub struct ReadinessCheck {
    database: Arc<DatabaseProbe>,
    hub: Hub,
    /// The latest probe: in flight, or finished at the given instant's probe start.
    /// Never held across an await.
    latest: Mutex<Option<(Instant, Flight)>>,
    /// True while a blocking database probe runs (it may outlive its timeout).
    database_busy: Arc<AtomicBool>,
    /// True while a blocking Redis ping runs.
    redis_busy: Arc<AtomicBool>,
    /// `eventide_readiness_probes_total`: probes actually run.
    probes: IntCounter,
}

impl ReadinessCheck {
    /// A check of `database` and of the hub's Redis, if it has one.
    pub fn new(database: DatabaseProbe, hub: Hub, metrics: &Metrics) -> Self {
        ReadinessCheck {
            database: Arc::new(database),
            hub,
            latest: Mutex::new(None),
            database_busy: Arc::new(AtomicBool::new(false)),
            redis_busy: Arc::new(AtomicBool::new(false)),
            probes: metrics.new_counter(
                "eventide_readiness_probes_total",
                "Readiness probes run (concurrent /readyz calls share one)",
            ),
        }
    }

    /// The readiness of the node: the probe in flight, a probe finished less than
    /// [`CACHE_FOR`] ago, or a new probe.
    pub async fn report(&self) -> Arc<Report> {
        let flight = {
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            match &*latest {
                Some((started, flight))
                    if flight.peek().is_none() || started.elapsed() < CACHE_FOR =>
                {
                    flight.clone()
                }
                _ => {
                    let flight = self.probe().boxed().shared();
                    *latest = Some((Instant::now(), flight.clone()));
                    flight
                }
            }
        };
        flight.await
    }

    fn probe(&self) -> impl std::future::Future<Output = Arc<Report>> + Send + 'static {
        self.probes.inc();
        let database = self.database.clone();
        let database = guarded(self.database_busy.clone(), move || database.check());
        let redis = self.hub.backplane().cloned().map(|backplane| {
            if backplane.is_subscribed() {
                guarded(self.redis_busy.clone(), move || backplane.ping_blocking()).boxed()
            } else {
                futures_util::future::ready(Err("not subscribed to the cluster channel".to_owned()))
                    .boxed()
            }
        });
        async move {
            let database = database.await;
            let redis = match redis {
                Some(redis) => Some(redis.await),
                None => None,
            };
            Arc::new(Report { database, redis })
        }
    }
}

/// Runs `work` on the blocking pool with the timeout, unless the previous run (which
/// `busy` tracks) is still going.
fn guarded(
    busy: Arc<AtomicBool>,
    work: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
    let started = !busy.swap(true, Ordering::AcqRel);
    async move {
        if !started {
            return Err("the previous probe has not finished (no answer within 2 s)".into());
        }
        // Moved into the closure, so it clears the flag even if the closure never runs.
        let done = Done(busy);
        let task = web::block(move || {
            let _done = done;
            work()
        });
        match tokio::time::timeout(READY_TIMEOUT, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 2 s".to_owned()),
        }
    }
}

/// Clears the busy flag when the blocking work ends, however it ends.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
