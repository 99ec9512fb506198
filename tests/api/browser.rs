//! End to end in a real browser (`docs/protocol.md` §5): Debian's headless Chromium loads
//! the hub's page, which connects, joins a provider's room and then follows every REST
//! change live, across a hub restart, without losing an update; every frame shows in
//! the log panel and the browser console. Skipped when no Chromium is installed.
//!
//! `EVENTIDE_SCREENSHOT=1 cargo test --test api browser` also refreshes
//! docs/screenshot.png; otherwise the screenshot goes to a temp dir.

mod cdp;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;
use cdp::{Browser, Page, WAIT};

const PROVIDER: i64 = 42;
const LIST: &str = "/api/providers/42/availability";

/// What the page shows, as JSON: the badge, the version, the rows as `[id, status]` by
/// id, and the error banner (`null` when hidden).
const PAGE_VIEW: &str = r#"(() => {
  const $ = (sel) => document.querySelector(sel);
  const error = $('#error');
  return {
    state: $('#state')?.dataset.state ?? null,
    version: $('#version')?.textContent ?? null,
    rows: [...document.querySelectorAll('#slots tr[data-slot-id]')]
      .map((tr) => [Number(tr.dataset.slotId), tr.dataset.status])
      .sort((a, b) => a[0] - b[0]),
    error: !error || error.hidden ? null : error.textContent,
  };
})()"#;

/// For failure messages: the page's view, its JS state and the newest log lines.
const PAGE_DIAGNOSIS: &str = r#"JSON.stringify({
  url: location.href,
  room: window.eventide?.room,
  version: window.eventide?.version,
  clientState: window.eventide?.client?.state,
  rooms: window.eventide?.client ? [...window.eventide.client.rooms] : null,
  log: [...document.querySelectorAll('#log li')].slice(0, 15).map((li) => li.textContent),
}, null, 1)"#;

/// Creates a slot for provider 42 over REST, with a status and a note.
async fn create(app: &TestApp, minute: i64, status: &str, note: &str) -> i64 {
    let mut body = slot_at(minute);
    body["status"] = json!(status);
    body["note"] = json!(note);
    let (code, slot) = app.post(LIST, &provider(PROVIDER), &body).await;
    assert_eq!(code, 201, "create failed: {slot}");
    slot["id"].as_i64().unwrap()
}

async fn diagnose(page: &mut Page, browser: &Browser) -> String {
    let state = page
        .eval(PAGE_DIAGNOSIS)
        .await
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|e| format!("(cannot read the page: {e})"));
    format!(
        "page: {state}\nuncaught exceptions: {:?}\nchromium log tail:\n{}",
        page.exceptions,
        browser.log_tail()
    )
}

/// Waits until the page shows exactly what REST's GET returns: the same slots with the
/// same statuses, the same version, state live and no error.
async fn page_matches_rest(
    app: &TestApp,
    page: &mut Page,
    browser: &Browser,
    timeout: Duration,
    step: &str,
) -> Value {
    let (code, list) = app.get(LIST, &provider(PROVIDER)).await;
    assert_eq!(code, 200, "{list}");
    let mut rows: Vec<(i64, String)> = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    let expected = json!({
        "state": "live",
        "version": list["version"].to_string(),
        "rows": rows,
        "error": null,
    });
    if let Err(last) = page.wait_for(PAGE_VIEW, timeout, |v| *v == expected).await {
        panic!(
            "{step}: the page did not match REST within {timeout:?}\n expected {expected}\n \
             page shows {last}\n{}",
            diagnose(page, browser).await
        );
    }
    list
}

/// Waits for a JS condition; panics with a diagnosis on timeout.
async fn wait_until(page: &mut Page, browser: &Browser, timeout: Duration, what: &str, js: &str) {
    if let Err(last) = page.wait_for(js, timeout, |v| *v == json!(true)).await {
        panic!(
            "timed out after {timeout:?} waiting for {what} (last: {last})\n{}",
            diagnose(page, browser).await
        );
    }
}

/// Counts the log panel's lines of a kind (`in`, `out`, `sys`, `http`) that contain `text`.
async fn log_lines(page: &mut Page, kind: &str, text: &str) -> u64 {
    let js = format!(
        "[...document.querySelectorAll('#log li.{kind}')].filter((li) => li.textContent.includes({})).length",
        json!(text)
    );
    page.eval(&js)
        .await
        .expect("count log lines")
        .as_u64()
        .unwrap()
}

/// A hub on a known port that lets its own page connect, and that port.
async fn page_hub() -> (TestApp, u16) {
    let port = free_port();
    let app = TestApp::builder()
        .configure(|s| {
            s.addr = ([127, 0, 0, 1], port).into();
            // The page's WebSocket handshake carries the page's origin.
            s.allowed_origins = vec![format!("http://127.0.0.1:{port}")];
        })
        .spawn()
        .await;
    (app, port)
}

#[actix_web::test]
#[ignore = "needs Chromium (EVENTIDE_TEST_CHROMIUM or chromium on PATH)"]
async fn the_page_follows_rest_changes_live_and_across_a_restart() {
    let exe = cdp::find_chromium().unwrap_or_else(|reason| panic!("{reason}"));
    let started = Instant::now();
    let (app, port) = page_hub().await;
    // One slot before the page loads: it has to come from the REST snapshot.
    let first = create(&app, 9 * 60, "available", "Intake call").await;

    let browser = Browser::launch(&exe).await;
    let mut page = browser.new_page().await;
    // Console events from here on.
    page.call("Runtime.enable", json!({}))
        .await
        .expect("Runtime.enable");
    // A fixed viewport (a tab's differs from --window-size), for a stable screenshot.
    let viewport = json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false});
    page.call("Emulation.setDeviceMetricsOverride", viewport)
        .await
        .expect("Emulation.setDeviceMetricsOverride");
    let url = format!(
        "{}/?token={}&provider={PROVIDER}&autoconnect=1",
        app.address,
        provider(PROVIDER)
    );
    page.call("Page.navigate", json!({ "url": url }))
        .await
        .expect("Page.navigate");

    // 1. Autoconnect: live, provider-42 joined, the snapshot shown.
    wait_until(
        &mut page,
        &browser,
        WAIT,
        "the page to connect, join provider-42 and load its snapshot",
        "document.querySelector('#state')?.dataset.state === 'live' \
         && window.eventide?.room === 'provider-42' && window.eventide.version !== null \
         && window.eventide.client.rooms.has('provider-42')",
    )
    .await;
    page_matches_rest(&app, &mut page, &browser, WAIT, "snapshot").await;
    assert_eq!(
        page.eval("location.search").await.unwrap(),
        "?provider=42&autoconnect=1",
        "the token is kept out of the address bar"
    );

    // 2. REST changes show up live: a row appears, its status changes, a row goes.
    let second = create(&app, 10 * 60, "available", "Follow-up").await;
    let list = page_matches_rest(&app, &mut page, &browser, WAIT, "after a create").await;
    assert_eq!(list["version"], 2);
    let third = create(&app, 11 * 60, "available", "Lunch slot").await;
    create(&app, 12 * 60, "blocked", "Team meeting").await;
    page_matches_rest(&app, &mut page, &browser, WAIT, "after two creates").await;

    let (code, body) = app
        .patch(
            &format!("/api/availability/{second}"),
            &provider(PROVIDER),
            &json!({"status": "booked"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let view = page_matches_rest(&app, &mut page, &browser, WAIT, "after a PATCH").await;
    assert_eq!(view["version"], 5);
    let row = format!("#slots tr[data-slot-id=\"{second}\"]");
    assert_eq!(
        page.eval(&format!("document.querySelector('{row}').dataset.status"))
            .await
            .unwrap(),
        "booked"
    );

    let (code, body) = app
        .delete(&format!("/api/availability/{third}"), &provider(PROVIDER))
        .await;
    assert_eq!(code, 204, "{body}");
    page_matches_rest(&app, &mut page, &browser, WAIT, "after a DELETE").await;
    assert_eq!(
        page.eval(&format!(
            "document.querySelector('#slots tr[data-slot-id=\"{third}\"]') === null"
        ))
        .await
        .unwrap(),
        true
    );

    // 3. Every frame is logged: in the log panel and in the browser console.
    assert_eq!(log_lines(&mut page, "out", "\"joinRoom\"").await, 1);
    assert_eq!(log_lines(&mut page, "in", "\"joinedRoom\"").await, 1);
    assert_eq!(
        log_lines(&mut page, "in", "\"availabilityUpdated\"").await,
        5
    );
    let console_frames = |page: &Page| {
        page.console
            .iter()
            .filter(|c| c["type"] == "debug" && c["args"][0]["value"] == "[eventide] ⇐")
            .count()
    };
    // joinedRoom + 5 updates (reading the log above drained the events before it).
    assert_eq!(console_frames(&page), 6, "console: {:?}", page.console);

    // 4. Restart the hub on the same port and database; change things straight away,
    // possibly before the page is back. Its rejoin with `since` must replay them.
    app.shutdown.clone().run().await;
    wait_until(
        &mut page,
        &browser,
        WAIT,
        "the page to notice the shutdown",
        "document.querySelector('#state').dataset.state === 'reconnecting' \
         && document.querySelector('#error').textContent.includes('going away')",
    )
    .await;
    assert_eq!(log_lines(&mut page, "sys", "socket closed: 1001").await, 1);
    let deadline = Instant::now() + WAIT;
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} still busy after the shutdown"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let app = TestApp::builder().same_data_as(&app).spawn().await;
    assert_eq!(app.port, port);
    create(&app, 13 * 60, "available", "Added while the page was away").await;
    create(&app, 14 * 60, "booked", "Also missed").await;
    let (code, body) = app
        .patch(
            &format!("/api/availability/{first}"),
            &provider(PROVIDER),
            &json!({"status": "booked"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    // Reconnect backoff is jittered and capped at 15 s, so allow for one full cap.
    let list = page_matches_rest(&app, &mut page, &browser, 2 * WAIT, "after the restart").await;
    assert_eq!(list["version"], 9);
    assert_eq!(list["slots"].as_array().unwrap().len(), 5);
    // It got there by the replay, not by reloading the snapshot.
    assert_eq!(
        log_lines(&mut page, "out", "\"since\":6").await,
        1,
        "rejoined with since"
    );
    assert_eq!(
        log_lines(&mut page, "sys", "resync").await,
        0,
        "no resync needed"
    );
    // A replayed frame may also arrive live (logged, then dropped as a duplicate).
    assert!(log_lines(&mut page, "in", "\"availabilityUpdated\"").await >= 8);
    assert!(
        console_frames(&page) >= 6 + 1 + 3,
        "console: {:?}",
        page.console
    );
    assert!(
        page.exceptions.is_empty(),
        "uncaught: {:?}",
        page.exceptions
    );

    // 5. The screenshot: the live page with its list and log.
    let png = page.screenshot_png().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    let path = if std::env::var_os("EVENTIDE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).expect("docs/");
        docs.join("screenshot.png")
    } else {
        app.dir.path().join("screenshot.png")
    };
    std::fs::write(&path, &png).expect("write the screenshot");
    eprintln!(
        "browser test: screenshot at {} ({} bytes); took {:.1?}",
        path.display(),
        png.len(),
        started.elapsed()
    );
}

#[actix_web::test]
#[ignore = "needs Chromium (EVENTIDE_TEST_CHROMIUM or chromium on PATH)"]
async fn the_page_says_why_the_hub_refused_it() {
    let exe = cdp::find_chromium().unwrap_or_else(|reason| panic!("{reason}"));
    let (app, port) = page_hub().await;
    let browser = Browser::launch(&exe).await;
    // Six refused handshakes with backoff capped at 0.5, 1, 2, 4 and 8 s in between.
    let give_up = 2 * WAIT;
    let failed_with = |text: &str| {
        format!(
            "document.querySelector('#state')?.dataset.state === 'failed' \
             && document.querySelector('#error').textContent.includes({})",
            json!(text)
        )
    };

    // A token the hub refuses (a bad signature), from an allowed origin.
    let mut page = browser.new_page().await;
    let forged = format!("{}x", provider(PROVIDER));
    let url = format!(
        "{}/?token={forged}&provider={PROVIDER}&autoconnect=1",
        app.address
    );
    page.call("Page.navigate", json!({ "url": url }))
        .await
        .expect("Page.navigate");
    wait_until(
        &mut page,
        &browser,
        give_up,
        "the page to report the refused token",
        &failed_with("Token refused"),
    )
    .await;

    // A good token from an origin the hub does not allow (localhost is not 127.0.0.1).
    let mut page = browser.new_page().await;
    let url = format!(
        "http://localhost:{port}/?token={}&provider={PROVIDER}&autoconnect=1",
        provider(PROVIDER)
    );
    page.call("Page.navigate", json!({ "url": url }))
        .await
        .expect("Page.navigate");
    wait_until(
        &mut page,
        &browser,
        give_up,
        "the page to report the refused origin",
        &failed_with(&format!(
            "Origin refused: the hub does not accept WebSockets from http://localhost:{port}"
        )),
    )
    .await;
    assert!(
        page.exceptions.is_empty(),
        "uncaught: {:?}",
        page.exceptions
    );
}

#[actix_web::test]
#[ignore = "needs Chromium (EVENTIDE_TEST_CHROMIUM or chromium on PATH)"]
async fn the_page_is_back_as_soon_as_the_network_returns() {
    let exe = cdp::find_chromium().unwrap_or_else(|reason| panic!("{reason}"));
    let (app, port) = page_hub().await;
    create(&app, 9 * 60, "available", "Before").await;
    let browser = Browser::launch(&exe).await;
    let mut page = browser.new_page().await;
    // Every retry is drawn from [0, 10 min): only the return of the network can bring
    // the page back within the wait below (with a chance of 1 in 40 that it would
    // anyway, so the test cannot fail for a slow retry, only pass for one).
    let url = format!(
        "{}/?token={}&provider={PROVIDER}&autoconnect=1&minBackoffMs=600000&maxBackoffMs=600000",
        app.address,
        provider(PROVIDER)
    );
    page.call("Page.navigate", json!({ "url": url }))
        .await
        .expect("Page.navigate");
    wait_until(
        &mut page,
        &browser,
        WAIT,
        "the page to connect and load its snapshot",
        "document.querySelector('#state')?.dataset.state === 'live' && window.eventide?.version !== null",
    )
    .await;
    page_matches_rest(&app, &mut page, &browser, WAIT, "snapshot").await;

    // The browser goes offline, and the hub restarts meanwhile: the page's socket
    // is gone and its next retry is minutes away.
    let network = |offline: bool| json!({"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1});
    page.call("Network.enable", json!({}))
        .await
        .expect("Network.enable");
    page.call("Network.emulateNetworkConditions", network(true))
        .await
        .expect("offline");
    wait_until(
        &mut page,
        &browser,
        WAIT,
        "the page to see the browser offline",
        "navigator.onLine === false",
    )
    .await;
    app.shutdown.clone().run().await;
    wait_until(
        &mut page,
        &browser,
        WAIT,
        "the page to lose its socket",
        "document.querySelector('#state').dataset.state === 'reconnecting'",
    )
    .await;
    let deadline = Instant::now() + WAIT;
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} still busy");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let app = TestApp::builder().same_data_as(&app).spawn().await;
    create(&app, 10 * 60, "booked", "Made while the page was offline").await;

    // The network returns: the page connects at once and replays what it missed.
    page.call("Network.emulateNetworkConditions", network(false))
        .await
        .expect("online");
    let list = page_matches_rest(
        &app,
        &mut page,
        &browser,
        WAIT,
        "after the network returned",
    )
    .await;
    assert_eq!(list["version"], 2);
    assert_eq!(
        log_lines(&mut page, "out", "\"since\":1").await,
        1,
        "rejoined with since"
    );
    assert_eq!(log_lines(&mut page, "sys", "resync").await, 0);
    assert!(
        page.exceptions.is_empty(),
        "uncaught: {:?}",
        page.exceptions
    );
}
