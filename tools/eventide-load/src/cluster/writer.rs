//! The writers and the fault injector of `cluster`, and the rooms' final versions.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep_until, Instant};

use super::super::fanout::note;
use super::super::http::HttpClient;
use super::super::redis;
use super::super::stats::Histogram;
use super::super::sys::now_micros;
use super::{Ctx, Fault};

/// One room's writer: its changes at their due times, alternating over the nodes.
pub(super) async fn write_room(
    room: usize,
    ctx: Rc<Ctx>,
    token: Option<String>,
    start: Instant,
    start_us: u64,
    epoch: i64,
) -> (Histogram, Histogram, u64, Option<String>) {
    let a = &ctx.args;
    let mut clients: Vec<HttpClient> = ctx
        .nodes
        .iter()
        .map(|t| HttpClient::new(t.addr, token.clone()))
        .collect();
    let (mut rest, mut lag, mut errors, mut first) =
        (Histogram::default(), Histogram::default(), 0, None);
    let path = format!(
        "/api/providers/{}/availability",
        a.first_provider + room as u64
    );
    for (k, n) in (room..a.changes).step_by(a.providers).enumerate() {
        let due = Duration::from_secs_f64(n as f64 / a.rate);
        sleep_until(start + due).await;
        let due_us = start_us + due.as_micros() as u64;
        let sent = now_micros();
        lag.record(sent.saturating_sub(due_us));
        {
            let mut s = ctx.shared.borrow_mut();
            s.due_us[n] = due_us;
            s.sent_us[n] = sent;
        }
        let slot_start = epoch + n as i64;
        let body = json!({"startsAt": rfc3339(slot_start), "endsAt": rfc3339(slot_start + 1), "note": note(due_us, n)}).to_string();
        let node = a.write_node.unwrap_or((room + k) % clients.len());
        let result = clients[node].post_json(&path, &body).await;
        let done = now_micros();
        match result {
            Ok(r) if (200..300).contains(&r.status) => {
                rest.record(done - sent);
                ctx.shared.borrow_mut().acked_us[n] = done;
            }
            Ok(r) => {
                errors += 1;
                first.get_or_insert_with(|| format!("HTTP {}: {:.200}", r.status, r.body));
            }
            Err(e) => {
                errors += 1;
                first.get_or_insert(e);
            }
        }
    }
    (rest, lag, errors, first)
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// One fault as it happened: `(start, end)` in µs and Redis's reply.
pub(super) struct FaultLog {
    pub(super) start_us: u64,
    pub(super) end_us: u64,
    pub(super) reply: String,
}

/// Causes the fault every `--fault-every-secs` until `until`.
pub(super) async fn inject(
    kind: Fault,
    redis: SocketAddr,
    every: f64,
    for_ms: u64,
    start: Instant,
    until: Instant,
) -> Vec<FaultLog> {
    let mut log = Vec::new();
    let ms = for_ms.to_string();
    for k in 1.. {
        let at = start + Duration::from_secs_f64(every * k as f64);
        if at >= until {
            break;
        }
        sleep_until(at).await;
        let args: &[&str] = match kind {
            Fault::KillPubsub => &["CLIENT", "KILL", "TYPE", "pubsub"],
            Fault::PauseWrites => &["CLIENT", "PAUSE", &ms, "WRITE"],
            Fault::None => break,
        };
        let start_us = now_micros();
        let reply = redis::command(redis, args)
            .await
            .unwrap_or_else(|e| format!("failed: {e}"));
        let end_us = start_us
            + if kind == Fault::PauseWrites {
                for_ms * 1000
            } else {
                0
            };
        eprintln!(
            "fault {k} at {:.3}s: {} -> {reply}",
            at.duration_since(start).as_secs_f64(),
            args.join(" ")
        );
        log.push(FaultLog {
            start_us,
            end_us,
            reply,
        });
    }
    log
}

/// Each room's version now, read over REST from the first node that answers.
pub(super) async fn room_versions(ctx: &Ctx, token: Option<String>) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for r in 0..ctx.args.providers {
        let path = format!(
            "/api/providers/{}/availability?from=2000-01-01T00:00:00Z&to=2000-01-01T00:00:01Z",
            ctx.args.first_provider + r as u64
        );
        let mut last_err = String::new();
        let mut found = None;
        for node in &ctx.nodes {
            match HttpClient::new(node.addr, token.clone()).get(&path).await {
                Ok(resp) if resp.status == 200 => {
                    found = serde_json::from_str::<Value>(&resp.body)
                        .ok()
                        .and_then(|v| v["version"].as_u64());
                    break;
                }
                Ok(resp) => last_err = format!("HTTP {}", resp.status),
                Err(e) => last_err = e,
            }
        }
        out.push(
            found.ok_or_else(|| format!("cannot read provider room {r}'s version: {last_err}"))?,
        );
    }
    Ok(out)
}
