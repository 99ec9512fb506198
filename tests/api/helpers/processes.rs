//! Other processes a test drives: the hub binary itself (for signals and its real
//! memory), and a private `redis-server` a test may stop and restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::tokens::SECRET;
use super::ws::WsClient;

/// A free loopback port for a server a test may stop and start again, below Linux's
/// ephemeral range (32768 and up by default). A stopped server's port in that range
/// could be handed to a reconnecting client's own socket, which then connects to
/// itself (TCP simultaneous open) and looks like a live server that never answers.
pub fn free_port() -> u16 {
    free_port_in(23_000..29_900, &[0])
}

/// A free loopback port in `range` such that `port + extra` is free too for every
/// `extra` (a Redis Cluster node's bus port).
pub fn free_port_in(range: std::ops::Range<u16>, extras: &[u16]) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = range.end - range.start;
    // Apart from other test processes (the pid) and from earlier calls of this one.
    let offset = (std::process::id() % u32::from(span)) as u16;
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = range.start + (offset + step) % span;
        if extras.iter().all(|extra| free(port + extra)) {
            return port;
        }
    }
    panic!("no free port in {range:?} (with {extras:?} above it)");
}

/// The `eventide-hub` binary as a process on a free port, with its own SQLite file
/// (unless `extra_env` names another `DATABASE_URL`). Killed when dropped.
pub struct HubProcess {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl HubProcess {
    /// Starts the binary and waits for its `listening on` line.
    pub fn start(extra_env: &[(&str, &str)]) -> HubProcess {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_eventide-hub"))
            .env("EVENTIDE_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/hub.db", dir.path().display()),
            )
            .env("EVENTIDE_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hub binary starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = loop {
            let line = lines.next().expect("the hub logs before exiting").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.rsplit(':').next().unwrap().trim().parse().unwrap();
            }
        };
        // Keep draining the log so the hub never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        HubProcess {
            child,
            port,
            _dir: dir,
        }
    }

    /// Opens a socket to this hub with a bearer token.
    pub async fn ws(&self, token: &str) -> WsClient {
        WsClient::connect(&format!("ws://127.0.0.1:{}/ws", self.port), token).await
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Redis on its own port, so stopping it disturbs no other test.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
}

impl PrivateRedis {
    /// Starts `redis-server` on `port`; panics if it is not installed or does not
    /// answer (the tests that use it are ignored unless Redis is expected).
    pub fn spawn(port: u16) -> PrivateRedis {
        Self::start(port).unwrap_or_else(|| {
            panic!(
                "this test needs redis-server on PATH (apt-get install redis-server); \
                 it did not start on port {port}"
            )
        })
    }

    /// Starts `redis-server` on `port`; `None` if it is not installed or does not answer.
    pub fn start(port: u16) -> Option<PrivateRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = PrivateRedis {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                redis.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (a crash, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
