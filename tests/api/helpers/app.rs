//! A real hub for a test: [`TestApp::builder`] picks the backend and adjusts the
//! settings, [`TestAppBuilder::spawn`] starts it on a loopback port, and the
//! [`TestApp`] talks to it over real HTTP and WebSockets.

use std::time::Duration;

use eventide_hub::config::Settings;
use eventide_hub::rooms::{Hub, RegistryStats};
use eventide_hub::server::Shutdown;
use eventide_hub::startup::Application;
use serde_json::{json, Value};

use super::backends::{fresh_data, Backend, Resources};
use super::tokens::{admin, SECRET};
use super::ws::{http_client, WsClient};

/// A running hub.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub hub: Hub,
    pub settings: Settings,
    pub shutdown: Shutdown,
    /// The temp dir and database the hub uses; shared by a restarted hub or a second
    /// node on the same data.
    pub dir: Resources,
    /// The hub's database pool, for tests that must starve it.
    pub pool: eventide_hub::db::DbPool,
}

/// One adjustment of the settings, applied before the hub starts.
type Configure<'a> = Box<dyn FnOnce(&mut Settings) + 'a>;

/// How to start a test hub: SQLite, the test secret and port 0 unless told otherwise.
pub struct TestAppBuilder<'a> {
    backend: Backend,
    same_data: Option<(Settings, Resources)>,
    configure: Vec<Configure<'a>>,
}

/// Settings of a test hub on `database_url`: every default, port 0 and the test secret.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::with_database(database_url);
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.jwt_secret = Some(SECRET.into());
    settings
}

impl<'a> TestAppBuilder<'a> {
    /// Runs the hub on `backend` (fresh data for this test).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Adjusts the settings before the hub starts (may be called more than once).
    pub fn configure(mut self, configure: impl FnOnce(&mut Settings) + 'a) -> Self {
        self.configure.push(Box::new(configure));
        self
    }

    /// Runs the hub with the settings and on the data of `other`: a second node of a
    /// cluster, or a restart once `other` has shut down.
    pub fn same_data_as(self, other: &TestApp) -> Self {
        self.same_data(other.settings.clone(), other.dir.clone())
    }

    /// Runs the hub with these settings on the data in `dir`.
    pub fn same_data(mut self, settings: Settings, dir: Resources) -> Self {
        self.same_data = Some((settings, dir));
        self
    }

    /// Starts the hub and serves it in the background.
    pub async fn spawn(self) -> TestApp {
        let (mut settings, dir) = match self.same_data {
            Some(same) => same,
            None => {
                let backend = self.backend;
                let (dir, url) = actix_web::web::block(move || fresh_data(backend))
                    .await
                    .unwrap();
                (test_settings(&url), dir)
            }
        };
        for configure in self.configure {
            configure(&mut settings);
        }
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
}

/// A slot body starting `minute` minutes after 2030-01-01T00:00Z, 30 minutes long.
pub fn slot_at(minute: i64) -> Value {
    let start = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z").unwrap()
        + chrono::Duration::minutes(minute);
    let end = start + chrono::Duration::minutes(30);
    json!({"startsAt": start.to_rfc3339(), "endsAt": end.to_rfc3339()})
}

impl TestApp {
    /// A builder for a test hub.
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            backend: Backend::Sqlite,
            same_data: None,
            configure: Vec::new(),
        }
    }

    /// An HTTP client.
    pub fn http(&self) -> awc::Client {
        http_client()
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

    /// The value of an unlabelled series in this hub's `/metrics` (0 when absent).
    pub async fn series(&self, name: &str) -> f64 {
        let mut response = self
            .http()
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body = response.body().limit(1 << 20).await.unwrap();
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Opens a socket with a bearer token.
    pub async fn ws(&self, token: &str) -> WsClient {
        WsClient::connect(&self.ws_url(), token).await
    }

    /// Opens a socket from a prepared request.
    pub async fn ws_request(
        &self,
        request: awc::ws::WebsocketsRequest,
    ) -> Result<WsClient, awc::error::WsClientError> {
        WsClient::open(request).await
    }

    /// Opens a socket with a bearer token once the hub has a slot for it: a closed
    /// socket keeps its slot until the hub has closed its descriptor too, a moment
    /// after the client's end. Panics if no slot frees within 5 s.
    pub async fn ws_once_a_slot_frees(&self, token: &str) -> WsClient {
        for _ in 0..200 {
            let request = self.http().ws(self.ws_url()).bearer_auth(token);
            match WsClient::open(request).await {
                Ok(socket) => return socket,
                Err(awc::error::WsClientError::InvalidResponseStatus(status))
                    if status == 429 || status == 503 =>
                {
                    actix_web::rt::time::sleep(Duration::from_millis(25)).await
                }
                Err(e) => panic!("handshake failed: {e}"),
            }
        }
        panic!("no socket slot freed within 5 s");
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
    pub async fn wait_for_sessions(&self, sessions: usize) -> RegistryStats {
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
