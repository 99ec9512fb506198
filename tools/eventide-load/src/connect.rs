//! `connect`: open N authenticated sockets, each in a room, hold them, and measure the
//! connect rate and the server's memory per socket.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::report::Report;
use super::stats::Histogram;
use super::sys;
use super::target::source_for;
use super::ws;
use super::Common;

/// Arguments of `connect`.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sockets to open (at most 100,000; the fd limit usually caps it first).
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Rooms the sockets are spread over: provider-{first}…provider-{first+R-1}.
    #[arg(long, default_value_t = 100)]
    room_count: usize,
    /// Seconds to hold the sockets open after the last one joined (at most 3600).
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// Seconds between the last join and the "after" memory reading.
    #[arg(long, default_value_t = 2)]
    settle: u64,
}

/// Runs `connect`.
pub async fn run(args: ConnectArgs) -> Result<Report, String> {
    let c = &args.common;
    let target = c.target()?;
    let n = args.sockets.clamp(1, 100_000);
    let rooms = args.room_count.clamp(1, n);
    let hold = Duration::from_secs(args.hold.min(3600));
    let (soft, _) = sys::raise_nofile_limit().map_err(|e| format!("setrlimit: {e}"))?;
    if n as u64 + 32 > soft {
        return Err(format!(
            "{n} sockets need more file descriptors than RLIMIT_NOFILE allows ({soft})"
        ));
    }
    let auth = c.auth();
    let hub = c.hub_pid;
    let rss_before = hub.and_then(sys::rss_kib);
    let slab_before = sys::meminfo_kib("Slab:");

    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let config = ws::client_config(4096);
    let results: Vec<Result<u64, String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (target, auth, stop, dropped) = (&target, &auth, stop_rx.clone(), dropped.clone());
            let room = format!("provider-{}", c.first_provider + (i % rooms) as u64);
            let source = source_for(i, c.per_source, &target.addr);
            async move {
                let token = auth.subscriber(i)?;
                let t0 = Instant::now();
                let (ws, _) = ws::open_and_join(
                    target,
                    source,
                    token.as_deref(),
                    &room,
                    config,
                    Duration::from_secs(15),
                )
                .await?;
                let took = t0.elapsed().as_micros() as u64;
                tokio::task::spawn_local(hold_socket(ws, stop, dropped));
                Ok(took)
            }
        })
        .buffer_unordered(c.concurrency.max(1))
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();

    let mut handshake = Histogram::default();
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &results {
        match r {
            Ok(us) => handshake.record(*us),
            Err(e) => *failures.entry(e.clone()).or_default() += 1,
        }
    }
    let connected = handshake.count();

    tokio::time::sleep(Duration::from_secs(args.settle.min(60))).await;
    let rss_after = hub.and_then(sys::rss_kib);
    let slab_after = sys::meminfo_kib("Slab:");
    let hub_threads = hub.and_then(sys::threads);
    let mut rss_max = rss_after.unwrap_or(0);
    let hold_end = Instant::now() + hold;
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_secs(1).min(hold_end - Instant::now())).await;
        rss_max = rss_max.max(hub.and_then(sys::rss_kib).unwrap_or(0));
    }
    let rss_end = hub.and_then(sys::rss_kib);
    let alive = connected - dropped.get();
    let _ = stop_tx.send(true);
    tokio::task::yield_now().await;

    let mut r = Report::new("connect");
    r.add("url", c.url.clone())
        .add("sockets_requested", n as u64)
        .add("sockets_connected", connected)
        .add("sockets_failed", n as u64 - connected)
        .add(
            "failures",
            serde_json::to_value(&failures).unwrap_or_default(),
        )
        .add("rooms", rooms as u64)
        .add("source_addresses", n.div_ceil(c.per_source.max(1)) as u64)
        .add_f("connect_secs", connect_secs, 3)
        .add_f("connects_per_sec", connected as f64 / connect_secs, 1)
        .add_latency("connect_join", &handshake)
        .add("hold_secs", hold.as_secs())
        .add("dropped_during_hold", dropped.get())
        .add("alive_at_end", alive);
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        r.add("hub_pid", hub.unwrap_or(0))
            .add("hub_threads", hub_threads.unwrap_or(0))
            .add("hub_rss_before_kib", before)
            .add("hub_rss_after_kib", after)
            .add("hub_rss_max_during_hold_kib", rss_max)
            .add("hub_rss_end_kib", rss_end.unwrap_or(0))
            .add_f(
                "hub_kib_per_socket",
                after.saturating_sub(before) as f64 / connected.max(1) as f64,
                2,
            );
    }
    if let (Some(before), Some(after)) = (slab_before, slab_after) {
        // Kernel slab (socket structures of both ends, the tool's and the server's).
        r.add_f(
            "kernel_slab_kib_per_connection_both_ends",
            after.saturating_sub(before) as f64 / connected.max(1) as f64,
            2,
        );
    }
    r.add(
        "tool_rss_kib",
        sys::rss_kib(std::process::id()).unwrap_or(0),
    );
    Ok(r)
}

/// Keeps a socket open and answers the server's pings until told to stop.
async fn hold_socket(mut ws: ws::Ws, mut stop: watch::Receiver<bool>, dropped: Rc<Cell<u64>>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    dropped.set(dropped.get() + 1);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}
