//! The subscribers of `cluster`: each keeps one socket to its node, joins its rooms
//! (with `since` after the first time), records every version, and drops and rejoins
//! on its schedule.

use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

use super::super::fanout::parse_note;
use super::super::sequence::{self, RoomTrack};
use super::super::sys::now_micros;
use super::super::target::source_for;
use super::super::ws;
use super::Ctx;

#[derive(Deserialize)]
struct Frame {
    event: String,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    data: Option<FrameData>,
}

#[derive(Deserialize)]
struct FrameData {
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default)]
    slot: Option<Value>,
    #[serde(default)]
    code: Option<String>,
}

/// The room index of `provider-{id}`.
pub(super) fn room_index(name: &str, first: u64, providers: usize) -> Option<usize> {
    let id: u64 = name.strip_prefix("provider-")?.parse().ok()?;
    let i = id.checked_sub(first)? as usize;
    (i < providers).then_some(i)
}

/// Handles one frame; `Err` asks for a reconnect.
fn handle(
    ctx: &Ctx,
    i: usize,
    rooms: &[usize],
    replay_to: &mut [u64],
    text: &str,
) -> Result<(), String> {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return Ok(());
    };
    let data = frame.data.unwrap_or(FrameData {
        room: None,
        version: None,
        recovered: None,
        slot: None,
        code: None,
    });
    let (first, p) = (ctx.args.first_provider, ctx.args.providers);
    let mut s = ctx.shared.borrow_mut();
    match frame.event.as_str() {
        "joinedRoom" => {
            let Some(r) = data.room.as_deref().and_then(|n| room_index(n, first, p)) else {
                return Ok(());
            };
            let Some(j) = rooms.iter().position(|&x| x == r) else {
                return Ok(());
            };
            let version = data.version.unwrap_or(0);
            if s.tracks[i][j].is_none() {
                s.tracks[i][j] = Some(RoomTrack::new(version));
                s.joined += 1;
            } else {
                replay_to[j] = version;
            }
            if data.recovered == Some(false) {
                s.not_recovered += 1;
            }
        }
        "availabilityUpdated" => {
            let Some(r) = frame.room.as_deref().and_then(|n| room_index(n, first, p)) else {
                return Ok(());
            };
            let Some(j) = rooms.iter().position(|&x| x == r) else {
                return Ok(());
            };
            let (Some(v), Some((t, n))) = (
                data.version,
                data.slot
                    .as_ref()
                    .and_then(|s| s.get("note"))
                    .and_then(Value::as_str)
                    .and_then(parse_note),
            ) else {
                return Ok(());
            };
            let now = now_micros();
            let Some(track) = s.tracks[i][j].as_mut() else {
                return Ok(());
            };
            if track.record(v, now) {
                let latency = now.saturating_sub(t);
                if v <= replay_to[j] {
                    s.replay.record(latency)
                } else {
                    s.live.record(latency)
                }
                if let Some(slot) = s.version_of.get_mut(n as usize) {
                    *slot = v;
                }
            }
        }
        "error" => {
            s.join_errors += 1;
            let code = data.code.unwrap_or_default();
            s.first_error
                .get_or_insert_with(|| format!("error frame: {code}"));
            return Err(format!("error {code}"));
        }
        _ => {}
    }
    Ok(())
}

/// One subscriber: connect to its node, join (with `since` after the first time), read,
/// drop on schedule, rejoin, until `stop`.
pub(super) async fn subscriber(i: usize, ctx: Rc<Ctx>, mut stop: watch::Receiver<bool>) {
    let node = &ctx.nodes[i % ctx.nodes.len()];
    let rooms = ctx.rooms_of(i);
    let token = ctx.auth.subscriber(i).ok().flatten();
    let source = source_for(i, ctx.args.per_source, &node.addr);
    let config = ws::client_config(8192);
    let a = &ctx.args;
    let mut draws = (i as u64) << 20;
    loop {
        let opened = {
            let _permit = ctx.handshakes.acquire().await;
            ws::open(node, source, token.as_deref(), config).await
        };
        let mut socket = match opened {
            Ok(s) => s,
            Err(e) => {
                {
                    let mut s = ctx.shared.borrow_mut();
                    s.connect_failures += 1;
                    s.first_error.get_or_insert(e);
                }
                if pause_or_stop(&mut stop, Duration::from_millis(500)).await {
                    return;
                }
                continue;
            }
        };
        let mut replay_to = vec![0; rooms.len()];
        let mut joins = Vec::with_capacity(rooms.len());
        {
            let mut s = ctx.shared.borrow_mut();
            if let Some(last) = s.down[i].last_mut() {
                if last.1 == 0 {
                    last.1 = now_micros();
                }
            }
            for (j, &r) in rooms.iter().enumerate() {
                let name = format!("provider-{}", a.first_provider + r as u64);
                let since = s.tracks[i][j].as_ref().map(|t| t.max_seen);
                joins.push(
                    json!({"event": "joinRoom", "data": {"room": name, "since": since}})
                        .to_string(),
                );
            }
        }
        let mut why = None;
        for frame in joins {
            if let Err(e) = socket.send(Message::text(frame)).await {
                why = Some(format!("send: {e}"));
            }
        }
        let drop_at = (a.drop_every_secs > 0.0).then(|| {
            draws += 1;
            let f = 1.0 + a.drop_jitter.clamp(0.0, 1.0) * (2.0 * sequence::unit(draws) - 1.0);
            Instant::now() + Duration::from_secs_f64(a.drop_every_secs * f)
        });
        while why.is_none() {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                _ = sleep_until(drop_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))) => {
                    why = Some("scheduled drop".to_owned());
                }
                msg = socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = handle(&ctx, i, &rooms, &mut replay_to, &text) { why = Some(e) }
                    }
                    Some(Ok(Message::Close(f))) => why = Some(format!("close {}", f.map_or(1005, |f| u16::from(f.code)))),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => why = Some(format!("socket error: {e}")),
                    None => why = Some("eof".to_owned()),
                }
            }
        }
        let why = why.unwrap_or_default();
        let scheduled = why == "scheduled drop";
        if scheduled {
            let _ = socket.close(None).await;
        }
        drop(socket);
        {
            let mut s = ctx.shared.borrow_mut();
            s.down[i].push((now_micros(), 0));
            s.reconnects += 1;
            *s.why_down.entry(why).or_default() += 1;
        }
        let away = if scheduled { a.drop_for_secs } else { 0.2 };
        if pause_or_stop(&mut stop, Duration::from_secs_f64(away.max(0.0))).await {
            return;
        }
    }
}

/// Sleeps `d`; answers true if `stop` came first.
async fn pause_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = sleep(d) => *stop.borrow(),
    }
}
