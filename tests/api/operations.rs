//! Operations under abuse: a flood of `/readyz` shares a few probes and leaves REST
//! and joins working; `EVENTIDE_METRICS_LOOPBACK_OPEN=false` makes `/metrics` ask
//! loopback callers for an admin token too.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::*;
use crate::lifecycle::HubProcess;

#[actix_web::test]
async fn a_readyz_flood_shares_a_few_probes_and_rest_and_joins_keep_working() {
    const TASKS: usize = 50;
    const PER_TASK: usize = 40;
    let app = TestApp::builder().spawn().await;
    app.create_slot(4, 0).await;
    let before = app.series("eventide_readiness_probes_total").await;

    let started = Instant::now();
    let flood = join_all((0..TASKS).map(|_| async {
        let client = app.http();
        let mut statuses = Vec::with_capacity(PER_TASK);
        for _ in 0..PER_TASK {
            let response = client.get(format!("{}/readyz", app.address)).send().await;
            statuses.push(response.map(|r| r.status().as_u16()).unwrap_or(0));
        }
        statuses
    }));
    // Meanwhile: REST reads and writes, and a socket joining rooms.
    let work = async {
        let mut socket = app.ws(&admin()).await;
        for n in 0..20 {
            let (status, body) = app.get("/api/providers/4/availability", &admin()).await;
            assert_eq!(status, 200, "{body}");
            let (status, body) = app
                .post(
                    "/api/providers/4/availability",
                    &admin(),
                    &slot_at(60 * (n + 1)),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            socket.join(&format!("room-{n}"), None).await;
        }
    };
    let (statuses, ()) = tokio::join!(flood, work);
    let elapsed = started.elapsed();

    let statuses: Vec<u16> = statuses.into_iter().flatten().collect();
    assert_eq!(statuses.len(), TASKS * PER_TASK);
    assert!(statuses.iter().all(|s| *s == 200), "{:?}", &statuses[..20]);
    // One probe at a time, each answering for about a second: a handful of probes
    // served thousands of calls.
    let probes = app.series("eventide_readiness_probes_total").await - before;
    assert!(probes >= 1.0);
    assert!(
        probes <= elapsed.as_secs_f64().ceil() + 2.0,
        "{probes} probes for {} calls in {elapsed:?}",
        statuses.len()
    );
}

#[actix_web::test]
async fn readiness_is_cached_for_about_a_second_only() {
    let app = TestApp::builder().spawn().await;
    let before = app.series("eventide_readiness_probes_total").await;
    for _ in 0..5 {
        assert_eq!(app.call("GET", "/readyz", None, None).await.0, 200);
    }
    let burst = app.series("eventide_readiness_probes_total").await - before;
    assert!(burst <= 2.0, "{burst} probes for 5 calls in a row");
    // Past the cache, a call probes again.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.call("GET", "/readyz", None, None).await.0, 200);
    let after = app.series("eventide_readiness_probes_total").await - before;
    assert_eq!(after, burst + 1.0);
}

#[actix_web::test]
async fn metrics_need_an_admin_token_from_loopback_when_the_exemption_is_off() {
    let app = TestApp::builder()
        .configure(|s| s.metrics_loopback_open = false)
        .spawn()
        .await;
    assert_eq!(app.call("GET", "/metrics", None, None).await.0, 401);
    let status = |token: String| {
        let request = app
            .http()
            .get(format!("{}/metrics", app.address))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(provider(1)).await, 403);
    assert_eq!(status(service()).await, 403);
    assert_eq!(status(admin()).await, 200);

    // The default keeps loopback open.
    let open = TestApp::builder().spawn().await;
    assert_eq!(open.series("eventide_ws_connections").await, 0.0);
}

#[actix_web::test]
async fn the_variable_turns_the_exemption_off_in_the_binary() {
    for (value, expected) in [("false", 401), ("true", 200), ("0", 401)] {
        let hub = HubProcess::start(&[("EVENTIDE_METRICS_LOOPBACK_OPEN", value)]);
        let response = awc::Client::new()
            .get(format!("http://127.0.0.1:{}/metrics", hub.port))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{value}");
    }
}
