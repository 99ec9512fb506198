//! Micro-benchmark of the session write path: events handed to sessions, timed until
//! their frames have left through real sockets. A real hub (in this process, on
//! loopback) serves `SOCKETS` WebSocket clients joined to one room; each publish is
//! one frame per socket, and an iteration ends when a reader on another thread has
//! read every byte. So it measures what a session does per frame — its mailbox, its
//! outbox, framing and the `write` system calls — plus the shard's hand-off to it, in
//! frames per second: with many events in flight (a session writes all that one
//! wake-up brings at once) and with one at a time (every frame its own write).
//!
//! The hub (its workers and this thread) is pinned to CPU 0 and the reader to CPU 1
//! when the machine has two, so frames/s is per core of the hub.
//!
//! Run: `cargo bench --bench session_write`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventide_hub::config::Settings;
use eventide_hub::metrics::Origin;
use eventide_hub::rooms::{Event, Hub, RoomName, Target};
use eventide_hub::startup::Application;

/// Sockets in the room: frames per publish.
const SOCKETS: u64 = 100;
const SECRET: &str = "bench-secret-0123456789";
const ROOM: &str = "bench";

/// Pins the calling thread (and the threads it starts later) to one CPU, if it exists.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        if libc::sysconf(libc::_SC_NPROCESSORS_ONLN) < 2 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "bench", "role": "admin", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A socket through the handshake and joined to the room, its reply read.
fn joined_socket(port: u16, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let join = format!(r#"{{"event":"joinRoom","data":{{"room":"{ROOM}"}}}}"#);
    // A masked text frame; a zero mask keeps the payload as is.
    let mut frame = vec![0x81, 0x80 | join.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(join.as_bytes());
    stream.write_all(&frame).unwrap();
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).unwrap();
    let mut reply = vec![0u8; (header[1] & 0x7f) as usize];
    stream.read_exact(&mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("joinedRoom"));
    stream
}

/// Bytes the clients have read, and a wake-up for whoever waits for a number of them
/// (without spinning on the hub's CPU).
#[derive(Default)]
struct Progress {
    read: AtomicU64,
    /// `done` is notified once `read` reaches this.
    want: AtomicU64,
    done: tokio::sync::Notify,
}

impl Progress {
    fn add(&self, n: u64) {
        let read = self.read.fetch_add(n, Ordering::AcqRel) + n;
        if read >= self.want.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    fn read(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }

    /// Waits until `target` bytes have been read.
    async fn reach(&self, target: u64, began: Instant) {
        self.want.store(target, Ordering::Release);
        while self.read() < target {
            // Only a closed session (a burst past its cap) would stop the bytes.
            assert!(began.elapsed() < Duration::from_secs(60), "frames stopped");
            let _ = tokio::time::timeout(Duration::from_secs(1), self.done.notified()).await;
        }
    }
}

/// Opens the sockets and then reads them all, counting the bytes, on one thread on
/// CPU 1; `ready` is told once every socket has joined. The hub must keep running
/// meanwhile, so none of this may block the thread that drives it.
fn start_clients(port: u16, progress: Arc<Progress>, ready: std::sync::mpsc::Sender<()>) {
    std::thread::spawn(move || {
        pin_to(1);
        let token = token();
        let sockets: Vec<TcpStream> = (0..SOCKETS).map(|_| joined_socket(port, &token)).collect();
        let _ = ready.send(());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let mut readers = Vec::new();
            for socket in sockets {
                socket.set_nonblocking(true).unwrap();
                let mut socket = tokio::net::TcpStream::from_std(socket).unwrap();
                let progress = progress.clone();
                readers.push(tokio::task::spawn_local(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buffer = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                        progress.add(n as u64);
                    }
                }));
            }
            for reader in readers {
                let _ = reader.await;
            }
        });
    });
}

fn session_write(c: &mut Criterion) {
    pin_to(0);
    let system = actix::System::new();
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        Settings::with_database(format!("sqlite://{}", dir.path().join("b.db").display()));
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.jwt_secret = Some(SECRET.into());
    settings.limits.max_connections_per_sub = SOCKETS as usize;
    // The clients only read: no pongs would keep them alive, and no ping may be
    // counted as an event's bytes.
    settings.limits.heartbeat_secs = 86_400;
    settings.limits.client_timeout_secs = 86_400;
    let (hub, port): (Hub, u16) = system.block_on(async move {
        let app = Application::build(settings).await.unwrap();
        let (hub, port) = (app.hub(), app.port());
        actix::spawn(app.run_until_stopped());
        (hub, port)
    });
    let progress = Arc::new(Progress::default());
    let (ready, joined) = std::sync::mpsc::channel();
    start_clients(port, progress.clone(), ready);
    system.block_on(async {
        while joined.try_recv().is_err() {
            actix::clock::sleep(Duration::from_millis(1)).await;
        }
    });

    let room = RoomName::parse(ROOM).unwrap();
    let frame = ByteString::from(format!(
        "{{\"event\":\"notice\",\"room\":\"{ROOM}\",\"data\":{{\"note\":\"{}\"}}}}",
        "x".repeat(300)
    ));
    // 126..=65535 bytes: a 4-byte header.
    let on_wire = (frame.len() + 4) as u64;

    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(SOCKETS));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("write a 345-byte event to 100 sockets", |b| {
        b.iter_custom(|iterations| {
            system.block_on(async {
                let start = progress.read();
                let target = start + iterations * SOCKETS * on_wire;
                let began = Instant::now();
                for i in 0..iterations {
                    let event = Event {
                        target: Target::Room(room.clone()),
                        version: None,
                        frame: frame.clone(),
                    };
                    hub.publish(event, Origin::Emit).await.unwrap();
                    // Let the sessions drain now and then, as a steady stream would:
                    // a burst larger than a session's outbox would close it (1013).
                    if i % 256 == 255 {
                        let drained = start + (i - 128) * SOCKETS * on_wire;
                        progress.reach(drained, began).await;
                    }
                }
                progress.reach(target, began).await;
                began.elapsed()
            })
        })
    });
    // One event in flight at a time: nothing to coalesce, every frame its own write.
    group.bench_function("write one 345-byte event at a time to 100 sockets", |b| {
        b.iter_custom(|iterations| {
            system.block_on(async {
                let began = Instant::now();
                for _ in 0..iterations {
                    let target = progress.read() + SOCKETS * on_wire;
                    let event = Event {
                        target: Target::Room(room.clone()),
                        version: None,
                        frame: frame.clone(),
                    };
                    hub.publish(event, Origin::Emit).await.unwrap();
                    progress.reach(target, began).await;
                }
                began.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, session_write);
criterion_main!(benches);
