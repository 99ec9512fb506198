//! Just enough of the Redis protocol (RESP2) to cause faults: send one command on a
//! fresh connection, read one reply. The target must be on loopback, like every
//! other target of the tool.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::target::parse_authority;

/// Parses `redis://HOST:PORT[/DB]` (loopback only, no password).
pub fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url:?}: use redis://HOST:PORT"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err("credentials in the Redis URL are not supported".into());
    }
    parse_authority(authority)
}

/// A command as RESP: an array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// The first line of a reply, as Redis wrote it (`+OK`, `:2`, `-ERR …`).
pub fn first_line(reply: &[u8]) -> Option<&str> {
    let end = reply.windows(2).position(|w| w == b"\r\n")?;
    std::str::from_utf8(&reply[..end]).ok()
}

/// Sends `args` to the Redis at `addr` and answers the reply's first line; an error
/// reply (`-…`) is an error.
pub async fn command(addr: SocketAddr, args: &[&str]) -> Result<String, String> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .write_all(&encode(args))
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        loop {
            if let Some(line) = first_line(&buf) {
                return if line.starts_with('-') {
                    Err(line.to_owned())
                } else {
                    Ok(line.to_owned())
                };
            }
            let mut chunk = [0u8; 512];
            match stream.read(&mut chunk).await {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    })
    .await
    .map_err(|_| "Redis did not answer within 2 s".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        assert_eq!(
            encode(&["CLIENT", "PAUSE", "3000", "WRITE"]),
            b"*4\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n$4\r\n3000\r\n$5\r\nWRITE\r\n"
        );
        assert_eq!(first_line(b":2\r\n"), Some(":2"));
        assert_eq!(first_line(b"+OK"), None);
    }

    #[test]
    fn only_loopback_redis() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6390/0").unwrap(),
            "127.0.0.1:6390".parse().unwrap()
        );
        assert!(parse_url("redis://10.1.2.3:6379").is_err());
        assert!(parse_url("redis://u:p@127.0.0.1:6379").is_err());
        assert!(parse_url("http://127.0.0.1:6379").is_err());
    }
}
