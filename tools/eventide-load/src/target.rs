//! Where the load goes: a loopback URL (anything else is refused), the source
//! addresses sockets are spread over, and the tokens they present.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

/// A parsed `ws://` or `http://` URL on a loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host and port.
    pub addr: SocketAddr,
    /// Path and query, e.g. `/ws`.
    pub path: String,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH` (or `http://`); refuses any host that is not a
    /// loopback address (`127.0.0.0/8`, `::1`, `localhost`).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("{url:?}: use ws://HOST:PORT/PATH (no TLS)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = parse_authority(authority)?;
        Ok(Target {
            addr,
            path: path.to_owned(),
        })
    }
}

/// Parses and checks `HOST:PORT` (loopback only).
pub fn parse_authority(authority: &str) -> Result<SocketAddr, String> {
    let authority = authority.replacen("localhost", "127.0.0.1", 1);
    let addr: SocketAddr = authority
        .parse()
        .or_else(|_| format!("{authority}:80").parse())
        .map_err(|_| format!("{authority:?}: expected a loopback IP:PORT"))?;
    require_loopback(addr.ip())?;
    Ok(addr)
}

/// Refuses anything but a loopback address: the tool must never load a real host.
pub fn require_loopback(ip: IpAddr) -> Result<(), String> {
    if ip.is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{ip} is not a loopback address: the load tool only targets 127.0.0.0/8 or ::1"
        ))
    }
}

/// The source address of socket `i` when sockets are spread `per_source` to an
/// address over 127.0.0.2, 127.0.0.3, …; `None` for an IPv6 target (no spreading).
pub fn source_for(i: usize, per_source: usize, target: &SocketAddr) -> Option<Ipv4Addr> {
    if !target.is_ipv4() {
        return None;
    }
    let n = (i / per_source.max(1)) as u32 + 2;
    // 127.0.0.2 … 127.255.255.254
    Some(Ipv4Addr::from(0x7f00_0000 + n.min(0x00ff_fffe)))
}

/// The tokens sockets present.
#[derive(Clone)]
pub enum Auth {
    /// No `Authorization` header (the reference server needs none).
    None,
    /// The same token everywhere.
    Fixed(String),
    /// Tokens minted here with the hub's HS256 secret.
    Secret {
        /// The shared secret (`EVENTIDE_JWT_SECRET`).
        secret: String,
        /// Sockets per token subject (the hub limits sockets per `sub`).
        per_sub: usize,
        /// Seconds the tokens live.
        ttl: Duration,
    },
}

impl Auth {
    /// From the command line: a fixed token, a secret, or nothing.
    pub fn from_args(token: Option<String>, secret: Option<String>, per_sub: usize) -> Auth {
        match (token, secret) {
            (Some(t), _) => Auth::Fixed(t),
            (None, Some(s)) => Auth::Secret {
                secret: s,
                per_sub: per_sub.max(1),
                ttl: Duration::from_secs(4 * 3600),
            },
            (None, None) => Auth::None,
        }
    }

    /// The token of subscriber socket `i`: role `client` with `rooms: ["provider-*"]`, subject
    /// `eventide-load-{i / per_sub}`.
    pub fn subscriber(&self, i: usize) -> Result<Option<String>, String> {
        match self {
            Auth::None => Ok(None),
            Auth::Fixed(t) => Ok(Some(t.clone())),
            Auth::Secret {
                secret,
                per_sub,
                ttl,
            } => mint(
                secret,
                json!({
                    "sub": format!("eventide-load-{}", i / per_sub),
                    "role": "client",
                    "rooms": ["provider-*"],
                    "exp": exp_after(*ttl),
                }),
            )
            .map(Some),
        }
    }

    /// The publisher's token: role `service`.
    pub fn publisher(&self) -> Result<Option<String>, String> {
        match self {
            Auth::None => Ok(None),
            Auth::Fixed(t) => Ok(Some(t.clone())),
            Auth::Secret { secret, ttl, .. } => mint(
                secret,
                json!({"sub": "eventide-load-publisher", "role": "service", "exp": exp_after(*ttl)}),
            )
            .map(Some),
        }
    }
}

fn exp_after(ttl: Duration) -> u64 {
    (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mint(secret: &str, claims: serde_json::Value) -> Result<String, String> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| format!("cannot mint a token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_parse() {
        let t = Target::parse("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/ws");
        let t = Target::parse("ws://localhost:9/ws?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(t.path, "/ws?x=1");
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(t.path, "/");
        assert!(Target::parse("ws://127.8.9.10:1/ws").is_ok());
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "ws://10.0.0.1:8080/ws",
            "ws://192.168.1.2:80/",
            "ws://example.com:80/ws",
            "ws://0.0.0.0:8080/ws",
            "wss://127.0.0.1:8080/ws",
            "127.0.0.1:8080",
        ] {
            assert!(Target::parse(url).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn sources_spread_over_loopback_addresses() {
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            source_for(0, 1000, &target),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_for(999, 1000, &target),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_for(1000, 1000, &target),
            Some(Ipv4Addr::new(127, 0, 0, 3))
        );
        assert_eq!(
            source_for(300_000, 1000, &target),
            Some(Ipv4Addr::new(127, 0, 1, 46))
        );
        assert_eq!(source_for(5, 10, &"[::1]:80".parse().unwrap()), None);
    }

    #[test]
    fn minted_tokens_carry_the_claims() {
        let auth = Auth::from_args(None, Some("s3cret".into()), 100);
        let token = auth.subscriber(250).unwrap().unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "eventide-load-2");
        assert_eq!(data.claims["role"], "client");
        assert!(matches!(Auth::from_args(None, None, 1), Auth::None));
    }
}
