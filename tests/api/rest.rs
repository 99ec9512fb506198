//! The availability REST API: the happy paths, versions, overlap, and every bad input
//! of the contract answered with the right status and never a 500.

use serde_json::{json, Value};

use crate::helpers::*;

async fn slot_lifecycle_bumps_the_version_each_time(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let token = provider(42);
    let (status, empty) = app.get("/api/providers/42/availability", &token).await;
    assert_eq!(status, 200);
    assert_eq!(empty, json!({"providerId": 42, "version": 0, "slots": []}));

    let (status, slot) = app
        .post("/api/providers/42/availability", &token, &json!({
            "startsAt": "2030-01-01T09:00:00Z", "endsAt": "2030-01-01T09:30:00+00:00", "note": "first"
        }))
        .await;
    assert_eq!(status, 201, "{slot}");
    assert_eq!(slot["providerId"], 42);
    assert_eq!(slot["startsAt"], "2030-01-01T09:00:00Z");
    assert_eq!(slot["endsAt"], "2030-01-01T09:30:00Z");
    assert_eq!(slot["status"], "available");
    assert_eq!(slot["note"], "first");
    let id = slot["id"].as_i64().unwrap();

    let (status, fetched) = app.get(&format!("/api/availability/{id}"), &token).await;
    assert_eq!((status, &fetched), (200, &slot));

    let (status, patched) = app
        .patch(
            &format!("/api/availability/{id}"),
            &token,
            &json!({"status": "booked", "note": null}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "booked");
    assert_eq!(patched["note"], Value::Null);
    assert_eq!(patched["startsAt"], slot["startsAt"]);

    let (status, _) = app.delete(&format!("/api/availability/{id}"), &token).await;
    assert_eq!(status, 204);
    let (status, gone) = app.get(&format!("/api/availability/{id}"), &token).await;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["code"], "not_found");

    let (_, list) = app.get("/api/providers/42/availability", &token).await;
    assert_eq!(list["version"], 3);
    assert_eq!(list["slots"], json!([]));
}

async fn list_is_ordered_and_windowed(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    for minute in [120, 0, 60] {
        app.create_slot(7, minute).await;
    }
    let (_, list) = app
        .get("/api/providers/7/availability", &client_with_rooms(&[]))
        .await;
    let starts: Vec<&str> = list["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["startsAt"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2030-01-01T00:00:00Z",
            "2030-01-01T01:00:00Z",
            "2030-01-01T02:00:00Z"
        ]
    );
    assert_eq!(list["version"], 3);

    // [00:30, 01:00) touches the first slot's end only: adjacent, so not selected.
    let (status, window) = app
        .get(
            "/api/providers/7/availability?from=2030-01-01T00:30:00Z&to=2030-01-01T01:15:00Z",
            &admin(),
        )
        .await;
    assert_eq!(status, 200);
    let starts: Vec<&str> = window["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["startsAt"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["2030-01-01T01:00:00Z"]);
}

async fn overlap_is_a_conflict_but_adjacent_and_deleted_slots_are_not(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let first = app.create_slot(1, 0).await;
    let path = "/api/providers/1/availability";
    let (status, err) = app.post(path, &admin(), &slot_at(15)).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "conflict");
    // Adjacent: [00:30, 01:00) after [00:00, 00:30).
    let (status, _) = app.post(path, &admin(), &slot_at(30)).await;
    assert_eq!(status, 201);
    // Another provider is independent.
    let (status, _) = app
        .post("/api/providers/2/availability", &admin(), &slot_at(15))
        .await;
    assert_eq!(status, 201);
    // A patch into a neighbour conflicts too.
    let (status, _) = app
        .patch(
            &format!("/api/availability/{}", first["id"]),
            &admin(),
            &json!({"endsAt": "2030-01-01T00:45:00Z"}),
        )
        .await;
    assert_eq!(status, 409);
    // Deleted slots block nothing.
    app.delete(&format!("/api/availability/{}", first["id"]), &admin())
        .await;
    let (status, _) = app.post(path, &admin(), &slot_at(0)).await;
    assert_eq!(status, 201);
    // The failed attempts did not consume versions: 3 creates + 1 delete + 1 create on provider 1.
    let (_, list) = app.get(path, &admin()).await;
    assert_eq!(list["version"], 4);
}

async fn authorization_per_route(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let slot = app.create_slot(5, 0).await;
    let id = slot["id"].as_i64().unwrap();
    let other = provider(6);
    let client = client_with_rooms(&["provider-*"]);

    for token in [&other, &client] {
        let (status, err) = app
            .post("/api/providers/5/availability", token, &slot_at(60))
            .await;
        assert_eq!(status, 403, "{err}");
        assert_eq!(err["error"]["code"], "forbidden");
        let (status, _) = app
            .patch(
                &format!("/api/availability/{id}"),
                token,
                &json!({"note": "x"}),
            )
            .await;
        assert_eq!(status, 403);
        let (status, _) = app.delete(&format!("/api/availability/{id}"), token).await;
        assert_eq!(status, 403);
        // Reading is open to any valid token.
        let (status, _) = app.get(&format!("/api/availability/{id}"), token).await;
        assert_eq!(status, 200);
    }
    for token in [service(), provider(5)] {
        let (status, _) = app
            .patch(
                &format!("/api/availability/{id}"),
                &token,
                &json!({"note": "ok"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, err) = app
        .call("GET", "/api/providers/5/availability", None, None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["code"], "unauthorized");
}

async fn every_bad_input_gets_its_status_and_never_a_500(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let slot = app.create_slot(3, 0).await;
    let id = slot["id"].as_i64().unwrap();
    let create = "/api/providers/3/availability";
    let admin = admin();
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        // 400: not JSON, bad path or query parameters.
        ("POST", create.into(), Some("{not json".into()), 400),
        ("POST", create.into(), Some("".into()), 400),
        ("POST", create.into(), Some(r#"{"startsAt":"x""#.into()), 400),
        ("POST", "/api/providers/abc/availability".into(), Some(slot_at(100).to_string()), 400),
        ("POST", "/api/providers/-1/availability".into(), Some(slot_at(100).to_string()), 400),
        ("GET", "/api/providers/99999999999999999999/availability".into(), None, 400),
        ("GET", format!("{create}?from=yesterday-ish"), None, 400),
        ("GET", format!("{create}?from=0000-06-01T00:00:00Z"), None, 422),
        ("GET", format!("{create}?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z"), None, 400),
        ("GET", "/api/availability/x".into(), None, 400),
        ("PATCH", "/api/availability/1.5".into(), Some("{}".into()), 400),
        // 404: unknown id or route.
        ("GET", "/api/availability/999".into(), None, 404),
        ("PATCH", "/api/availability/999".into(), Some("{}".into()), 404),
        ("DELETE", "/api/availability/999".into(), None, 404),
        ("GET", "/api/nothing-here".into(), None, 404),
        ("GET", "/nothing".into(), None, 404),
        // 405: a known route with another method.
        ("PUT", create.into(), Some("{}".into()), 405),
        // 422: JSON that does not fit.
        ("POST", create.into(), Some("[]".into()), 422),
        ("POST", create.into(), Some("{}".into()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01T10:00:00Z"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": 5, "endsAt": "2030-01-01T10:00:00Z"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01 10:00", "endsAt": "2030-01-01T10:30:00Z"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01T10:00:00Z", "endsAt": "2030-01-01T10:00:00Z"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01T11:00:00Z", "endsAt": "2030-01-01T10:00:00Z"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01T10:00:00Z", "endsAt": "2030-01-01T10:30:00Z", "status": "maybe"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01T10:00:00Z", "endsAt": "2030-01-01T10:30:00Z", "note": "n".repeat(501)}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-01-01T10:00:00Z", "endsAt": "2030-01-01T10:30:00Z", "extra": 1}).to_string()), 422),
        ("PATCH", format!("/api/availability/{id}"), Some(json!({"endsAt": "2029-01-01T00:00:00Z"}).to_string()), 422),
        // Empty once stored at microsecond precision; a leap second.
        ("POST", create.into(), Some(json!({"startsAt": "2030-03-01T10:00:00Z", "endsAt": "2030-03-01T10:00:00.0000001Z"}).to_string()), 422),
        ("POST", create.into(), Some(json!({"startsAt": "2030-06-30T23:59:60Z", "endsAt": "2030-07-01T00:30:00Z"}).to_string()), 422),
        ("PATCH", format!("/api/availability/{id}"), Some(json!({"startsAt": "2029-12-31T23:59:60Z"}).to_string()), 422),
        ("PATCH", format!("/api/availability/{id}"), Some(json!({"status": 3}).to_string()), 422),
        ("PATCH", format!("/api/availability/{id}"), Some(json!({"note": "é".repeat(501)}).to_string()), 422),
        ("POST", "/api/rooms/lobby/events".into(), Some(json!({"data": 1}).to_string()), 422),
        ("POST", "/api/rooms/lobby/events".into(), Some(json!({"event": ""}).to_string()), 422),
        ("POST", "/api/rooms/provider-3/events".into(), Some(json!({"event": "availabilityUpdated", "data": {}}).to_string()), 422),
        ("POST", "/api/broadcast".into(), Some(json!({"event": "error", "data": {}}).to_string()), 422),
        ("POST", "/api/rooms/bad%20room/events".into(), Some(json!({"event": "x"}).to_string()), 400),
        ("POST", "/api/broadcast".into(), Some("nope".into()), 400),
        // 413: a body over 64 KiB.
        ("POST", create.into(), Some(format!("{{\"note\":\"{}\"}}", "a".repeat(70 * 1024))), 413),
    ];
    for (method, path, body, expected) in cases {
        let (status, value) = app.call(method, &path, Some(&admin), body.as_deref()).await;
        assert_eq!(
            status, expected,
            "{method} {path} {body:?} answered {value}"
        );
        assert!(
            value["error"]["code"].is_string(),
            "{method} {path}: error body {value}"
        );
        assert!(value["error"]["message"].is_string());
    }
    // A note of exactly 500 characters (multi-byte) is fine.
    let (status, _) = app
        .post(create, &admin, &json!({"startsAt": "2030-02-01T10:00:00Z", "endsAt": "2030-02-01T10:30:00Z", "note": "é".repeat(500)}))
        .await;
    assert_eq!(status, 201);
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = TestApp::builder().spawn().await;
    let (status, body) = app.call("GET", "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.call("GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn the_page_and_client_are_served() {
    let app = TestApp::builder().spawn().await;
    for (path, kind, marker) in [
        ("/", "text/html", "<html"),
        (
            "/eventide.js",
            "text/javascript",
            "function connect(options)",
        ),
        // Minified: the names are mangled, the exports are not.
        ("/eventide.min.js", "text/javascript", "as connect}"),
    ] {
        let mut response = app
            .http()
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let body = response.body().limit(1 << 20).await.unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains(marker),
            "{path} lacks {marker}"
        );
    }
}

async fn times_are_kept_to_the_microsecond_on_every_backend(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let (status, slot) = app
        .post(
            "/api/providers/9/availability",
            &admin(),
            &json!({"startsAt": "2030-01-01T09:00:00.123456789+02:00", "endsAt": "2030-01-01T09:30:00.5Z"}),
        )
        .await;
    assert_eq!(status, 201, "{slot}");
    assert_eq!(slot["startsAt"], "2030-01-01T07:00:00.123456Z");
    assert_eq!(slot["endsAt"], "2030-01-01T09:30:00.500Z");
    let (_, fetched) = app
        .get(&format!("/api/availability/{}", slot["id"]), &admin())
        .await;
    assert_eq!(fetched, slot);
}

crate::on_both_backends!(
    times_are_kept_to_the_microsecond_on_every_backend,
    slot_lifecycle_bumps_the_version_each_time,
    list_is_ordered_and_windowed,
    overlap_is_a_conflict_but_adjacent_and_deleted_slots_are_not,
    authorization_per_route,
    every_bad_input_gets_its_status_and_never_a_500,
);
