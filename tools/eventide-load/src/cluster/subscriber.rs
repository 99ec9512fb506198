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

/// How long one connect and WebSocket handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

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
                let reopened = s.reopened_us[i];
                if reopened > 0 {
                    s.rejoin.record(now_micros().saturating_sub(reopened));
                }
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
            let (new, base) = (track.record(v, now), track.base);
            if v > base {
                if let Some(reach) = s.reach.get_mut(n as usize) {
                    reach.arrived(now, new);
                }
            }
            if new {
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
    let global = ctx.global(i);
    let node = &ctx.nodes[global % ctx.nodes.len()];
    let rooms = ctx.rooms_of(i);
    let token = ctx.auth.subscriber(global).ok().flatten();
    let source = source_for(global, ctx.args.per_source, &node.addr);
    let config = ws::client_config(8192);
    let a = &ctx.args;
    let mut draws = (global as u64) << 20;
    loop {
        let opened = {
            let _permit = ctx.handshakes.acquire().await;
            {
                let mut s = ctx.shared.borrow_mut();
                let rejoin = s.tracks[i].iter().any(Option::is_some);
                s.reopened_us[i] = if rejoin { now_micros() } else { 0 };
            }
            // Bounded: a node out of file descriptors leaves the TCP connection in its
            // backlog, never accepted, and the handshake would wait forever.
            let open = ws::open(node, source, token.as_deref(), config);
            tokio::time::timeout(HANDSHAKE_TIMEOUT, open)
                .await
                .unwrap_or_else(|_| Err("handshake timed out".to_owned()))
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use clap::Parser;
    use tokio::sync::Semaphore;

    use super::super::super::target::{Auth, Target};
    use super::super::{ClusterArgs, Shared};
    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ClusterArgs,
    }

    fn ctx() -> Ctx {
        let argv = [
            "t",
            "--hub",
            "ws://127.0.0.1:1/ws",
            "--secret",
            "s",
            "--changes",
            "20",
        ];
        let args = Wrap::parse_from(argv).args;
        Ctx {
            nodes: vec![Target::parse("ws://127.0.0.1:1/ws").unwrap()],
            auth: Auth::None,
            handshakes: Semaphore::new(1),
            shared: RefCell::new(Shared {
                tracks: vec![vec![None]; 2],
                down: vec![Vec::new(); 2],
                reopened_us: vec![0; 2],
                version_of: vec![0; 20],
                acked_us: vec![0; 20],
                reach: vec![Default::default(); 20],
                ..Shared::default()
            }),
            args,
        }
    }

    fn update(room: u64, version: u64, n: u64) -> String {
        format!(
            r#"{{"event":"availabilityUpdated","room":"provider-{room}","data":{{"action":"created","version":{version},"slot":{{"id":1,"providerId":{room},"note":"eventide-load t=1 n={n}"}}}}}}"#
        )
    }

    #[test]
    fn frames_build_the_track_live_and_replayed() {
        let ctx = ctx();
        let rooms = [1usize];
        let mut replay_to = [0u64];
        let joined = r#"{"event":"joinedRoom","data":{"room":"provider-2","version":4}}"#;
        handle(&ctx, 1, &rooms, &mut replay_to, joined).unwrap();
        handle(&ctx, 1, &rooms, &mut replay_to, &update(2, 5, 1)).unwrap();
        // Another room's frame and a stranger are ignored.
        handle(&ctx, 1, &rooms, &mut replay_to, &update(3, 9, 2)).unwrap();
        handle(&ctx, 1, &rooms, &mut replay_to, "not json").unwrap();
        // A rejoin with since: versions up to the joinedRoom's are replays, and the
        // time since the socket began to open again is the rejoin's.
        ctx.shared.borrow_mut().reopened_us[1] = 1;
        let rejoined =
            r#"{"event":"joinedRoom","data":{"room":"provider-2","version":7,"recovered":true}}"#;
        handle(&ctx, 1, &rooms, &mut replay_to, rejoined).unwrap();
        for (v, n) in [(6, 11), (7, 21), (8, 31)] {
            handle(&ctx, 1, &rooms, &mut replay_to, &update(2, v, n)).unwrap();
        }
        handle(&ctx, 1, &rooms, &mut replay_to, &update(2, 8, 31)).unwrap();
        let s = ctx.shared.borrow();
        let t = s.tracks[1][0].as_ref().unwrap();
        assert_eq!((t.base, t.contiguous), (4, 8));
        assert_eq!(t.arrivals, [5, 6, 7, 8, 8]);
        assert_eq!((s.live.count(), s.replay.count()), (2, 2));
        assert_eq!((s.version_of[1], s.version_of[11]), (5, 6));
        assert_eq!(s.joined, 1);
        assert_eq!(s.rejoin.count(), 1);
        // Per change: one receiver each; the repeat of change 31 is past the plan.
        assert_eq!((s.reach[1].subscribers, s.reach[11].subscribers), (1, 1));
        assert_eq!(s.reach[1].repeats + s.reach[11].repeats, 0);
        drop(s);
        handle(&ctx, 1, &rooms, &mut replay_to, &update(2, 5, 1)).unwrap();
        let s = ctx.shared.borrow();
        assert_eq!((s.reach[1].subscribers, s.reach[1].repeats), (1, 1));
        drop(s);
        let refused = r#"{"event":"error","data":{"code":"unavailable"}}"#;
        assert!(handle(&ctx, 1, &rooms, &mut replay_to, refused).is_err());
    }
}
