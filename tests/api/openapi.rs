//! The OpenAPI document at `/api/openapi.json` describes exactly the routes the hub
//! registers (`server::endpoints`, the one route table), each with the statuses it
//! answers, and the bodies the real hub sends fit the documented schemas.

use std::collections::BTreeSet;

use eventide_hub::server::endpoints;
use serde_json::{json, Value};

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    // No token: the document is public.
    let (status, doc) = app.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    doc
}

/// (method, path) of every documented operation.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[actix_web::test]
async fn the_document_lists_exactly_the_routes_the_hub_serves() {
    let app = TestApp::builder().spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let registered: BTreeSet<(String, String)> = endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    assert_eq!(documented(&doc), registered);
    // And each registered route really is served: nothing answers 404 or 405.
    for endpoint in endpoints() {
        let path = endpoint
            .path
            .replace("{providerId}", "1")
            .replace("{id}", "1")
            .replace("{room}", "lobby");
        let answer = raw(&app, endpoint.method.as_str(), &path, None, Some("{}")).await;
        assert!(
            ![404, 405].contains(&answer.status),
            "{} {path}: {}",
            endpoint.method,
            answer.status
        );
    }
}

#[actix_web::test]
async fn every_operation_documents_the_statuses_it_answers() {
    let app = TestApp::builder().spawn().await;
    let doc = document(&app).await;
    let expected: &[(&str, &str, &[u16])] = &[
        ("GET", "/", &[200]),
        ("GET", "/eventide.js", &[200]),
        ("GET", "/eventide.min.js", &[200]),
        ("GET", "/ws", &[101, 400, 401, 403, 429]),
        ("GET", "/healthz", &[200]),
        ("GET", "/readyz", &[200, 503]),
        ("GET", "/metrics", &[200, 401, 403]),
        ("GET", "/api/openapi.json", &[200]),
        (
            "GET",
            "/api/providers/{providerId}/availability",
            &[200, 400, 401, 422, 503],
        ),
        (
            "POST",
            "/api/providers/{providerId}/availability",
            &[201, 400, 401, 403, 409, 413, 422, 503],
        ),
        ("GET", "/api/availability/{id}", &[200, 400, 401, 404, 503]),
        (
            "PATCH",
            "/api/availability/{id}",
            &[200, 400, 401, 403, 404, 409, 413, 422, 503],
        ),
        (
            "DELETE",
            "/api/availability/{id}",
            &[204, 400, 401, 403, 404, 503],
        ),
        (
            "POST",
            "/api/rooms/{room}/events",
            &[202, 400, 401, 403, 413, 422, 503],
        ),
        (
            "POST",
            "/api/broadcast",
            &[202, 400, 401, 403, 413, 422, 503],
        ),
        ("GET", "/api/rooms/{room}/presence", &[200, 400, 401, 403]),
        (
            "POST",
            "/api/users/{sub}/events",
            &[202, 400, 401, 403, 413, 422, 503],
        ),
        (
            "POST",
            "/api/users/{sub}/disconnect",
            &[202, 400, 401, 403, 413, 422, 503],
        ),
    ];
    assert_eq!(expected.len(), endpoints().len());
    for (method, path, statuses) in expected {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let documented: BTreeSet<u16> = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"))
            .keys()
            .map(|s| s.parse().unwrap())
            .collect();
        let wanted: BTreeSet<u16> = statuses.iter().copied().collect();
        assert_eq!(documented, wanted, "{method} {path}");
        // Authenticated operations say so; every error has the error body.
        if path.starts_with("/api/") && *path != "/api/openapi.json" {
            assert_eq!(operation["security"], json!([{"bearer": []}]), "{path}");
        }
        // `/readyz` answers 503 with its own body, which says what is down.
        for status in statuses.iter().filter(|s| **s >= 400 && *path != "/readyz") {
            let schema = &operation["responses"][status.to_string()]["content"]["application/json"]
                ["schema"];
            assert_eq!(
                schema["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
        }
        if ["POST", "PATCH"].contains(method) {
            assert!(
                operation["requestBody"]["content"]["application/json"].is_object(),
                "{method} {path} documents its body"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
}

/// Why `instance` does not fit a schema of the document (whose `$ref`s it resolves).
fn misfits(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("bad schema {schema}: {e}"));
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_fits(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let errors = misfits(doc, schema, instance);
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not fit: {errors:?}"
    );
}

/// A raw response: status, content type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// Calls the hub without interpreting the answer.
async fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .http()
        .request(method, format!("{}{}", app.address, path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = match body {
        Some(body) => {
            request
                .insert_header(("Content-Type", "application/json"))
                .send_body(body.to_owned())
                .await
        }
        None => request.send().await,
    }
    .expect("the hub answers");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.body().limit(4 << 20).await.unwrap().to_vec();
    Answer {
        status: response.status().as_u16(),
        content_type,
        body,
    }
}

/// Calls the hub and checks the answer against the operation `method template`: the
/// status is documented, the content type is the documented one, and a JSON body fits.
async fn check(
    app: &TestApp,
    doc: &Value,
    (method, template): (&str, &str),
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let answer = raw(app, method, path, token, body).await;
    let what = format!("{method} {path} → {}", answer.status);
    let response =
        &doc["paths"][template][method.to_lowercase()]["responses"][answer.status.to_string()];
    assert!(response.is_object(), "{what}: status not documented");
    let content = &response["content"];
    if answer.body.is_empty() {
        assert!(content.is_null(), "{what}: documented a body, sent none");
        return (answer.status, Value::Null);
    }
    let (media_type, media) = content
        .as_object()
        .and_then(|c| c.iter().next())
        .unwrap_or_else(|| panic!("{what}: sent a body, documented none"));
    assert!(
        answer.content_type.starts_with(media_type.as_str()),
        "{what}: sent {}, documented {media_type}",
        answer.content_type
    );
    if media_type != "application/json" {
        return (answer.status, Value::Null);
    }
    let value: Value = serde_json::from_slice(&answer.body).expect("a JSON body");
    assert_fits(doc, &media["schema"], &value, &what);
    (answer.status, value)
}

#[actix_web::test]
async fn real_responses_fit_the_documented_schemas() {
    let app = TestApp::builder().spawn().await;
    let doc = document(&app).await;
    let list = ("GET", "/api/providers/{providerId}/availability");
    let create = ("POST", "/api/providers/{providerId}/availability");
    let get = ("GET", "/api/availability/{id}");
    let patch = ("PATCH", "/api/availability/{id}");
    let delete = ("DELETE", "/api/availability/{id}");
    let emit = ("POST", "/api/rooms/{room}/events");
    let broadcast = ("POST", "/api/broadcast");
    let (admin, service, other) = (admin(), service(), provider(2));
    let (admin, service, other) = (
        Some(admin.as_str()),
        Some(service.as_str()),
        Some(other.as_str()),
    );
    let path = "/api/providers/1/availability";
    let slot = r#"{"startsAt":"2030-01-01T09:00:00Z","endsAt":"2030-01-01T11:30:00+02:00"}"#;

    check(&app, &doc, ("GET", "/"), "/", None, None).await;
    check(
        &app,
        &doc,
        ("GET", "/eventide.js"),
        "/eventide.js",
        None,
        None,
    )
    .await;
    check(
        &app,
        &doc,
        ("GET", "/eventide.min.js"),
        "/eventide.min.js",
        None,
        None,
    )
    .await;
    check(&app, &doc, ("GET", "/healthz"), "/healthz", None, None).await;
    check(&app, &doc, ("GET", "/readyz"), "/readyz", None, None).await;
    check(&app, &doc, ("GET", "/metrics"), "/metrics", None, None).await;
    check(&app, &doc, ("GET", "/ws"), "/ws", None, None).await; // 401
    check(&app, &doc, ("GET", "/ws"), "/ws", admin, None).await; // 400: no upgrade
    check(
        &app,
        &doc,
        ("GET", "/api/openapi.json"),
        "/api/openapi.json",
        None,
        None,
    )
    .await;

    // A provider's first view, then every answer of the slot routes.
    assert_eq!(check(&app, &doc, list, path, admin, None).await.0, 200);
    let (status, created) = check(&app, &doc, create, path, admin, Some(slot)).await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().unwrap();
    // The checks bite: a slot is no error body, and a slot's times must be date-times.
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    assert!(!misfits(&doc, &schema("ErrorBody"), &created).is_empty());
    let mut bad = created.clone();
    bad["startsAt"] = json!("yesterday");
    assert!(!misfits(&doc, &schema("Slot"), &bad).is_empty());
    bad = created.clone();
    bad["colour"] = json!("red");
    assert!(
        !misfits(&doc, &schema("Slot"), &bad).is_empty(),
        "no unknown fields"
    );
    let with_note = r#"{"startsAt":"2030-01-01T10:00:00Z","endsAt":"2030-01-01T10:30:00Z","status":"blocked","note":"lunch"}"#;
    assert_eq!(
        check(&app, &doc, create, path, admin, Some(with_note))
            .await
            .0,
        201
    );
    assert_eq!(
        check(&app, &doc, create, path, admin, Some(slot)).await.0,
        409
    );
    let backwards = r#"{"startsAt":"2030-01-01T09:00:00Z","endsAt":"2030-01-01T08:00:00Z"}"#;
    assert_eq!(
        check(&app, &doc, create, path, admin, Some(backwards))
            .await
            .0,
        422
    );
    // U+0000 cannot be stored by PostgreSQL: refused on every backend, never a 500.
    let nul =
        r#"{"startsAt":"2030-02-01T09:00:00Z","endsAt":"2030-02-01T09:30:00Z","note":"a\u0000b"}"#;
    assert_eq!(
        check(&app, &doc, create, path, admin, Some(nul)).await.0,
        422
    );
    assert_eq!(
        check(&app, &doc, create, path, admin, Some(r#"{"stauts":1}"#))
            .await
            .0,
        422
    );
    assert_eq!(
        check(&app, &doc, create, path, admin, Some("{nope"))
            .await
            .0,
        400
    );
    let huge = format!(r#"{{"note":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(
        check(&app, &doc, create, path, admin, Some(&huge)).await.0,
        413
    );
    assert_eq!(
        check(&app, &doc, create, path, other, Some(slot)).await.0,
        403
    );
    assert_eq!(
        check(&app, &doc, create, path, None, Some(slot)).await.0,
        401
    );
    assert_eq!(
        check(
            &app,
            &doc,
            create,
            "/api/providers/0/availability",
            admin,
            Some(slot)
        )
        .await
        .0,
        400
    );
    let (status, listed) = check(&app, &doc, list, path, other, None).await;
    assert_eq!(
        (status, listed["slots"].as_array().unwrap().len()),
        (200, 2)
    );
    let window = format!("{path}?from=2030-01-01T09:15:00Z&to=2030-01-01T09:45:00Z");
    assert_eq!(check(&app, &doc, list, &window, other, None).await.0, 200);
    let backwards = format!("{path}?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z");
    assert_eq!(
        check(&app, &doc, list, &backwards, other, None).await.0,
        400
    );
    assert_eq!(
        check(&app, &doc, list, &format!("{path}?since=1"), other, None)
            .await
            .0,
        400
    );

    let one = format!("/api/availability/{id}");
    assert_eq!(check(&app, &doc, get, &one, other, None).await.0, 200);
    assert_eq!(
        check(&app, &doc, get, "/api/availability/999", other, None)
            .await
            .0,
        404
    );
    assert_eq!(
        check(&app, &doc, get, "/api/availability/x", other, None)
            .await
            .0,
        400
    );
    assert_eq!(check(&app, &doc, get, &one, None, None).await.0, 401);
    let clear = r#"{"note":null,"status":"booked"}"#;
    assert_eq!(
        check(&app, &doc, patch, &one, service, Some(clear)).await.0,
        200
    );
    assert_eq!(
        check(
            &app,
            &doc,
            patch,
            &one,
            service,
            Some(r#"{"status":"gone"}"#)
        )
        .await
        .0,
        422
    );
    let onto = r#"{"startsAt":"2030-01-01T10:10:00Z","endsAt":"2030-01-01T10:20:00Z"}"#;
    assert_eq!(
        check(&app, &doc, patch, &one, service, Some(onto)).await.0,
        409
    );
    assert_eq!(
        check(&app, &doc, patch, &one, other, Some(clear)).await.0,
        403
    );
    assert_eq!(
        check(
            &app,
            &doc,
            patch,
            "/api/availability/999",
            service,
            Some(clear)
        )
        .await
        .0,
        404
    );
    assert_eq!(check(&app, &doc, delete, &one, other, None).await.0, 403);
    assert_eq!(check(&app, &doc, delete, &one, service, None).await.0, 204);
    assert_eq!(check(&app, &doc, delete, &one, service, None).await.0, 404);

    let event = r#"{"event":"hello","data":{"any":["json",1,null]}}"#;
    assert_eq!(
        check(
            &app,
            &doc,
            emit,
            "/api/rooms/lobby/events",
            service,
            Some(event)
        )
        .await
        .0,
        202
    );
    assert_eq!(
        check(
            &app,
            &doc,
            emit,
            "/api/rooms/bad%20room/events",
            service,
            Some(event)
        )
        .await
        .0,
        400
    );
    assert_eq!(
        check(
            &app,
            &doc,
            emit,
            "/api/rooms/lobby/events",
            other,
            Some(event)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        check(
            &app,
            &doc,
            emit,
            "/api/rooms/lobby/events",
            admin,
            Some(r#"{"event":""}"#)
        )
        .await
        .0,
        422
    );
    assert_eq!(
        check(&app, &doc, broadcast, "/api/broadcast", admin, Some(event))
            .await
            .0,
        202
    );
    assert_eq!(
        check(&app, &doc, broadcast, "/api/broadcast", None, Some(event))
            .await
            .0,
        401
    );
}
