//! Reading a JSON Web Key Set from `EVENTIDE_JWT_JWKS_URL`, and when to read it again.
//!
//! The set is read at start (unreadable: the hub does not start), every
//! `EVENTIDE_JWT_JWKS_REFRESH_SECS`, and when a token names a `kid` the set lacks — at
//! most once per [`UNKNOWN_KID_INTERVAL`], so a stream of tokens with made-up `kid`s
//! cannot turn the hub into a load generator against the identity provider. A read
//! that fails (or yields no usable key) leaves the last good set in force.
//!
//! `http://` and `https://` (the usual public trust roots) are read with awc on the
//! actix runtime; `file:///` on the blocking pool. Nothing here blocks an async thread.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::sync::{watch, Notify};

/// At most one read of the set per this interval is caused by unknown `kid`s.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);
/// How long one read of the set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request with an unknown `kid` waits for the read it caused.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(5);
/// Largest key set accepted: identity providers' sets are a few KiB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where the set lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    /// `http://…` or `https://…`.
    Http(String),
    /// `file:///…`: an absolute path.
    File(PathBuf),
}

impl JwksLocation {
    /// Parses `EVENTIDE_JWT_JWKS_URL`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "invalid URL {url:?}: a file URL needs an absolute path (file:///etc/jwks.json)"
                ));
            }
            return Ok(JwksLocation::File(PathBuf::from(path)));
        }
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
                Ok(JwksLocation::Http(url.to_owned()))
            }
            _ => Err(format!(
                "invalid URL {url:?}: expected http://…, https://… or file:///…"
            )),
        }
    }

    /// Reads the set's bytes.
    pub async fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            JwksLocation::File(path) => {
                let path = path.clone();
                actix_web::web::block(move || std::fs::read(&path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot read the file: {e}"))
            }
            JwksLocation::Http(url) => fetch(url).await,
        }
    }
}

impl std::fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksLocation::Http(url) => f.write_str(url),
            JwksLocation::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    // A client per read: reads are minutes apart, and awc clients belong to one thread.
    let client = awc::Client::builder().timeout(FETCH_TIMEOUT).finish();
    let mut response = client
        .get(url)
        .insert_header(("Accept", "application/json"))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = response
        .body()
        .limit(MAX_JWKS_BYTES)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(body.to_vec())
}

/// When the set is read again, and what the reads counted.
pub struct Refresh {
    /// Where the set lives.
    pub location: JwksLocation,
    /// Seconds between two reads.
    pub interval: Duration,
    /// Wakes the refresh task for an unknown `kid`.
    wake: Notify,
    /// When an unknown `kid` last caused a read, and the read count then; a read is
    /// caused at most once per [`UNKNOWN_KID_INTERVAL`].
    last_wake: Mutex<Option<(Instant, u64)>>,
    /// Reads finished (good or not): requests waiting for a read watch it.
    reads: watch::Sender<u64>,
    /// `eventide_jwks_refreshes_total`: reads that replaced the set.
    pub refreshes: IntCounter,
    /// `eventide_jwks_refresh_failures_total`: reads that failed (the last set stayed).
    pub failures: IntCounter,
}

impl Refresh {
    /// Reads of `location` every `interval`.
    pub fn new(location: JwksLocation, interval: Duration) -> Self {
        Refresh {
            location,
            interval,
            wake: Notify::new(),
            last_wake: Mutex::new(None),
            reads: watch::channel(0).0,
            refreshes: IntCounter::new(
                "eventide_jwks_refreshes_total",
                "Reads of EVENTIDE_JWT_JWKS_URL that replaced the key set",
            )
            .expect("valid metric"),
            failures: IntCounter::new(
                "eventide_jwks_refresh_failures_total",
                "Reads of EVENTIDE_JWT_JWKS_URL that failed; the last good set stayed in use",
            )
            .expect("valid metric"),
        }
    }

    /// Asks for a read because a token named an unknown `kid`. Returns a receiver that
    /// changes when a read finishes, or `None` when the last such read is too recent
    /// and already done (the set is as fresh as this hub will make it).
    pub fn unknown_kid(&self) -> Option<watch::Receiver<u64>> {
        let receiver = self.reads.subscribe();
        let reads = *receiver.borrow();
        let mut last = self.last_wake.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            // A read caused within the interval is still running: wait for it too.
            Some((at, seen)) if at.elapsed() < UNKNOWN_KID_INTERVAL => {
                (seen == reads).then_some(receiver)
            }
            _ => {
                *last = Some((Instant::now(), reads));
                self.wake.notify_one();
                Some(receiver)
            }
        }
    }

    /// Waits for the read `receiver` was handed for, at most a few seconds.
    pub async fn wait(mut receiver: watch::Receiver<u64>) -> bool {
        matches!(
            tokio::time::timeout(UNKNOWN_KID_WAIT, receiver.changed()).await,
            Ok(Ok(()))
        )
    }

    /// Waits until the next read is due: the interval passed or an unknown `kid` asked.
    pub async fn next_read(&self) {
        tokio::select! {
            _ = tokio::time::sleep(self.interval) => {}
            _ = self.wake.notified() => {}
        }
    }

    /// Records that a read finished.
    pub fn read_done(&self) {
        self.reads.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            JwksLocation::parse("file:///etc/jwks.json").unwrap(),
            JwksLocation::File("/etc/jwks.json".into())
        );
        assert!(matches!(
            JwksLocation::parse("https://idp.example/.well-known/jwks.json"),
            Ok(JwksLocation::Http(_))
        ));
        assert!(matches!(
            JwksLocation::parse("HTTP://127.0.0.1:9/jwks"),
            Ok(JwksLocation::Http(_))
        ));
        for bad in [
            "file://relative/jwks.json",
            "ftp://x/y",
            "https://",
            "idp/jwks",
            "",
        ] {
            assert!(JwksLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[actix_web::test]
    async fn unknown_kids_cause_one_read_per_interval() {
        let refresh = Refresh::new(
            JwksLocation::File("/nonexistent".into()),
            Duration::from_secs(300),
        );
        let first = refresh
            .unknown_kid()
            .expect("the first unknown kid asks for a read");
        // While that read runs, others wait for it rather than asking again.
        let second = refresh.unknown_kid().expect("joins the running read");
        refresh.next_read().await;
        refresh.read_done();
        assert!(Refresh::wait(first).await);
        assert!(Refresh::wait(second).await);
        // Done, and within the interval: no new read, nothing to wait for.
        assert!(refresh.unknown_kid().is_none());
    }
}
