//! The reference fan-out server: the least a WebSocket fan-out can do, for the hub to
//! be measured against. One tokio thread; a `tokio::sync::broadcast`
//! channel per room; each event serialized once and the same bytes handed to every
//! subscriber; tungstenite with a 4 KiB read buffer. No auth, no database, no
//! limits, no heartbeats, one room per connection (a second `joinRoom` replaces the
//! first), rooms never forgotten. A subscriber that lags more than the channel
//! capacity loses events (counted and printed at exit), like the hub evicting it.
//!
//! Protocol, just enough for `eventide-load`: `GET /ws` upgrades; the client frame
//! `{"event":"joinRoom","data":{"room":R}}` is answered `joinedRoom {room}`;
//! `POST /api/rooms/{room}/events` with `{"event","data"}` sends
//! `{"event","room","data"}` to the room and answers `202`; `GET /healthz` answers 200.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{
    handshake::derive_accept_key,
    protocol::{Role, WebSocketConfig},
    Message, Utf8Bytes,
};
use tokio_tungstenite::WebSocketStream;

use super::http::find_head_end;
use super::sys;
use super::target::parse_authority;

/// Arguments of `reference-server`.
#[derive(Debug, clap::Args)]
pub struct ReferenceArgs {
    /// Listen address (loopback only).
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: String,
    /// Seconds after which the server exits by itself (at most 86,400).
    #[arg(long, default_value_t = 3600)]
    duration: u64,
    /// Events a subscriber may fall behind before it loses some.
    #[arg(long, default_value_t = 1024)]
    channel_capacity: usize,
}

struct State {
    rooms: RefCell<HashMap<String, broadcast::Sender<Utf8Bytes>>>,
    capacity: usize,
    lagged: Cell<u64>,
    connections: Cell<u64>,
}

impl State {
    fn subscribe(&self, room: &str) -> broadcast::Receiver<Utf8Bytes> {
        let mut rooms = self.rooms.borrow_mut();
        if let Some(tx) = rooms.get(room) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        rooms.insert(room.to_owned(), tx);
        rx
    }

    fn publish(&self, room: &str, frame: Utf8Bytes) -> usize {
        self.rooms
            .borrow()
            .get(room)
            .and_then(|tx| tx.send(frame).ok())
            .unwrap_or(0)
    }
}

/// Runs the reference server until `--duration` passes.
pub async fn run(args: ReferenceArgs) -> Result<(), String> {
    let addr = parse_authority(&args.addr)?;
    sys::raise_nofile_limit().map_err(|e| format!("setrlimit: {e}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("reference server listening on http://{local}");
    let duration = Duration::from_secs(args.duration.min(86_400));
    let (connections, lagged) = accept_for(listener, args.channel_capacity, duration).await;
    println!(
        "reference server stopping: {connections} connections served, {lagged} events lost to lagging subscribers"
    );
    Ok(())
}

/// Serves connections from `listener` for `duration` (on the current `LocalSet`);
/// answers the connections served and the events lost to lagging subscribers.
pub async fn accept_for(
    listener: TcpListener,
    channel_capacity: usize,
    duration: Duration,
) -> (u64, u64) {
    let state = Rc::new(State {
        rooms: RefCell::new(HashMap::new()),
        capacity: channel_capacity.max(1),
        lagged: Cell::new(0),
        connections: Cell::new(0),
    });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    state.connections.set(state.connections.get() + 1);
                    tokio::task::spawn_local(serve(stream, state.clone()));
                }
                // Out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    let _ = tokio::time::timeout(duration, accept).await;
    (state.connections.get(), state.lagged.get())
}

#[derive(Deserialize)]
struct EmitBody {
    event: String,
    #[serde(default)]
    data: Value,
}

/// One connection: HTTP requests until a WebSocket upgrade, then the WebSocket (the
/// HTTP buffers are freed by then).
async fn serve(stream: TcpStream, state: Rc<State>) {
    if let Some((stream, rest)) = http(stream, &state).await {
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let ws =
            WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
        websocket(ws, state).await;
    }
}

/// Serves HTTP requests; answers the stream and the bytes read past the head when the
/// client upgrades to a WebSocket.
async fn http(mut stream: TcpStream, state: &State) -> Option<(TcpStream, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head_len = loop {
            if let Some(n) = find_head_end(&buf) {
                break n;
            }
            if buf.len() > 16 * 1024 {
                return None;
            }
            // Straight into the heap buffer: a stack array here would live in every
            // connection's task for its whole life.
            buf.reserve(1024);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let (method, path) = (
            request_line.next().unwrap_or_default(),
            request_line.next().unwrap_or_default(),
        );
        let (mut length, mut ws_key) = (0usize, None);
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                    ws_key = Some(value.trim().to_owned());
                }
            }
        }
        if method == "GET" && path.starts_with("/ws") {
            if let Some(key) = ws_key {
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    derive_accept_key(key.as_bytes())
                );
                stream.write_all(response.as_bytes()).await.ok()?;
                return Some((stream, buf[head_len..].to_vec()));
            }
        }
        let total = head_len + length.min(1 << 20);
        while buf.len() < total {
            // Straight into the heap buffer: a stack array here would live in every
            // connection's task for its whole life.
            buf.reserve(1024);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        let (status, body) = match (method, path) {
            ("POST", p) if p.starts_with("/api/rooms/") && p.ends_with("/events") => {
                let room = &p["/api/rooms/".len()..p.len() - "/events".len()];
                match serde_json::from_slice::<EmitBody>(&buf[head_len..total]) {
                    Ok(emit) => {
                        let frame = json!({"event": emit.event, "room": room, "data": emit.data});
                        let delivered = state.publish(room, Utf8Bytes::from(frame.to_string()));
                        (
                            "202 Accepted",
                            json!({"room": room, "event": emit.event, "delivered": delivered}),
                        )
                    }
                    Err(e) => ("400 Bad Request", json!({"error": e.to_string()})),
                }
            }
            ("GET", "/healthz") => ("200 OK", json!({"status": "ok"})),
            _ => ("404 Not Found", json!({"error": "no such route"})),
        };
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.ok()?;
        buf.drain(..total);
    }
}

async fn recv(rx: &mut Option<broadcast::Receiver<Utf8Bytes>>, state: &State) -> Option<Utf8Bytes> {
    let rx = rx.as_mut()?;
    loop {
        match rx.recv().await {
            Ok(frame) => return Some(frame),
            Err(broadcast::error::RecvError::Lagged(n)) => state.lagged.set(state.lagged.get() + n),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// A WebSocket: join requests in, room events out (batched: everything queued is
/// written before one flush).
async fn websocket(mut ws: WebSocketStream<TcpStream>, state: Rc<State>) {
    let mut rx: Option<broadcast::Receiver<Utf8Bytes>> = None;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                    let reply = match (v["event"].as_str(), v["data"]["room"].as_str()) {
                        (Some("joinRoom"), Some(room)) => {
                            rx = Some(state.subscribe(room));
                            json!({"event": "joinedRoom", "data": {"room": room}, "ref": v["ref"]})
                        }
                        _ => json!({"event": "error", "data": {"code": "unknown_event"}, "ref": v["ref"]}),
                    };
                    if ws.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            frame = recv(&mut rx, &state), if rx.is_some() => {
                let Some(frame) = frame else { rx = None; continue };
                if ws.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
                let queued = rx.as_mut().expect("receiving above");
                loop {
                    match queued.try_recv() {
                        Ok(frame) => {
                            if ws.feed(Message::Text(frame)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            state.lagged.set(state.lagged.get() + n);
                        }
                        Err(_) => break,
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
