//! A key-set server the test controls: a plain TCP listener on a thread that answers
//! every request with the current body and status, and counts the requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// What the server answers.
struct State {
    status: u16,
    body: String,
    requests: usize,
}

/// A running key-set server; it stops with the test process.
#[derive(Clone)]
pub struct JwksServer {
    state: Arc<Mutex<State>>,
    pub url: String,
}

/// The fixture set: `rsa-1`, `rsa-2` (RS256), `ec-1` (ES256), `ed-1` (EdDSA).
pub fn fixture_keys(kids: &[&str]) -> Value {
    let all: Value = serde_json::from_str(include_str!("../../fixtures/jwks.json")).unwrap();
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    assert_eq!(keys.len(), kids.len(), "unknown kid among {kids:?}");
    json!({ "keys": keys })
}

impl JwksServer {
    /// Serves the fixture keys `kids`.
    pub fn start(kids: &[&str]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let state = Arc::new(Mutex::new(State {
            status: 200,
            body: fixture_keys(kids).to_string(),
            requests: 0,
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let (status, body) = {
                    let mut state = shared.lock().unwrap();
                    state.requests += 1;
                    (state.status, state.body.clone())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer { state, url }
    }

    /// From now on, serves the fixture keys `kids`, with 200.
    pub fn serve(&self, kids: &[&str]) {
        let mut state = self.state.lock().unwrap();
        state.status = 200;
        state.body = fixture_keys(kids).to_string();
    }

    /// From now on, answers `status` with `body`.
    pub fn answer(&self, status: u16, body: &str) {
        let mut state = self.state.lock().unwrap();
        state.status = status;
        state.body = body.to_owned();
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }
}
