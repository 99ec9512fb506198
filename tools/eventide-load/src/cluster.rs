//! `cluster`: delivery across hub nodes while Redis misbehaves. N subscribers spread
//! round-robin over two or more nodes join `provider-{p}` rooms; M changes are made
//! through REST at a fixed rate, each room's changes alternating between the nodes;
//! optionally every subscriber drops its socket on a jittered schedule and rejoins the
//! same node with `since` = the last version it saw; and the tool itself causes Redis
//! faults on a schedule (`CLIENT KILL TYPE pubsub`, or `CLIENT PAUSE <ms> WRITE`).
//!
//! At the end each subscriber's arrivals per room (live plus replayed) must be exactly
//! the room's versions `base+1..=last`, once, in order (`sequence::check`); the report
//! gives REST write and delivery latency, and for each fault the time from its end
//! until every subscriber held every version acknowledged before that end.
//!
//! One process holds at most as many sockets as its file-descriptor limit allows, so a
//! run can be split (`--role`): several `subscribe` processes, each with a slice of the
//! subscribers (`--first-subscriber`), and one `write` process; they meet in the files
//! of [`split`](super::split) and `merge` joins their results.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Instant};

use super::redis;
use super::report::Report;
use super::sequence::RoomTrack;
use super::split::{self, Reach};
use super::stats::Histogram;
use super::sys::{self, now_micros};
use super::target::{Auth, Target};

mod subscriber;
mod verdict;
mod writer;

use subscriber::subscriber;
use writer::{inject, room_versions, write_room};

/// The Redis fault the tool causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// No fault.
    None,
    /// `CLIENT KILL TYPE pubsub`: every node loses its subscription connection.
    KillPubsub,
    /// `CLIENT PAUSE <--fault-for-ms> WRITE`: Redis refuses writes (PUBLISH) meanwhile.
    PauseWrites,
}

/// What one process does of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Subscribers and changes in this process.
    Both,
    /// Only the subscribers: another process makes the changes; this one waits for
    /// `--writes-done-file`, then checks and writes its arrivals to `--changes-file`.
    Subscribe,
    /// Only the changes (no subscriber): their REST calls go to `--changes-file`.
    Write,
}

/// Arguments of `cluster`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// A hub node's WebSocket URL (loopback only), once per node; REST goes to the same host.
    #[arg(long = "hub", required = true)]
    hubs: Vec<String>,
    /// The nodes' process ids, to report their CPU time.
    #[arg(long = "hub-pid")]
    hub_pids: Vec<u32>,
    /// The hubs' HS256 secret (subscribers get `client` tokens, the writer `service`).
    #[arg(long, env = "EVENTIDE_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Sockets per minted token subject.
    #[arg(long, default_value_t = 100)]
    per_sub: usize,
    /// Sockets per source address (127.0.0.2, …).
    #[arg(long, default_value_t = 5000)]
    per_source: usize,
    /// Subscriber sockets in this process (at most 20,000), subscriber i on node i % nodes.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// The run-wide index of this process's first subscriber: node, rooms, source
    /// address and token subject follow the run-wide index, so that processes with
    /// disjoint slices together make one run.
    #[arg(long, default_value_t = 0)]
    first_subscriber: usize,
    /// What this process does of the run.
    #[arg(long, value_enum, default_value_t = Role::Both)]
    role: Role,
    /// Written once every subscriber joined its rooms (sockets per node, when
    /// connecting began and ended).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// `--role subscribe`: the changes are over once this file exists.
    #[arg(long)]
    writes_done_file: Option<PathBuf>,
    /// Written at the end: per change, how it reached this process's subscribers
    /// (`subscribe`), or when its REST call was due, sent and answered (`write`).
    #[arg(long)]
    changes_file: Option<PathBuf>,
    /// Seconds every subscriber has to join its rooms.
    #[arg(long, default_value_t = 60)]
    join_secs: u64,
    /// Rooms provider-{first}…; subscriber i joins provider (i + j) % P for j < --rooms-each.
    #[arg(long, default_value_t = 10)]
    providers: usize,
    /// Rooms each subscriber joins.
    #[arg(long, default_value_t = 1)]
    rooms_each: usize,
    /// The first provider id.
    #[arg(long, default_value_t = 1)]
    first_provider: u64,
    /// Changes in all (at most 100,000); change n goes to room n % P.
    #[arg(long, default_value_t = 1500)]
    changes: usize,
    /// Make every change through this node (0-based) instead of alternating: the
    /// other nodes then learn of changes only through Redis or their own checks.
    #[arg(long)]
    write_node: Option<usize>,
    /// Changes per second in all.
    #[arg(long, default_value_t = 25.0)]
    rate: f64,
    /// Each subscriber closes its socket about this often (0: never).
    #[arg(long, default_value_t = 0.0)]
    drop_every_secs: f64,
    /// ± this fraction of --drop-every-secs, drawn per drop.
    #[arg(long, default_value_t = 0.5)]
    drop_jitter: f64,
    /// Seconds a dropped subscriber stays away before rejoining with `since`.
    #[arg(long, default_value_t = 2.0)]
    drop_for_secs: f64,
    /// The Redis the hubs share (loopback only), where faults are caused.
    #[arg(long)]
    redis: Option<String>,
    /// The fault.
    #[arg(long, value_enum, default_value_t = Fault::None)]
    fault: Fault,
    /// Seconds between faults (the first one this long after the first change).
    #[arg(long, default_value_t = 10.0)]
    fault_every_secs: f64,
    /// How long a `pause-writes` fault lasts.
    #[arg(long, default_value_t = 3000)]
    fault_for_ms: u64,
    /// Seconds to wait after the last change for every subscriber to hold every version.
    #[arg(long, default_value_t = 15)]
    settle_secs: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Hard cap on the whole run, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// Everything the tasks share (single-threaded runtime).
#[derive(Default)]
struct Shared {
    /// Per subscriber: its rooms' tracks (None until the first `joinedRoom`).
    tracks: Vec<Vec<Option<RoomTrack>>>,
    /// Per subscriber: when its socket was down, `(closed, reopened)`.
    down: Vec<Vec<(u64, u64)>>,
    /// Per change: its version (0 until some subscriber saw it), when its REST call
    /// was due, sent and answered, and how it reached the subscribers.
    version_of: Vec<u64>,
    due_us: Vec<u64>,
    sent_us: Vec<u64>,
    acked_us: Vec<u64>,
    reach: Vec<Reach>,
    joined: usize,
    live: Histogram,
    replay: Histogram,
    /// Per rejoin: from opening the socket again (after a drop) to each of its rooms'
    /// `joinedRoom`, which the hub sends once it has what the client missed.
    rejoin: Histogram,
    /// Per subscriber: when its current socket began to open after a drop (0 for its
    /// first connection).
    reopened_us: Vec<u64>,
    reconnects: u64,
    connect_failures: u64,
    not_recovered: u64,
    join_errors: u64,
    first_error: Option<String>,
    why_down: std::collections::BTreeMap<String, u64>,
}

struct Ctx {
    nodes: Vec<Target>,
    auth: Auth,
    args: ClusterArgs,
    shared: RefCell<Shared>,
    handshakes: Semaphore,
}

impl Ctx {
    /// The run-wide index of this process's subscriber `i`.
    fn global(&self, i: usize) -> usize {
        self.args.first_subscriber + i
    }

    fn rooms_of(&self, i: usize) -> Vec<usize> {
        let p = self.args.providers;
        (0..self.args.rooms_each.min(p))
            .map(|j| (self.global(i) + j) % p)
            .collect()
    }
}

/// Sleeps until `path` exists (the caller's timeout bounds the wait).
async fn wait_for_file(path: &Path) {
    while !path.exists() {
        sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `cluster`.
pub async fn run(args: ClusterArgs) -> Result<Report, String> {
    let nodes = args
        .hubs
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    if args.rate <= 0.0 || args.providers == 0 || args.rooms_each == 0 {
        return Err("--rate, --providers and --rooms-each must be positive".into());
    }
    if args.write_node.is_some_and(|n| n >= nodes.len()) {
        return Err("--write-node must name one of the --hub nodes (0-based)".into());
    }
    if args.fault != Fault::None && !(args.fault_every_secs >= 1.0 && args.fault_for_ms <= 60_000) {
        return Err("faults need --fault-every-secs ≥ 1 and --fault-for-ms ≤ 60000".into());
    }
    let redis_addr = match (args.fault, &args.redis) {
        (Fault::None, _) => None,
        (_, Some(url)) => Some(redis::parse_url(url)?),
        (_, None) => return Err("--fault needs --redis".into()),
    };
    if let Some(addr) = redis_addr {
        redis::command(addr, &["PING"]).await?;
    }
    match args.role {
        Role::Both if args.changes_file.is_some() => {
            return Err("--changes-file needs --role subscribe or write".into())
        }
        Role::Subscribe if args.writes_done_file.is_none() || args.changes_file.is_none() => {
            return Err("--role subscribe needs --writes-done-file and --changes-file".into())
        }
        Role::Write if args.changes_file.is_none() => {
            return Err("--role write needs --changes-file".into())
        }
        Role::Subscribe | Role::Write if args.fault != Fault::None => {
            return Err("faults need the writers and the subscribers in one process".into())
        }
        _ => {}
    }
    let mut args = args;
    args.subscribers = match args.role {
        Role::Write => 0,
        _ => args.subscribers.clamp(1, 20_000),
    };
    args.changes = args.changes.clamp(1, 100_000);
    let (soft, _) = sys::raise_nofile_limit().map_err(|e| format!("setrlimit: {e}"))?;
    if args.subscribers as u64 + 64 > soft {
        return Err(format!(
            "{} subscribers need more file descriptors than RLIMIT_NOFILE allows ({soft})",
            args.subscribers
        ));
    }
    let auth = Auth::from_args(None, Some(args.secret.clone()), args.per_sub);
    let (n_subs, each) = (args.subscribers, args.rooms_each.min(args.providers));
    let shared = Shared {
        tracks: vec![vec![None; each]; n_subs],
        down: vec![Vec::new(); n_subs],
        reopened_us: vec![0; n_subs],
        version_of: vec![0; args.changes],
        due_us: vec![0; args.changes],
        sent_us: vec![0; args.changes],
        acked_us: vec![0; args.changes],
        reach: vec![Reach::default(); args.changes],
        ..Shared::default()
    };
    let ctx = Rc::new(Ctx {
        nodes,
        auth,
        handshakes: Semaphore::new(args.concurrency.max(1)),
        args,
        shared: RefCell::new(shared),
    });
    let a = &ctx.args;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (joining, connect_started_us) = (std::time::Instant::now(), now_micros());
    let subs: Vec<_> = (0..n_subs)
        .map(|i| tokio::task::spawn_local(subscriber(i, ctx.clone(), stop_rx.clone())))
        .collect();
    let join_deadline = Instant::now() + Duration::from_secs(a.join_secs);
    while ctx.shared.borrow().joined < n_subs * each {
        if Instant::now() >= join_deadline {
            let _ = stop_tx.send(true);
            let s = ctx.shared.borrow();
            return Err(format!(
                "only {} of {} rooms joined in {} s ({} connect failures): {:?}",
                s.joined,
                n_subs * each,
                a.join_secs,
                s.connect_failures,
                s.first_error
            ));
        }
        sleep(Duration::from_millis(20)).await;
    }
    let subscribe_secs = joining.elapsed().as_secs_f64();
    if let Some(path) = &a.ready_file {
        let mut sockets_per_node = vec![0u64; ctx.nodes.len()];
        for i in 0..n_subs {
            sockets_per_node[ctx.global(i) % ctx.nodes.len()] += 1;
        }
        let ready = split::Ready {
            first_subscriber: a.first_subscriber,
            subscribers: n_subs,
            providers: a.providers,
            rooms_each: each,
            sockets_per_node,
            connect_started_us,
            joined_us: now_micros(),
        };
        split::write_json(path, &ready)?;
    }
    if a.role != Role::Subscribe {
        sleep(Duration::from_millis(500)).await;
    }

    let token = ctx.auth.publisher()?;
    // Slots after 2100, one second apart and in a window that moves with the clock, so
    // that they overlap neither each other nor the slots of an earlier run.
    let epoch = 4_102_444_800 + (chrono::Utc::now().timestamp() % 2_400_000) * 100_000;
    let cpu = |pids: &[u32]| pids.iter().filter_map(|&p| sys::cpu_micros(p)).sum::<u64>();
    let (hub_cpu0, tool_cpu0, machine0) = (
        cpu(&a.hub_pids),
        sys::self_cpu_micros(),
        sys::machine_busy_micros(),
    );
    let (start, start_us) = (Instant::now(), now_micros());
    let writing = if a.role == Role::Subscribe {
        0
    } else {
        a.providers.min(a.changes)
    };
    let writers: Vec<_> = (0..writing)
        .map(|r| {
            tokio::task::spawn_local(write_room(
                r,
                ctx.clone(),
                token.clone(),
                start,
                start_us,
                epoch,
            ))
        })
        .collect();
    let until = start + Duration::from_secs_f64(a.changes as f64 / a.rate);
    let faults = redis_addr.map(|addr| {
        tokio::task::spawn_local(inject(
            a.fault,
            addr,
            a.fault_every_secs,
            a.fault_for_ms,
            start,
            until,
        ))
    });
    let (mut rest, mut lag, mut rest_errors, mut first_rest_error) =
        (Histogram::default(), Histogram::default(), 0, None);
    for w in writers {
        let (h, l, e, f) = w.await.map_err(|e| format!("writer failed: {e}"))?;
        rest.merge(&h);
        lag.merge(&l);
        rest_errors += e;
        first_rest_error = first_rest_error.or(f);
    }
    if let (Role::Subscribe, Some(path)) = (a.role, &a.writes_done_file) {
        wait_for_file(path).await;
    }
    let written_us = now_micros();
    let faults = match faults {
        Some(f) => f.await.map_err(|e| format!("fault task failed: {e}"))?,
        None => Vec::new(),
    };

    // Wait until every subscriber holds every version of each of its rooms.
    let last = room_versions(&ctx, token).await?;
    let settle_deadline = Instant::now() + Duration::from_secs(a.settle_secs);
    let settled_us = loop {
        let all = ctx.shared.borrow().tracks.iter().enumerate().all(|(i, t)| {
            t.iter()
                .zip(ctx.rooms_of(i))
                .all(|(t, r)| t.as_ref().is_some_and(|t| t.contiguous >= last[r]))
        });
        if all {
            break Some(now_micros());
        }
        if Instant::now() >= settle_deadline {
            break None;
        }
        sleep(Duration::from_millis(20)).await;
    };
    let window = start.elapsed().as_secs_f64();
    let hub_cpu = cpu(&a.hub_pids).saturating_sub(hub_cpu0);
    let tool_cpu = sys::self_cpu_micros().saturating_sub(tool_cpu0);
    let machine = machine0
        .zip(sys::machine_busy_micros())
        .map(|(x, y)| y.saturating_sub(x));
    let _ = stop_tx.send(true);
    for s in subs {
        let _ = s.await;
    }
    let report = verdict::report(
        &ctx,
        Measured {
            subscribe_secs,
            start_us,
            written_us,
            settled_us,
            last,
            faults,
            rest,
            lag,
            rest_errors,
            first_rest_error,
            window,
            hub_cpu,
            tool_cpu,
            machine,
        },
    );
    if let Some(path) = &a.changes_file {
        write_changes(&ctx, &report, path)?;
    }
    Ok(report)
}

/// Writes what this process of a split run saw of the changes (see `split`).
fn write_changes(ctx: &Ctx, report: &Report, path: &Path) -> Result<(), String> {
    let (a, s) = (&ctx.args, ctx.shared.borrow());
    if a.role == Role::Write {
        let calls = (0..a.changes)
            .map(|n| split::Call {
                room: n % a.providers,
                due_us: s.due_us[n],
                sent_us: s.sent_us[n],
                acked_us: s.acked_us[n],
            })
            .collect();
        let calls = split::Calls {
            rate_per_sec: a.rate,
            providers: a.providers,
            calls,
        };
        return split::write_json(path, &calls);
    }
    let count = |name: &str| {
        report
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let arrivals = split::Arrivals {
        first_subscriber: a.first_subscriber,
        subscribers: a.subscribers,
        reach: s.reach.clone(),
        lost: count("lost"),
        duplicated: count("duplicated"),
        reordered: count("reordered"),
        unexpected: count("unexpected"),
        never_joined: count("never_joined"),
        reconnects: count("reconnects"),
        pass: report.get("pass") == Some(&serde_json::Value::Bool(true)),
    };
    split::write_json(path, &arrivals)
}

/// What `run` measured, for the verdict.
struct Measured {
    subscribe_secs: f64,
    start_us: u64,
    written_us: u64,
    settled_us: Option<u64>,
    last: Vec<u64>,
    faults: Vec<writer::FaultLog>,
    rest: Histogram,
    lag: Histogram,
    rest_errors: u64,
    first_rest_error: Option<String>,
    window: f64,
    hub_cpu: u64,
    tool_cpu: u64,
    machine: Option<u64>,
}

/// Seconds from `origin` (µs) to `t` (µs); 0 for "never".
fn secs(t: u64, origin: u64) -> f64 {
    if t == 0 {
        return 0.0;
    }
    ((t as f64 - origin as f64) / 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_rooms_map_to_indexes() {
        assert_eq!(subscriber::room_index("provider-1", 1, 10), Some(0));
        assert_eq!(subscriber::room_index("provider-10", 1, 10), Some(9));
        assert_eq!(subscriber::room_index("provider-11", 1, 10), None);
        assert_eq!(subscriber::room_index("provider-0", 1, 10), None);
        assert_eq!(subscriber::room_index("lobby", 1, 10), None);
    }

    #[test]
    fn seconds_are_relative_to_the_start() {
        assert_eq!(secs(3_500_000, 1_000_000), 2.5);
        assert_eq!(secs(0, 1_000_000), 0.0);
    }
}
