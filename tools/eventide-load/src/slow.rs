//! `slow`: K clients join a room and then never read (a frozen tab), while E events of
//! BYTES each are emitted to the room; one healthy subscriber in the same room reads
//! normally. Reports the server's RSS over time, what became of the frozen clients,
//! and whether the healthy one got everything.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::http::HttpClient;
use super::report::Report;
use super::stats::{Arrival, Histogram, OrderTracker};
use super::sys::{self, now_micros};
use super::target::source_for;
use super::ws::{self, RawReader};
use super::Common;

/// Arguments of `slow`.
#[derive(Debug, clap::Args)]
pub struct SlowArgs {
    #[command(flatten)]
    pub common: Common,
    /// Clients that never read (at most 10,000).
    #[arg(long, default_value_t = 100)]
    readers: usize,
    /// Events emitted to their room (at most 1,000,000).
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Bytes of padding per event.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Events per second; 0: as fast as the server accepts them.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The frozen clients' socket receive buffer (SO_RCVBUF), so that little of the
    /// backlog can hide in the client's kernel.
    #[arg(long, default_value_t = 4096)]
    recv_buffer: u32,
    /// The server's per-connection cap on unsent bytes, for the comparison
    /// (the hub's EVENTIDE_MAX_PENDING_BYTES).
    #[arg(long, default_value_t = 1024 * 1024)]
    cap_bytes: u64,
    /// Seconds to wait after the last event before the final memory reading.
    #[arg(long, default_value_t = 5)]
    settle: u64,
}

/// Runs `slow`.
pub async fn run(args: SlowArgs) -> Result<Report, String> {
    let c = &args.common;
    let target = c.target()?;
    let readers = args.readers.clamp(1, 10_000);
    let events = args.events.clamp(1, 1_000_000);
    let size = args.size.min(60 * 1024);
    sys::raise_nofile_limit().map_err(|e| format!("setrlimit: {e}"))?;
    let auth = c.auth();
    let hub = c.hub_pid;
    let room = format!("provider-{}", c.first_provider);

    let rss_baseline = hub.and_then(sys::rss_kib);
    let kernel_baseline = sys::tcp_kernel_kib();

    let opened: Vec<Result<RawReader, String>> = futures_util::stream::iter(0..readers)
        .map(|i| {
            let (target, auth, room) = (&target, &auth, &room);
            let source = source_for(i, c.per_source, &target.addr);
            async move {
                let token = auth.subscriber(i)?;
                tokio::time::timeout(
                    Duration::from_secs(15),
                    RawReader::open(target, source, token.as_deref(), room, args.recv_buffer),
                )
                .await
                .map_err(|_| "timed out".to_owned())?
            }
        })
        .buffer_unordered(c.concurrency.max(1))
        .collect()
        .await;
    let mut frozen = Vec::with_capacity(readers);
    let mut open_failures = 0u64;
    let mut first_failure = None;
    for o in opened {
        match o {
            Ok(r) => frozen.push(r),
            Err(e) => {
                open_failures += 1;
                first_failure.get_or_insert(e);
            }
        }
    }

    // One healthy subscriber in the same room.
    let token = auth.subscriber(readers)?;
    let (healthy, _) = ws::open_and_join(
        &target,
        None,
        token.as_deref(),
        &room,
        ws::client_config(64 * 1024),
        Duration::from_secs(15),
    )
    .await
    .map_err(|e| format!("healthy subscriber: {e}"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let healthy = tokio::task::spawn_local(read_healthy(healthy, events, stop_rx.clone()));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = hub.and_then(sys::rss_kib);

    // Sample the server's RSS while the events go out.
    let peak = Rc::new(RefCell::new((0u64, 0u64)));
    let sampler = {
        let (peak, mut stop) = (peak.clone(), stop_rx.clone());
        tokio::task::spawn_local(async move {
            loop {
                if let Some(rss) = hub.and_then(sys::rss_kib) {
                    let mut p = peak.borrow_mut();
                    p.0 = p.0.max(rss);
                    p.1 = p.1.max(sys::tcp_kernel_kib().unwrap_or(0));
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
    };

    let mut http = HttpClient::new(target.addr, auth.publisher()?);
    let path = format!("/api/rooms/{room}/events");
    let pad = "x".repeat(size);
    let start = tokio::time::Instant::now();
    let (mut sent, mut errors, mut first_error) = (0u64, 0u64, None);
    for n in 0..events {
        if args.rate > 0.0 {
            tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / args.rate)).await;
        }
        let body = json!({
            "event": "bench",
            "data": {"t": now_micros(), "n": n, "k": n + 1, "pad": pad},
        })
        .to_string();
        match http.post_json(&path, &body).await {
            Ok(r) if (200..300).contains(&r.status) => sent += 1,
            Ok(r) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("HTTP {}: {:.200}", r.status, r.body));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let emit_secs = start.elapsed().as_secs_f64();
    let rss_after_emit = hub.and_then(sys::rss_kib);
    tokio::time::sleep(Duration::from_secs(args.settle.min(120))).await;
    let rss_settled = hub.and_then(sys::rss_kib);
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    let (rss_peak, kernel_peak) = *peak.borrow();
    let (healthy_got, healthy_latency, healthy_closed) = healthy
        .await
        .map_err(|e| format!("healthy subscriber failed: {e}"))?;

    // Finally read what the frozen clients were sent.
    let drain_start = Instant::now();
    let fates: Vec<ws::ServerFrames> = futures_util::stream::iter(frozen)
        .map(|r| r.drain(Duration::from_millis(500)))
        .buffer_unordered(256)
        .collect()
        .await;
    let mut close_codes: std::collections::BTreeMap<String, u64> = Default::default();
    let mut texts = Histogram::default();
    let mut closed = 0u64;
    for f in &fates {
        texts.record(f.texts);
        if f.eof || f.close_code.is_some() {
            closed += 1;
        }
        let code = f
            .close_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| if f.eof { "eof" } else { "open" }.into());
        *close_codes.entry(code).or_default() += 1;
    }

    let opened = fates.len() as u64;
    let mut r = Report::new("slow");
    r.add("url", c.url.clone())
        .add("room", room.clone())
        .add("readers_requested", readers as u64)
        .add("readers_joined", opened)
        .add("reader_open_failures", open_failures)
        .add("first_open_failure", first_failure.unwrap_or_default())
        .add("reader_recv_buffer", u64::from(args.recv_buffer))
        .add("events", events as u64)
        .add("event_pad_bytes", size as u64)
        .add("events_accepted", sent)
        .add("emit_errors", errors)
        .add("first_emit_error", first_error.unwrap_or_default())
        .add_f("emit_secs", emit_secs, 3)
        .add_f("events_per_sec", sent as f64 / emit_secs.max(1e-6), 1)
        .add("healthy_delivered", healthy_got)
        .add("healthy_expected", sent)
        .add("healthy_closed", healthy_closed.unwrap_or_default())
        .add_latency("healthy_latency", &healthy_latency)
        .add("readers_closed_by_server", closed)
        .add(
            "reader_close_codes",
            serde_json::to_value(&close_codes).unwrap_or_default(),
        )
        .add("reader_frames_received_p50", texts.percentile(50.0))
        .add("reader_frames_received_max", texts.max())
        .add_f("reader_drain_secs", drain_start.elapsed().as_secs_f64(), 2);
    if let (Some(base), Some(idle)) = (rss_baseline, rss_idle) {
        let peak_growth = rss_peak.saturating_sub(idle);
        r.add("hub_pid", hub.unwrap_or(0))
            .add("hub_rss_baseline_kib", base)
            .add("hub_rss_idle_kib", idle)
            .add("hub_rss_peak_kib", rss_peak)
            .add("hub_rss_after_emit_kib", rss_after_emit.unwrap_or(0))
            .add("hub_rss_settled_kib", rss_settled.unwrap_or(0))
            .add_f(
                "hub_peak_growth_kib_per_reader",
                peak_growth as f64 / opened.max(1) as f64,
                1,
            )
            .add_f("cap_kib_per_reader", args.cap_bytes as f64 / 1024.0, 1);
    }
    if let Some(base) = kernel_baseline {
        r.add("kernel_tcp_baseline_kib", base)
            .add("kernel_tcp_peak_kib", kernel_peak);
    }
    Ok(r)
}

/// Reads every event; answers how many distinct ones arrived, their latency, and why
/// the socket closed (if it did).
async fn read_healthy(
    mut socket: ws::Ws,
    events: usize,
    mut stop: watch::Receiver<bool>,
) -> (u64, Histogram, Option<String>) {
    let mut tracker = OrderTracker::new(events as u64);
    let mut latency = Histogram::default();
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => return (tracker.unique(), latency, None),
            msg = socket.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let data = &v["data"];
                if let (Some(k), Some(t)) = (data["k"].as_u64(), data["t"].as_u64()) {
                    if matches!(tracker.record(k), Arrival::InOrder | Arrival::OutOfOrder) {
                        latency.record(now_micros().saturating_sub(t));
                    }
                }
            }
            Some(Ok(Message::Close(f))) => {
                let code = f.map(|f| u16::from(f.code)).unwrap_or(1005);
                return (tracker.unique(), latency, Some(format!("close {code}")));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return (tracker.unique(), latency, Some(e.to_string())),
            None => return (tracker.unique(), latency, Some("eof".into())),
        }
    }
}
