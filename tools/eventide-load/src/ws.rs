//! WebSocket clients of the load tool: sockets bound to a chosen loopback source
//! address, the handshake with a token, `joinRoom`, and a raw client for readers that
//! must never read.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::{
    self, client::ClientRequestBuilder, protocol::WebSocketConfig, Message,
};
use tokio_tungstenite::WebSocketStream;

use super::http::{find_head_end, parse_head};
use super::target::Target;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// Client settings: small buffers, as a browser-like client that reads little.
pub fn client_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
}

/// Opens a TCP connection to `addr` from `source` (port chosen by the kernel at
/// connect time, so each source address has its own ephemeral port range), with an
/// optional receive buffer size set before the handshake.
pub async fn tcp_connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(ip) = source {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a pointer to a c_int of the given size.
        // Failure only means the port is picked at bind time instead.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(SocketAddr::new(ip.into(), 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects and performs the WebSocket handshake.
pub async fn open(
    target: &Target,
    source: Option<Ipv4Addr>,
    token: Option<&str>,
    config: WebSocketConfig,
) -> Result<Ws, String> {
    let stream = tcp_connect(target.addr, source, None)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let uri = format!("ws://{}{}", target.addr, target.path)
        .parse()
        .map_err(|e| format!("bad url: {e}"))?;
    let mut request = ClientRequestBuilder::new(uri);
    if let Some(token) = token {
        request = request.with_header("Authorization", format!("Bearer {token}"));
    }
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => {
            Err(format!("handshake: HTTP {}", response.status().as_u16()))
        }
        Err(e) => Err(format!("handshake: {}", short_error(&e))),
    }
}

fn short_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("io {}", io.kind()),
        other => {
            let mut s = other.to_string();
            s.truncate(60);
            s
        }
    }
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(default)]
    data: Option<ReplyData>,
}

#[derive(Deserialize)]
struct ReplyData {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    code: Option<String>,
}

/// Sends `joinRoom` and waits for `joinedRoom`; answers the room's version (provider
/// rooms of the hub) or an error.
pub async fn join(ws: &mut Ws, room: &str) -> Result<Option<i64>, String> {
    let frame = json!({"event": "joinRoom", "data": {"room": room}}).to_string();
    ws.send(Message::text(frame))
        .await
        .map_err(|e| format!("joinRoom: {}", short_error(&e)))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let Ok(reply) = serde_json::from_str::<Reply>(&text) else {
                    continue;
                };
                match reply.event.as_ref() {
                    "joinedRoom" => return Ok(reply.data.and_then(|d| d.version)),
                    "error" => {
                        return Err(format!(
                            "joinRoom refused: {}",
                            reply.data.and_then(|d| d.code).unwrap_or_default()
                        ))
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "closed while joining: {:?}",
                    frame.map(|f| u16::from(f.code))
                ))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("joinRoom: {}", short_error(&e))),
            None => return Err("closed while joining".into()),
        }
    }
}

/// Connects, authenticates and joins `room`, all within `deadline`.
pub async fn open_and_join(
    target: &Target,
    source: Option<Ipv4Addr>,
    token: Option<&str>,
    room: &str,
    config: WebSocketConfig,
    deadline: Duration,
) -> Result<(Ws, Option<i64>), String> {
    tokio::time::timeout(deadline, async {
        let mut ws = open(target, source, token, config).await?;
        let version = join(&mut ws, room).await?;
        Ok((ws, version))
    })
    .await
    .map_err(|_| "timed out".to_owned())?
}

/// A client that speaks just enough WebSocket by hand to join a room, then is never
/// read again (a stalled browser tab): what the hub's slow-consumer limit is for.
pub struct RawReader {
    /// The connection.
    pub stream: TcpStream,
    /// Bytes read past the handshake.
    pub buffered: Vec<u8>,
}

impl RawReader {
    /// Connects with a small receive buffer, upgrades, joins `room` and waits for
    /// `joinedRoom`.
    pub async fn open(
        target: &Target,
        source: Option<Ipv4Addr>,
        token: Option<&str>,
        room: &str,
        recv_buffer: u32,
    ) -> Result<RawReader, String> {
        let mut stream = tcp_connect(target.addr, source, Some(recv_buffer))
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            target.path, target.addr
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let head_len = loop {
            if let Some(n) = find_head_end(&buf) {
                break n;
            }
            read_some(&mut stream, &mut buf).await?;
        };
        let head = parse_head(&buf[..head_len])?;
        if head.status != 101 {
            return Err(format!("handshake: HTTP {}", head.status));
        }
        buf.drain(..head_len);
        let join = json!({"event": "joinRoom", "data": {"room": room}}).to_string();
        stream
            .write_all(&masked_text_frame(join.as_bytes()))
            .await
            .map_err(|e| format!("write: {e}"))?;
        // Server frames are unmasked, so the reply appears verbatim.
        while !contains(&buf, b"\"joinedRoom\"") {
            if contains(&buf, b"\"error\"") {
                return Err("joinRoom refused".into());
            }
            read_some(&mut stream, &mut buf).await?;
        }
        Ok(RawReader {
            stream,
            buffered: buf,
        })
    }

    /// Reads everything the server sent (finally), until it closes or goes quiet for
    /// `quiet`, and summarizes the frames.
    pub async fn drain(mut self, quiet: Duration) -> ServerFrames {
        let mut buf = std::mem::take(&mut self.buffered);
        let mut eof = false;
        loop {
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout(quiet, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    eof = true;
                    break;
                }
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        let mut frames = parse_server_frames(&buf);
        frames.eof = eof;
        frames
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("closed by the server".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A client text frame (FIN, opcode 1, masked as clients must).
pub fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// What a raw reader finally found in its receive stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFrames {
    /// Complete text frames.
    pub texts: u64,
    /// The close code, if a close frame arrived.
    pub close_code: Option<u16>,
    /// Bytes after the last complete frame.
    pub trailing: usize,
    /// The server closed the connection.
    pub eof: bool,
}

/// Parses unmasked server frames.
pub fn parse_server_frames(mut buf: &[u8]) -> ServerFrames {
    let mut out = ServerFrames::default();
    while buf.len() >= 2 {
        let opcode = buf[0] & 0x0f;
        let (len, header) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if buf.len() < header + len {
            break;
        }
        let payload = &buf[header..header + len];
        match opcode {
            1 => out.texts += 1,
            8 if payload.len() >= 2 => {
                out.close_code = Some(u16::from_be_bytes([payload[0], payload[1]]))
            }
            8 => out.close_code = Some(1005),
            _ => {}
        }
        buf = &buf[header + len..];
    }
    out.trailing = buf.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        for len in [0usize, 5, 125, 126, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = masked_text_frame(&payload);
            assert_eq!(frame[0], 0x81);
            assert!(frame[1] & 0x80 != 0);
            let header = match len {
                n if n < 126 => 2,
                n if n <= 0xffff => 4,
                _ => 10,
            };
            let mask = &frame[header..header + 4];
            let unmasked: Vec<u8> = frame[header + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn server_frames_are_counted() {
        let mut stream = Vec::new();
        stream.extend(server_frame(1, b"{\"event\":\"joinedRoom\"}"));
        stream.extend(server_frame(1, &vec![b'x'; 300]));
        stream.extend(server_frame(1, &vec![b'y'; 70_000]));
        stream.extend(server_frame(9, b""));
        stream.extend(server_frame(8, &[0x03, 0xf5, b'!']));
        stream.extend(&server_frame(1, b"partial")[..4]);
        let frames = parse_server_frames(&stream);
        assert_eq!(frames.texts, 3);
        assert_eq!(frames.close_code, Some(1013));
        assert_eq!(frames.trailing, 4);
    }
}
