//! A WebSocket client speaking the hub's JSON frames: send, receive with a timeout,
//! join a room, and see how the socket ended.

use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::{ws, BoxedSocket};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

/// How long a test waits for an expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client of every test: one generous timeout, so a slow build box does not
/// fail a test that would pass.
pub fn http_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// How a socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code.
    Close(u16),
    /// The connection ended without a close frame.
    Dropped,
}

/// A WebSocket client speaking the hub's JSON frames.
pub struct WsClient {
    pub framed: Framed<BoxedSocket, ws::Codec>,
}

impl WsClient {
    /// Opens a socket to `url` with a bearer token; panics if the handshake fails.
    pub async fn connect(url: &str, token: &str) -> WsClient {
        Self::open(http_client().ws(url).bearer_auth(token))
            .await
            .expect("the handshake succeeds")
    }

    /// Opens a socket from a prepared request (headers, origin, subprotocols).
    pub async fn open(
        request: ws::WebsocketsRequest,
    ) -> Result<WsClient, awc::error::WsClientError> {
        let (_, framed) = request.max_frame_size(1 << 20).connect().await?;
        Ok(WsClient { framed })
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(ByteString::from(text.to_owned())))
            .await
            .expect("send");
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await
    }

    /// The next frame: a JSON text frame, or how the socket ended; `None` on timeout.
    /// Pings are answered on the way.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Result<Value, Ending>> {
        loop {
            let item = match actix_web::rt::time::timeout(timeout, self.framed.next()).await {
                Err(_) => return None,
                Ok(item) => item,
            };
            match item {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    return Some(Ok(
                        serde_json::from_slice(&bytes).expect("server frames are JSON")
                    ))
                }
                Some(Ok(ws::Frame::Ping(payload))) => {
                    let _ = self.framed.send(ws::Message::Pong(payload)).await;
                }
                Some(Ok(ws::Frame::Close(reason))) => {
                    return Some(Err(Ending::Close(
                        reason.map(|r| u16::from(r.code)).unwrap_or(1005),
                    )))
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Some(Err(Ending::Dropped)),
            }
        }
    }

    /// The next JSON frame; panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        match self.next_frame(FRAME_TIMEOUT).await {
            Some(Ok(v)) => v,
            Some(Err(ending)) => panic!("socket ended ({ending:?}) while a frame was expected"),
            None => panic!("no frame within {FRAME_TIMEOUT:?}"),
        }
    }

    /// The next frame with this event name, skipping others.
    pub async fn recv_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Waits for the socket to end and says how, skipping text frames.
    pub async fn ending(&mut self, timeout: Duration) -> Ending {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame(left).await {
                Some(Ok(_)) => continue,
                Some(Err(ending)) => return ending,
                None => panic!("socket still open after {timeout:?}"),
            }
        }
    }

    /// Asserts no text frame arrives within `wait`.
    pub async fn assert_silent(&mut self, wait: Duration) {
        if let Some(frame) = self.next_frame(wait).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Joins a room and returns the `joinedRoom` reply (panics on an error reply).
    pub async fn join(&mut self, room: &str, since: Option<i64>) -> Value {
        let mut data = json!({"room": room});
        if let Some(since) = since {
            data["since"] = json!(since);
        }
        self.send(json!({"event": "joinRoom", "data": data, "ref": format!("join-{room}")}))
            .await;
        let reply = self.recv().await;
        assert_eq!(
            reply["event"], "joinedRoom",
            "join of {room} answered {reply}"
        );
        assert_eq!(reply["ref"], format!("join-{room}"));
        reply
    }

    /// Sends a close frame and waits for the hub's.
    pub async fn close(mut self) {
        let _ = self
            .framed
            .send(ws::Message::Close(Some(ws::CloseCode::Normal.into())))
            .await;
        let _ = self.ending(Duration::from_secs(5)).await;
    }
}

/// A WebSocket upgrade request as a client writes it: a bearer token, no `Origin`.
pub fn upgrade_request(method: &str, path: &str, port: u16, token: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
}

/// Upgrades a blocking TCP stream to a WebSocket by hand (a bearer token, no `Origin`)
/// and reads the `101` answer, for tests that need control of the socket itself: a
/// small receive buffer, a reader that stops reading.
pub fn upgrade_by_hand(stream: &mut std::net::TcpStream, port: u16, token: &str) {
    use std::io::{Read, Write};
    let request = upgrade_request("GET", "/ws", port, token);
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// The (opcode, payload) of each whole server frame in `bytes` (server frames are
/// unmasked).
pub fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let (len, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => {
                let len: [u8; 8] = bytes[2..10].try_into().unwrap();
                (u64::from_be_bytes(len) as usize, 10)
            }
            126 | 127 => break,
            len => (len as usize, 2),
        };
        if bytes.len() < header + len {
            break;
        }
        frames.push((bytes[0] & 0x0f, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    frames
}

/// A client frame: final, masked (a client must mask), with `opcode` and `payload`.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len if len < 126 => frame.push(0x80 | len as u8),
        len if len <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
