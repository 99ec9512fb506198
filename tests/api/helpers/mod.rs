//! The shared test harness: a real hub on port 0 with a temp SQLite file, a real HTTP
//! client and a real WebSocket client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_codec::Framed;
use awc::{ws, BoxedSocket};
use bytestring::ByteString;
use eventide_hub::auth::{Claims, Role};
use eventide_hub::config::Settings;
use eventide_hub::rooms::Hub;
use eventide_hub::startup::{Application, Shutdown};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The HS256 secret of test hubs.
pub const SECRET: &str = "test-secret-0123456789";

/// A running hub.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub hub: Hub,
    pub settings: Settings,
    pub shutdown: Shutdown,
    /// The temp dir and database the hub uses; pass it on to restart on the same data.
    pub dir: Resources,
    /// The hub's database pool, for tests that must starve it.
    pub pool: eventide_hub::db::DbPool,
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temp SQLite file (always available).
    Sqlite,
    /// A fresh database on the server named by `EVENTIDE_TEST_PG_URL`.
    Postgres,
}

impl Backend {
    /// PostgreSQL, if `EVENTIDE_TEST_PG_URL` names a server; else prints why the test
    /// is skipped. Kept for `cluster.rs` only until it is converted to `#[ignore]`.
    pub fn postgres() -> Option<Backend> {
        match std::env::var("EVENTIDE_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres),
            _ => {
                eprintln!("skipping PostgreSQL variant: set EVENTIDE_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)");
                None
            }
        }
    }
}

/// Runs each named `async fn(Backend)` as two tests: on SQLite, and on PostgreSQL.
/// The PostgreSQL variant is ignored by a plain `cargo test` (so it shows as ignored,
/// not as passed) and fails without `EVENTIDE_TEST_PG_URL` when run.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[actix_web::test]
            async fn $name() {
                super::$name($crate::helpers::Backend::Sqlite).await
            })*
        }
        mod on_postgres {
            $(#[actix_web::test]
            #[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL)"]
            async fn $name() {
                super::$name($crate::helpers::Backend::Postgres).await
            })*
        }
    };
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database on the `EVENTIDE_TEST_PG_URL` server.
    pub fn create() -> TestDatabase {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin_url = std::env::var("EVENTIDE_TEST_PG_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .expect(
                "this test needs PostgreSQL: set EVENTIDE_TEST_PG_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/postgres)",
            );
        let name = format!(
            "eventide_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut conn = diesel::PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at EVENTIDE_TEST_PG_URL: {e}"));
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        let url = format!("{base}/{name}");
        TestDatabase {
            url,
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = conn.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// What a test hub's data lives in: kept alive as long as any hub uses it.
pub struct TestResources {
    tempdir: TempDir,
    /// Held so the database is dropped after the last hub using it.
    _database: Option<TestDatabase>,
}

impl TestResources {
    /// The temp directory (the SQLite file lives here).
    pub fn path(&self) -> &std::path::Path {
        self.tempdir.path()
    }
}

/// Shared ownership of a test's data, so a restarted hub finds the same data.
pub type Resources = std::sync::Arc<TestResources>;

/// Starts a hub with the default settings on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a hub on SQLite after `configure` adjusts its settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on_with(Backend::Sqlite, configure).await
}

/// Starts a hub with the default settings on `backend`.
pub async fn spawn_app_on(backend: Backend) -> TestApp {
    spawn_app_on_with(backend, |_| {}).await
}

/// Fresh data on `backend`: a temp dir, and a new database for PostgreSQL; returns
/// it with the `DATABASE_URL` to use.
pub fn fresh_data(backend: Backend) -> (Resources, String) {
    let tempdir = tempfile::tempdir().expect("temp dir");
    let (database, url) = match backend {
        Backend::Sqlite => (
            None,
            format!("sqlite://{}/hub.db", tempdir.path().display()),
        ),
        Backend::Postgres => {
            let database = TestDatabase::create();
            let url = database.url.clone();
            (Some(database), url)
        }
    };
    (
        std::sync::Arc::new(TestResources {
            tempdir,
            _database: database,
        }),
        url,
    )
}

/// Test settings for a database: port 0 and the test secret.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::with_database(database_url);
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.jwt_secret = Some(SECRET.into());
    settings
}

/// Starts a hub on `backend` after `configure` adjusts its settings.
pub async fn spawn_app_on_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (dir, url) = actix_web::web::block(move || fresh_data(backend))
        .await
        .unwrap();
    let mut settings = test_settings(&url);
    configure(&mut settings);
    spawn_with_settings(settings, dir).await
}

/// Starts a hub with exactly these settings, on the data in `dir`.
pub async fn spawn_with_settings(settings: Settings, dir: Resources) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("the hub starts");
    let port = app.port();
    let hub = app.hub();
    let shutdown = app.shutdown_handle();
    let pool = app.pool();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        hub,
        settings,
        shutdown,
        dir,
        pool,
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `role`, valid for an hour.
pub fn claims(role: Role, provider_id: Option<i64>) -> Claims {
    Claims {
        sub: match provider_id {
            Some(id) => format!("provider-{id}"),
            None => format!("{}-user", role.as_str()),
        },
        role,
        provider_id,
        rooms: Vec::new(),
        exp: now() + 3600,
        iss: None,
        aud: None,
    }
}

/// Signs any JSON claims with the test secret.
pub fn sign(claims: &impl serde::Serialize) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// An admin token.
pub fn admin() -> String {
    sign(&claims(Role::Admin, None))
}

/// A service token.
pub fn service() -> String {
    sign(&claims(Role::Service, None))
}

/// A provider's token.
pub fn provider(id: i64) -> String {
    sign(&claims(Role::Provider, Some(id)))
}

/// A client token that may join the given room patterns.
pub fn client_with_rooms(rooms: &[&str]) -> String {
    let mut c = claims(Role::Client, None);
    c.rooms = rooms.iter().map(|r| r.to_string()).collect();
    sign(&c)
}

/// A slot body starting `minute` minutes after 2030-01-01T00:00Z, 30 minutes long.
pub fn slot_at(minute: i64) -> Value {
    let start = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap()
        + chrono::Duration::minutes(minute);
    let end = start + chrono::Duration::minutes(30);
    json!({"startsAt": start.to_rfc3339(), "endsAt": end.to_rfc3339()})
}

impl TestApp {
    /// An HTTP client.
    pub fn http(&self) -> awc::Client {
        awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish()
    }

    /// Sends a request with an optional bearer token and optional raw body; returns
    /// the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http()
            .request(method, format!("{}{}", self.address, path))
            .insert_header(("Content-Type", "application/json"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = match body {
            Some(body) => request.send_body(body.to_owned()).await,
            None => request.send().await,
        }
        .expect("the hub answers");
        let bytes = response.body().limit(16 * 1024 * 1024).await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        (response.status().as_u16(), value)
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None).await
    }

    /// POST JSON with a token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(&body.to_string()))
            .await
    }

    /// PATCH JSON with a token.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.call("PATCH", path, Some(token), Some(&body.to_string()))
            .await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("DELETE", path, Some(token), None).await
    }

    /// Creates a slot as an admin and returns it.
    pub async fn create_slot(&self, provider_id: i64, minute: i64) -> Value {
        let (status, slot) = self
            .post(
                &format!("/api/providers/{provider_id}/availability"),
                &admin(),
                &slot_at(minute),
            )
            .await;
        assert_eq!(status, 201, "create failed: {slot}");
        slot
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Opens a socket with a bearer token.
    pub async fn ws(&self, token: &str) -> WsClient {
        self.ws_request(self.http().ws(self.ws_url()).bearer_auth(token))
            .await
            .expect("the handshake succeeds")
    }

    /// Opens a socket from a prepared request.
    pub async fn ws_request(
        &self,
        request: awc::ws::WebsocketsRequest,
    ) -> Result<WsClient, awc::error::WsClientError> {
        let (_, framed) = request.max_frame_size(1 << 20).connect().await?;
        Ok(WsClient { framed })
    }

    /// The status a handshake gets (101 on success).
    pub async fn handshake_status(&self, request: awc::ws::WebsocketsRequest) -> u16 {
        match request.connect().await {
            Ok((response, _)) => response.status().as_u16(),
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
            Err(e) => panic!("handshake failed without a status: {e}"),
        }
    }

    /// Waits until the registry holds exactly `sessions` sessions.
    pub async fn wait_for_sessions(&self, sessions: usize) -> eventide_hub::rooms::RegistryStats {
        let mut stats = self.hub.stats().await.unwrap();
        for _ in 0..200 {
            if stats.sessions == sessions {
                return stats;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
            stats = self.hub.stats().await.unwrap();
        }
        panic!("expected {sessions} sessions, registry has {stats:?}");
    }
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

/// How long a test waits for an expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

impl WsClient {
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

    /// The next frame: a JSON text frame, or how the socket ended.
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
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
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

    /// Sends a close frame.
    pub async fn close(mut self) {
        let _ = self
            .framed
            .send(ws::Message::Close(Some(ws::CloseCode::Normal.into())))
            .await;
        let _ = self.ending(Duration::from_secs(5)).await;
    }
}

/// A private Redis on its own port, so stopping it disturbs no other test.
pub struct PrivateRedis {
    child: Option<std::process::Child>,
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
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = PrivateRedis {
            child: Some(child),
            port,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                redis.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
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

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
