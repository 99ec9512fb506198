//! A minimal keep-alive HTTP/1.1 client for the publisher: `POST` a JSON body, read
//! a `Content-Length` response. Enough for the hub's REST API and the reference
//! server's emit route, and cheap enough not to distort the measurement.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// One keep-alive connection, reopened when the server closes it.
pub struct HttpClient {
    addr: SocketAddr,
    token: Option<String>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl HttpClient {
    /// A client of `addr` sending `Authorization: Bearer token` when given.
    pub fn new(addr: SocketAddr, token: Option<String>) -> Self {
        HttpClient {
            addr,
            token,
            stream: None,
            buf: Vec::with_capacity(4096),
            timeout: Duration::from_secs(10),
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: &str) -> Result<Response, String> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(token) = &self.token {
            request.push_str("Authorization: Bearer ");
            request.push_str(token);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.send(request).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Response, String> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some(token) = &self.token {
            request.push_str("Authorization: Bearer ");
            request.push_str(token);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        self.send(request).await
    }

    async fn send(&mut self, request: String) -> Result<Response, String> {
        // A connection the server closed while idle fails on first use: retry once on
        // a fresh one (the request was not processed then).
        let reused = self.stream.is_some();
        match tokio::time::timeout(self.timeout, self.exchange(request.as_bytes())).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) if reused => {
                self.stream = None;
                tokio::time::timeout(self.timeout, self.exchange(request.as_bytes()))
                    .await
                    .map_err(|_| "HTTP request timed out".to_owned())?
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err("HTTP request timed out".into())
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let (response, close) = read_response(stream, &mut self.buf).await?;
        if close {
            self.stream = None;
        }
        Ok(response)
    }
}

/// Reads one response from `stream`; `buf` keeps bytes read past it. Answers the
/// response and whether the server will close the connection.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(Response, bool), String> {
    loop {
        if let Some(head_len) = find_head_end(buf) {
            let head = parse_head(&buf[..head_len])?;
            let total = head_len + head.content_length;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            let body = String::from_utf8_lossy(&buf[head_len..total]).into_owned();
            buf.drain(..total);
            return Ok((
                Response {
                    status: head.status,
                    body,
                },
                head.close,
            ));
        }
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// The length of the head including the blank line, once complete.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// What the tool needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Body length.
    pub content_length: usize,
    /// `Connection: close`.
    pub close: bool,
}

/// Parses a response head (`HTTP/1.1 201 Created\r\nName: value\r\n…\r\n\r\n`).
pub fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = 0;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            return Err("chunked responses are not supported by the load tool".into());
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Head {
        status,
        content_length,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse() {
        let raw =
            b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\nlocation: /x\r\n\r\n{\"id\": 7}...";
        let end = find_head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"{\"id\": 7}...");
        assert_eq!(
            parse_head(&raw[..end]).unwrap(),
            Head {
                status: 201,
                content_length: 12,
                close: false
            }
        );
        let head = parse_head(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n").unwrap();
        assert!(head.close);
        assert_eq!(head.content_length, 0);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
