//! `fanout`: N subscribers over R rooms; one publisher per room makes time-stamped
//! changes through REST slot creation or the emit route; the subscribers account for
//! every arrival (lost, duplicated, out of order) and its latency.
//!
//! Change `n` (0-based, global) goes to room `n % R`; within a room the publisher is
//! sequential, so the room's stream has a defined order: by `version` for REST (the
//! version above the one `joinedRoom` reported), by the publish position `k` for emit.
//! Timestamps are microseconds since the epoch taken just before the request is
//! written (REST: in the slot's `note`; emit: in `data.t`), so latency is
//! "change sent → frame parsed by the subscriber". With `--rate X` the stamp is the
//! time the change was due (`start + n / X`), so a publisher held up by a busy server
//! counts against the server (no coordinated omission); `publish_lag_*` says by how
//! much the publisher fell behind.
//!
//! `--rate 0` publishes as fast as the server absorbs: each room's publisher keeps at
//! most `--window` changes that have not yet reached every subscriber of the room (it
//! waits up to one second for that, then goes on and counts a stall).

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message;

use super::http::HttpClient;
use super::report::Report;
use super::stats::{Arrival, ChangeBook, Histogram, OrderTracker, Tally};
use super::sys::{self, now_micros};
use super::target::source_for;
use super::ws;
use super::Common;

/// How changes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// `POST /api/providers/{id}/availability` (SQLite write, `availabilityUpdated`).
    Rest,
    /// `POST /api/rooms/{room}/events`.
    Emit,
}

/// Arguments of `fanout`.
#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Subscriber sockets (at most 100,000).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Rooms provider-{first}…, subscriber i in room i % R.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Changes in all (at most 1,000,000; 100,000 with --via rest).
    #[arg(long, default_value_t = 1000)]
    changes: usize,
    /// Changes per second in all; 0: as fast as the server absorbs (see --window).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How changes are made.
    #[arg(long, value_enum, default_value_t = Via::Emit)]
    via: Via,
    /// With --rate 0: changes per room in flight (not yet at every subscriber).
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// Seconds to wait for the last deliveries after the last change.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Padding bytes in each emitted event's data (emit only).
    #[arg(long, default_value_t = 0)]
    pad: usize,
    /// The event name used with --via emit.
    #[arg(long, default_value = "bench")]
    event: String,
}

/// The shared bookkeeping of one run (single-threaded runtime: `Rc<RefCell>`).
struct Shared {
    book: ChangeBook,
    audience: Vec<u32>,
    published: Vec<u64>,
    completed: Vec<u64>,
    latency: Histogram,
    publish_lag: Histogram,
    delivered: u64,
    last_recv_us: u64,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    k: Option<u64>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default, borrow)]
    slot: Option<SlotNote<'a>>,
}

#[derive(Deserialize)]
struct SlotNote<'a> {
    #[serde(default, borrow)]
    note: Option<Cow<'a, str>>,
}

/// The note a REST change carries: `eventide-load t=<micros> n=<change>`.
pub fn note(t: u64, n: usize) -> String {
    format!("eventide-load t={t} n={n}")
}

/// Parses [`note`]: `(t, n)`.
pub fn parse_note(note: &str) -> Option<(u64, u64)> {
    let rest = note.strip_prefix("eventide-load t=")?;
    let (t, n) = rest.split_once(" n=")?;
    Some((t.parse().ok()?, n.parse().ok()?))
}

/// What one arrival means: (stream key, change, send time), or `None` for frames that
/// are not changes of this run.
fn classify(text: &str, via: Via, event: &str, base: i64) -> Option<(u64, u64, u64)> {
    let frame: Incoming = serde_json::from_str(text).ok()?;
    let data = frame.data?;
    match via {
        Via::Rest if frame.event == "availabilityUpdated" => {
            let version = data.version?;
            let (t, n) = parse_note(data.slot?.note.as_deref()?)?;
            let key = if version > base {
                (version - base) as u64
            } else {
                0
            };
            Some((key, n, t))
        }
        Via::Emit if frame.event == event => Some((data.k?, data.n?, data.t?)),
        _ => None,
    }
}

/// Changes of `room` among `changes` spread round-robin over `rooms`.
fn changes_in_room(room: usize, changes: usize, rooms: usize) -> usize {
    (changes + rooms - 1 - room) / rooms
}

struct Subscriber {
    room: usize,
    tracker: OrderTracker,
    closed: Option<String>,
}

struct SubscriberCtx {
    via: Via,
    event: Rc<str>,
    shared: Rc<RefCell<Shared>>,
    notify: Rc<Vec<Notify>>,
}

async fn subscribe(
    mut socket: ws::Ws,
    room: usize,
    base: i64,
    capacity: usize,
    ctx: Rc<SubscriberCtx>,
    mut stop: watch::Receiver<bool>,
) -> Subscriber {
    let mut tracker = OrderTracker::new(capacity as u64);
    let mut closed = None;
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = socket.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                closed = Some(format!(
                    "close {}",
                    frame.map(|f| u16::from(f.code)).unwrap_or(1005)
                ));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                closed = Some(format!("error {e}"));
                break;
            }
            None => {
                closed = Some("eof".into());
                break;
            }
        };
        let Some((key, n, t)) = classify(&text, ctx.via, &ctx.event, base) else {
            continue;
        };
        let received = now_micros();
        if matches!(
            tracker.record(key),
            Arrival::Duplicate | Arrival::Unexpected
        ) {
            continue;
        }
        let latency = received.saturating_sub(t);
        let mut s = ctx.shared.borrow_mut();
        s.latency.record(latency);
        s.delivered += 1;
        s.last_recv_us = s.last_recv_us.max(received);
        if let Some(count) = s.book.arrived(n as usize, latency) {
            let r = s.book.room(n as usize).unwrap_or(0) as usize;
            if count == s.audience[r] {
                s.completed[r] += 1;
                ctx.notify[r].notify_one();
            }
        }
    }
    Subscriber {
        room,
        tracker,
        closed,
    }
}

struct Publisher {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    stalls: u64,
}

struct PublisherCtx {
    via: Via,
    rooms: usize,
    changes: usize,
    rate: f64,
    window: u64,
    first_provider: u64,
    slot_epoch: i64,
    event: String,
    pad: String,
    start: tokio::time::Instant,
    start_us: u64,
    shared: Rc<RefCell<Shared>>,
    notify: Rc<Vec<Notify>>,
}

async fn publish_room(room: usize, mut http: HttpClient, ctx: Rc<PublisherCtx>) -> Publisher {
    let mut out = Publisher {
        ok: 0,
        errors: 0,
        first_error: None,
        stalls: 0,
    };
    let provider = ctx.first_provider + room as u64;
    let path = match ctx.via {
        Via::Rest => format!("/api/providers/{provider}/availability"),
        Via::Emit => format!("/api/rooms/provider-{provider}/events"),
    };
    for (k, n) in (room..ctx.changes).step_by(ctx.rooms).enumerate() {
        if ctx.rate > 0.0 {
            tokio::time::sleep_until(ctx.start + Duration::from_secs_f64(n as f64 / ctx.rate))
                .await;
        } else {
            loop {
                let outstanding = {
                    let s = ctx.shared.borrow();
                    s.published[room] - s.completed[room]
                };
                if outstanding < ctx.window.max(1) {
                    break;
                }
                let wait = ctx.notify[room].notified();
                if tokio::time::timeout(Duration::from_secs(1), wait)
                    .await
                    .is_err()
                {
                    out.stalls += 1;
                    break;
                }
            }
        }
        // At a fixed rate the change is stamped with the time it was due, not the time
        // it could be sent: a server too busy to take requests on schedule shows up in
        // the latency instead of slowing the publisher down unnoticed (coordinated
        // omission).
        let sent = now_micros();
        let t = if ctx.rate > 0.0 {
            let due = ctx.start_us + (n as f64 / ctx.rate * 1e6) as u64;
            ctx.shared
                .borrow_mut()
                .publish_lag
                .record(sent.saturating_sub(due));
            due
        } else {
            sent
        };
        let body = match ctx.via {
            Via::Rest => {
                let start = ctx.slot_epoch + n as i64;
                json!({
                    "startsAt": rfc3339(start),
                    "endsAt": rfc3339(start + 1),
                    "note": note(t, n),
                })
            }
            Via::Emit => json!({
                "event": ctx.event,
                "data": {"t": t, "n": n, "k": k + 1, "pad": ctx.pad},
            }),
        }
        .to_string();
        match http.post_json(&path, &body).await {
            Ok(r) if (200..300).contains(&r.status) => {
                out.ok += 1;
                let mut s = ctx.shared.borrow_mut();
                s.book.published(n);
                s.published[room] += 1;
            }
            Ok(r) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("HTTP {}: {:.200}", r.status, r.body));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Runs `fanout`.
pub async fn run(args: FanoutArgs) -> Result<Report, String> {
    let c = &args.common;
    let target = c.target()?;
    let subscribers = args.subscribers.clamp(1, 100_000);
    let rooms = args.rooms.clamp(1, subscribers);
    let max_changes = match args.via {
        Via::Rest => 100_000,
        Via::Emit => 1_000_000,
    };
    let changes = args.changes.clamp(1, max_changes);
    let (soft, _) = sys::raise_nofile_limit().map_err(|e| format!("setrlimit: {e}"))?;
    if subscribers as u64 + rooms as u64 + 32 > soft {
        return Err(format!(
            "{subscribers} subscribers need more file descriptors than RLIMIT_NOFILE allows ({soft})"
        ));
    }
    let auth = c.auth();
    let hub = c.hub_pid;
    let rss_start = hub.and_then(sys::rss_kib);

    let shared = Rc::new(RefCell::new(Shared {
        book: ChangeBook::new(changes, |n| (n % rooms) as u32),
        audience: vec![0; rooms],
        published: vec![0; rooms],
        completed: vec![0; rooms],
        latency: Histogram::default(),
        publish_lag: Histogram::default(),
        delivered: 0,
        last_recv_us: 0,
    }));
    let notify: Rc<Vec<Notify>> = Rc::new((0..rooms).map(|_| Notify::new()).collect());
    let sub_ctx = Rc::new(SubscriberCtx {
        via: args.via,
        event: args.event.as_str().into(),
        shared: shared.clone(),
        notify: notify.clone(),
    });

    // Subscribers: connect, join, and start reading at once.
    let (stop_tx, stop_rx) = watch::channel(false);
    let config = ws::client_config(8192);
    let connect_start = Instant::now();
    let joined: Vec<Result<tokio::task::JoinHandle<Subscriber>, String>> =
        futures_util::stream::iter(0..subscribers)
            .map(|i| {
                let room = i % rooms;
                let name = format!("provider-{}", c.first_provider + room as u64);
                let source = source_for(i, c.per_source, &target.addr);
                let (target, auth, stop, ctx, shared) = (
                    &target,
                    &auth,
                    stop_rx.clone(),
                    sub_ctx.clone(),
                    shared.clone(),
                );
                let via = args.via;
                async move {
                    let token = auth.subscriber(i)?;
                    let (socket, version) = ws::open_and_join(
                        target,
                        source,
                        token.as_deref(),
                        &name,
                        config,
                        Duration::from_secs(15),
                    )
                    .await?;
                    let base = match (via, version) {
                        (Via::Rest, None) => {
                            return Err("joinedRoom without a version: not the hub?".to_owned())
                        }
                        (_, v) => v.unwrap_or(0),
                    };
                    shared.borrow_mut().audience[room] += 1;
                    let capacity = changes_in_room(room, changes, rooms);
                    Ok(tokio::task::spawn_local(subscribe(
                        socket, room, base, capacity, ctx, stop,
                    )))
                }
            })
            .buffer_unordered(c.concurrency.max(1))
            .collect()
            .await;
    let connect_secs = connect_start.elapsed().as_secs_f64();
    let mut join_failures: std::collections::BTreeMap<String, u64> = Default::default();
    let mut handles = Vec::with_capacity(subscribers);
    for j in joined {
        match j {
            Ok(h) => handles.push(h),
            Err(e) => *join_failures.entry(e).or_default() += 1,
        }
    }
    if handles.is_empty() {
        return Err(format!("no subscriber could join: {join_failures:?}"));
    }
    // Let the hub finish registering (joinedRoom is sent after the registry join, but
    // give stragglers a moment anyway).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_joined = hub.and_then(sys::rss_kib);

    // Publish.
    let token = auth.publisher()?;
    let slot_epoch = 4_102_444_800 + (chrono::Utc::now().timestamp() % 2_400_000) * 100_000;
    let start = tokio::time::Instant::now();
    let pub_ctx = Rc::new(PublisherCtx {
        via: args.via,
        rooms,
        changes,
        rate: args.rate.max(0.0),
        window: args.window,
        first_provider: c.first_provider,
        slot_epoch,
        event: args.event.clone(),
        pad: "x".repeat(args.pad.min(1 << 20)),
        start,
        start_us: now_micros(),
        shared: shared.clone(),
        notify: notify.clone(),
    });
    let hub_cpu_start = hub.and_then(sys::cpu_micros);
    let tool_cpu_start = sys::self_cpu_micros();
    let machine_start = sys::machine_busy_micros();
    let first_send_us = now_micros();
    let publishers: Vec<_> = (0..rooms)
        .map(|room| {
            let http = HttpClient::new(target.addr, token.clone());
            tokio::task::spawn_local(publish_room(room, http, pub_ctx.clone()))
        })
        .collect();
    let mut published = Publisher {
        ok: 0,
        errors: 0,
        first_error: None,
        stalls: 0,
    };
    for p in publishers {
        let p = p.await.map_err(|e| format!("publisher failed: {e}"))?;
        published.ok += p.ok;
        published.errors += p.errors;
        published.stalls += p.stalls;
        if published.first_error.is_none() {
            published.first_error = p.first_error;
        }
    }
    let publish_secs = start.elapsed().as_secs_f64();

    // Drain: wait until every published change reached every subscriber of its room.
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain.min(600));
    loop {
        let done = {
            let s = shared.borrow();
            s.completed.iter().sum::<u64>() >= s.published.iter().sum::<u64>()
        };
        if done || Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let hub_cpu_end = hub.and_then(sys::cpu_micros);
    let tool_cpu = sys::self_cpu_micros().saturating_sub(tool_cpu_start);
    let machine = machine_start
        .zip(sys::machine_busy_micros())
        .map(|(a, b)| b.saturating_sub(a));
    let window_secs = start.elapsed().as_secs_f64();
    let rss_end = hub.and_then(sys::rss_kib);
    let _ = stop_tx.send(true);

    let mut tally = Tally::default();
    let mut closed: std::collections::BTreeMap<String, u64> = Default::default();
    let mut finished = Vec::with_capacity(handles.len());
    for h in handles {
        finished.push(h.await.map_err(|e| format!("subscriber failed: {e}"))?);
    }
    let s = shared.borrow();
    for sub in &finished {
        tally += sub.tracker.tally(s.published[sub.room]);
        if let Some(why) = &sub.closed {
            *closed.entry(why.clone()).or_default() += 1;
        }
    }
    let audience = s.audience.clone();
    let (slowest, incomplete) = s.book.completion(|r| audience[r as usize]);
    let active_secs = (s.last_recv_us.saturating_sub(first_send_us)) as f64 / 1e6;

    let mut r = Report::new("fanout");
    r.add("url", c.url.clone())
        .add(
            "via",
            match args.via {
                Via::Rest => "rest",
                Via::Emit => "emit",
            },
        )
        .add("subscribers_requested", subscribers as u64)
        .add("subscribers_joined", finished.len() as u64)
        .add(
            "join_failures",
            serde_json::to_value(&join_failures).unwrap_or_default(),
        )
        .add_f("subscribe_secs", connect_secs, 2)
        .add("rooms", rooms as u64)
        .add("changes_planned", changes as u64)
        .add("changes_published", published.ok)
        .add("publish_errors", published.errors)
        .add(
            "first_publish_error",
            published.first_error.unwrap_or_default(),
        )
        .add_f("rate_target_per_sec", args.rate.max(0.0), 1)
        .add(
            "window_per_room",
            if args.rate > 0.0 { 0 } else { args.window },
        )
        .add("window_stalls", published.stalls)
        .add_f("publish_secs", publish_secs, 3)
        .add_f("changes_per_sec", published.ok as f64 / publish_secs, 1)
        .add("expected", tally.expected)
        .add("delivered", tally.delivered)
        .add("lost", tally.lost)
        .add("duplicated", tally.duplicates)
        .add("out_of_order", tally.out_of_order)
        .add("unexpected", tally.unexpected)
        .add("incomplete_changes", incomplete)
        .add(
            "subscribers_closed",
            serde_json::to_value(&closed).unwrap_or_default(),
        )
        .add_f("active_secs", active_secs, 3)
        .add_f(
            "frames_per_sec",
            tally.delivered as f64 / active_secs.max(1e-6),
            0,
        )
        .add_latency("latency", &s.latency)
        .add_latency("change_to_last_subscriber", &slowest);
    if args.rate > 0.0 {
        r.add("publish_lag_p99_us", s.publish_lag.percentile(99.0))
            .add("publish_lag_max_us", s.publish_lag.max());
    }
    if let (Some(a), Some(b)) = (hub_cpu_start, hub_cpu_end) {
        let cpu = b.saturating_sub(a);
        r.add("hub_pid", hub.unwrap_or(0))
            .add("hub_cpu_us", cpu)
            .add_f(
                "hub_cpu_us_per_frame",
                cpu as f64 / tally.delivered.max(1) as f64,
                3,
            )
            .add_f("hub_cpu_pct", cpu as f64 / window_secs / 1e4, 1)
            .add("hub_rss_start_kib", rss_start.unwrap_or(0))
            .add("hub_rss_joined_kib", rss_joined.unwrap_or(0))
            .add("hub_rss_end_kib", rss_end.unwrap_or(0));
    }
    r.add_f("tool_cpu_pct", tool_cpu as f64 / window_secs / 1e4, 1);
    if let Some(machine) = machine {
        // Everything else the machine did meanwhile (other builds, tests): noise.
        let hub_cpu = hub_cpu_start
            .zip(hub_cpu_end)
            .map_or(0, |(a, b)| b.saturating_sub(a));
        let other = machine.saturating_sub(hub_cpu + tool_cpu);
        r.add_f("machine_busy_pct", machine as f64 / window_secs / 1e4, 1)
            .add_f(
                "other_processes_cpu_pct",
                other as f64 / window_secs / 1e4,
                1,
            );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip() {
        assert_eq!(
            parse_note(&note(1_700_000_000_123_456, 42)),
            Some((1_700_000_000_123_456, 42))
        );
        assert_eq!(parse_note("someone else's note"), None);
        assert_eq!(parse_note("eventide-load t=x n=1"), None);
    }

    #[test]
    fn rooms_share_changes_round_robin() {
        let per_room: Vec<usize> = (0..3).map(|r| changes_in_room(r, 10, 3)).collect();
        assert_eq!(per_room, [4, 3, 3]);
        assert_eq!(per_room.iter().sum::<usize>(), 10);
        assert_eq!(changes_in_room(0, 1, 1), 1);
        assert_eq!(changes_in_room(4, 3, 5), 0);
    }

    #[test]
    fn frames_are_classified() {
        let rest = r#"{"event":"availabilityUpdated","room":"provider-1","data":{"action":"created","version":18,"slot":{"id":7,"providerId":1,"note":"eventide-load t=100 n=5"}}}"#;
        assert_eq!(classify(rest, Via::Rest, "bench", 15), Some((3, 5, 100)));
        assert_eq!(classify(rest, Via::Rest, "bench", 18), Some((0, 5, 100)));
        assert_eq!(classify(rest, Via::Emit, "bench", 0), None);
        let emit = r#"{"event":"bench","room":"provider-1","data":{"t":9,"n":4,"k":2,"pad":"xx"}}"#;
        assert_eq!(classify(emit, Via::Emit, "bench", 0), Some((2, 4, 9)));
        assert_eq!(classify(emit, Via::Emit, "other", 0), None);
        let joined = r#"{"event":"joinedRoom","data":{"room":"provider-1","version":3}}"#;
        assert_eq!(classify(joined, Via::Rest, "bench", 0), None);
        assert_eq!(classify("not json", Via::Emit, "bench", 0), None);
    }

    #[test]
    fn slot_times_are_rfc3339() {
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
