//! A minimal Chrome DevTools Protocol client: launch headless Chromium, open a page,
//! call CDP methods over the page's WebSocket and collect the console events.
//!
//! Why not fantoccini/thirtyfour: they drive the browser through chromedriver (a second
//! process speaking WebDriver) and pull in hyper, TLS and friends, which this slow
//! 2-core build box would compile for four CDP methods. CDP is JSON over a WebSocket,
//! and the test binary already has a WebSocket client (awc) and serde_json.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_codec::Framed;
// awc does not re-export the continuation `Item`; actix-http (the same one) does.
use actix_http::ws::Item;
use awc::{ws, BoxedSocket};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The bound on every single wait: the launch, a CDP reply, a page condition.
pub const WAIT: Duration = Duration::from_secs(15);

/// The browser to drive: `EVENTIDE_TEST_CHROMIUM` (CI sets it), else `chromium` on
/// `PATH`. `Err` says why there is none; a set variable that names no file panics, as
/// that is a broken setup rather than a missing browser.
pub fn find_chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("EVENTIDE_TEST_CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "EVENTIDE_TEST_CHROMIUM={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .ok_or_else(|| {
            "EVENTIDE_TEST_CHROMIUM is unset and there is no `chromium` on PATH \
             (apt-get install chromium)"
                .into()
        })
}

/// A headless Chromium process; dropping it kills the browser and its children.
pub struct Browser {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and waits for its DevTools port.
    pub async fn launch(exe: &Path) -> Browser {
        let dir = tempfile::tempdir().expect("temp dir");
        let profile = dir.path().join("profile");
        let log = File::create(dir.path().join("chromium.log")).expect("log file");
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server", // loopback only, whatever the environment's proxy
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0) // so that Drop can kill the renderers and helpers too
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let mut browser = Browser {
            child,
            port: 0,
            dir,
        };
        // Chromium writes "<port>\n<browser path>" here once DevTools listens: easier
        // than scraping "DevTools listening on ws://..." out of its noisy stderr.
        let deadline = Instant::now() + WAIT;
        browser.port = loop {
            let text = std::fs::read_to_string(profile.join("DevToolsActivePort"));
            if let Some(port) = text.ok().and_then(|t| {
                let mut lines = t.lines();
                let port = lines.next()?.trim().parse().ok()?;
                lines.next()?; // the whole file is written
                Some(port)
            }) {
                break port;
            }
            if let Ok(Some(status)) = browser.child.try_wait() {
                panic!("chromium exited ({status}) early:\n{}", browser.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open DevTools within {WAIT:?}:\n{}",
                browser.log_tail()
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        };
        browser
    }

    /// The last lines of Chromium's stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("dbus")).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Opens a new tab on about:blank and connects to it.
    pub async fn new_page(&self) -> Page {
        let client = awc::Client::builder().timeout(WAIT).finish();
        // PUT: Chromium refuses GET on /json/new.
        let mut response = client
            .put(format!(
                "http://127.0.0.1:{}/json/new?about:blank",
                self.port
            ))
            .send()
            .await
            .expect("DevTools answers /json/new");
        let target: Value = response.json().await.expect("a JSON target");
        let url = target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl in {target}"));
        // No Origin header (awc sends none), so DevTools needs no --remote-allow-origins.
        let (_, framed) = client
            .ws(url)
            .max_frame_size(64 << 20) // screenshots arrive as one base64 text frame
            .connect()
            .await
            .expect("the page's DevTools socket opens");
        Page {
            framed,
            next_id: 0,
            console: Vec::new(),
            exceptions: Vec::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM first: Chromium then shuts down and reaps its zygote, renderer and
        // utility processes (killed outright they would linger as zombies where PID 1
        // does not reap). SIGKILL the whole process group if it takes too long.
        let pid = self.child.id().to_string();
        let signal = |args: &[&str]| {
            let _ = Command::new("kill")
                .args(args)
                .stderr(Stdio::null())
                .status();
        };
        signal(&["-TERM", &pid]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&["-KILL", "--", &format!("-{pid}")]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab's DevTools session.
pub struct Page {
    framed: Framed<BoxedSocket, ws::Codec>,
    next_id: u64,
    /// `Runtime.consoleAPICalled` event params seen so far (after `Runtime.enable`).
    pub console: Vec<Value>,
    /// `Runtime.exceptionThrown` event params seen so far: uncaught page errors.
    pub exceptions: Vec<Value>,
}

impl Page {
    /// Calls a CDP method and returns its result; `Err` is the protocol's error.
    /// Events that arrive meanwhile are recorded. Panics when no reply comes in time.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.framed
            .send(ws::Message::Text(ByteString::from(request.to_string())))
            .await
            .unwrap_or_else(|e| panic!("cannot send {method}: {e}"));
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.next_message(deadline).await.unwrap_or_else(|| {
                panic!("no reply to {method} within {WAIT:?}");
            });
            if message["id"] == id {
                return match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
            }
            match message["method"].as_str() {
                Some("Runtime.consoleAPICalled") => self.console.push(message["params"].clone()),
                Some("Runtime.exceptionThrown") => self.exceptions.push(message["params"].clone()),
                _ => {}
            }
        }
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its value as
    /// JSON; `Err` describes a thrown exception or a protocol error (for instance while
    /// a navigation replaces the document).
    pub async fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self
            .call("Runtime.evaluate", params)
            .await
            .map_err(|e| e.to_string())?;
        match result.get("exceptionDetails") {
            Some(details) => Err(details.to_string()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Polls `expression` until `done` accepts its value; on timeout returns the last
    /// value (or error) seen.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.eval(expression).await;
            match &last {
                Ok(value) if done(value) => return Ok(value.clone()),
                _ if Instant::now() >= deadline => {
                    return Err(match last {
                        Ok(value) => value.to_string(),
                        Err(error) => format!("error: {error}"),
                    })
                }
                _ => actix_web::rt::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot_png(&mut self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await
            .expect("Page.captureScreenshot");
        base64_decode(shot["data"].as_str().expect("base64 data"))
    }

    /// The next JSON message, or `None` at the deadline. Panics if the socket ends.
    async fn next_message(&mut self, deadline: Instant) -> Option<Value> {
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = actix_web::rt::time::timeout(left, self.framed.next())
                .await
                .ok()?;
            let text = match frame {
                Some(Ok(ws::Frame::Text(bytes))) => bytes.to_vec(),
                Some(Ok(ws::Frame::Continuation(item))) => match item {
                    Item::FirstText(b) | Item::Continue(b) => {
                        partial.extend_from_slice(&b);
                        continue;
                    }
                    Item::Last(b) => {
                        partial.extend_from_slice(&b);
                        std::mem::take(&mut partial)
                    }
                    Item::FirstBinary(_) => continue,
                },
                Some(Ok(ws::Frame::Ping(payload))) => {
                    let _ = self.framed.send(ws::Message::Pong(payload)).await;
                    continue;
                }
                Some(Ok(ws::Frame::Close(reason))) => {
                    panic!("DevTools closed the page: {reason:?}")
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("DevTools socket failed: {e}"),
                None => panic!("DevTools socket ended"),
            };
            return Some(serde_json::from_slice(&text).expect("DevTools sends JSON"));
        }
    }
}

/// Standard base64 (with padding), as CDP sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => panic!("not base64: {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
