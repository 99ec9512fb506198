//! `EVENTIDE_JWT_JWKS_URL`: tokens verified against a JSON Web Key Set served by a
//! server the test controls (or a file), keys chosen by `kid`, RS256, ES256 and EdDSA
//! accepted, HS256 refused; keys added and removed while the hub runs; a failing
//! server leaves the last good set in force; an unreadable set stops the start.

mod server;

use std::time::{Duration, Instant};

use eventide_hub::auth::Role;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;
use server::{fixture_keys, JwksServer};

const LIST: &str = "/api/providers/1/availability";

/// A private key of the fixtures, by `kid`.
fn signing_key(kid: &str) -> (Algorithm, EncodingKey) {
    let pem = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    match kid {
        "rsa-1" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).unwrap(),
        ),
        "rsa-2" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rsa2-private.pem")).unwrap(),
        ),
        "ec-1" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap(),
        ),
        "ed-1" => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&pem("ed25519-private.pem")).unwrap(),
        ),
        other => panic!("no fixture key {other}"),
    }
}

/// An admin token signed by the fixture key `kid`, naming `header_kid` in its header.
fn token_as(kid: &str, header_kid: Option<&str>) -> String {
    let (algorithm, key) = signing_key(kid);
    let mut header = Header::new(algorithm);
    header.kid = header_kid.map(str::to_owned);
    encode(&header, &claims(Role::Admin, None), &key).unwrap()
}

/// An admin token signed by the fixture key `kid`, naming it.
fn token(kid: &str) -> String {
    token_as(kid, Some(kid))
}

fn hs256_naming(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    header
}

async fn spawn_with_jwks(url: &str, refresh_secs: u64) -> TestApp {
    let url = url.to_owned();
    TestApp::builder()
        .configure(move |s| {
            s.jwt_secret = None;
            s.jwt_jwks_url = Some(url);
            s.jwt_jwks_refresh_secs = refresh_secs;
        })
        .spawn()
        .await
}

/// The status of an authenticated REST read with `token`.
async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.get(LIST, token).await.0
}

/// Waits until a read with `token` answers `status`; panics after `within`.
async fn wait_for_status(app: &TestApp, token: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if status_with(app, token).await == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still not {status} after {within:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn rs256_es256_and_eddsa_verify_by_kid_and_hs256_is_refused() {
    let server = JwksServer::start(&["rsa-1", "ec-1", "ed-1"]);
    let app = spawn_with_jwks(&server.url, 300).await;
    for kid in ["rsa-1", "ec-1", "ed-1"] {
        assert_eq!(status_with(&app, &token(kid)).await, 200, "{kid}");
        let mut socket = app.ws(&token(kid)).await;
        socket.join("lobby", None).await;
    }
    let refused = [
        // HS256, whatever key it names or was signed with.
        sign(&claims(Role::Admin, None)),
        encode(
            &hs256_naming("rsa-1"),
            &claims(Role::Admin, None),
            &EncodingKey::from_secret(include_bytes!("../fixtures/rsa-public.pem")),
        )
        .unwrap(),
        // A key of the set, named by another key's kid (other algorithm, other key).
        token_as("rsa-1", Some("ec-1")),
        token_as("ec-1", Some("rsa-1")),
        token_as("rsa-2", Some("rsa-1")),
        // No kid.
        token_as("rsa-1", None),
    ];
    for token in &refused {
        let (status, body) = app.get(LIST, token).await;
        assert_eq!(status, 401, "{body}");
        let request = app.http().ws(app.ws_url()).bearer_auth(token);
        assert_eq!(app.handshake_status(request).await, 401);
    }
}

#[actix_web::test]
async fn a_key_added_verifies_on_first_use_and_unknown_kids_cannot_flood_the_server() {
    // A long interval: only unknown kids can make the hub read the set again.
    let server = JwksServer::start(&["rsa-1"]);
    let app = spawn_with_jwks(&server.url, 300).await;
    assert_eq!(server.requests(), 1, "read once at start");
    assert_eq!(status_with(&app, &token("rsa-1")).await, 200);

    server.serve(&["rsa-1", "rsa-2"]);
    // The first use of the new kid makes the hub read the set, and waits for it.
    assert_eq!(status_with(&app, &token("rsa-2")).await, 200);
    assert_eq!(server.requests(), 2);
    assert_eq!(app.series("eventide_jwks_refreshes_total").await, 1.0);

    // Made-up kids: one read per 10 s at most, however many tokens name them.
    for n in 0..30 {
        let made_up = token_as("rsa-1", Some(&format!("made-up-{n}")));
        assert_eq!(status_with(&app, &made_up).await, 401);
    }
    assert!(server.requests() <= 3, "{} reads", server.requests());

    // A key added now verifies within 10 s, once the next unknown-kid read is allowed.
    server.serve(&["rsa-1", "rsa-2", "ec-1"]);
    let took = wait_for_status(&app, &token("ec-1"), 200, Duration::from_secs(15)).await;
    assert!(took <= Duration::from_secs(12), "took {took:?}");
}

#[actix_web::test]
async fn a_removed_key_stops_verifying_at_the_next_read() {
    let server = JwksServer::start(&["rsa-1", "rsa-2"]);
    let app = spawn_with_jwks(&server.url, 1).await;
    assert_eq!(status_with(&app, &token("rsa-1")).await, 200);
    server.serve(&["rsa-2"]);
    wait_for_status(&app, &token("rsa-1"), 401, Duration::from_secs(10)).await;
    assert_eq!(status_with(&app, &token("rsa-2")).await, 200);
    // An open socket cannot be opened again with the removed key.
    let request = app.http().ws(app.ws_url()).bearer_auth(token("rsa-1"));
    assert_eq!(app.handshake_status(request).await, 401);
}

#[actix_web::test]
async fn a_failing_server_leaves_the_last_good_set_and_readiness() {
    let server = JwksServer::start(&["rsa-1"]);
    let app = spawn_with_jwks(&server.url, 1).await;
    for (status, body) in [(500, "oops"), (200, "not json"), (200, r#"{"keys": []}"#)] {
        server.answer(status, body);
        let failures = app.series("eventide_jwks_refresh_failures_total").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while app.series("eventide_jwks_refresh_failures_total").await < failures + 1.0 {
            assert!(
                Instant::now() < deadline,
                "no failed read counted for {status} {body}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            status_with(&app, &token("rsa-1")).await,
            200,
            "{status} {body}"
        );
        let (ready, report) = app.call("GET", "/readyz", None, None).await;
        assert_eq!(ready, 200, "{report}");
    }
    // Back to a good set: it is read again and used.
    server.serve(&["rsa-2"]);
    wait_for_status(&app, &token("rsa-2"), 200, Duration::from_secs(10)).await;
}

#[actix_web::test]
async fn a_set_is_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, fixture_keys(&["ec-1"]).to_string()).unwrap();
    let app = spawn_with_jwks(&format!("file://{}", path.display()), 1).await;
    assert_eq!(status_with(&app, &token("ec-1")).await, 200);
    assert_eq!(status_with(&app, &token("rsa-1")).await, 401);

    std::fs::write(&path, fixture_keys(&["rsa-1"]).to_string()).unwrap();
    wait_for_status(&app, &token("rsa-1"), 200, Duration::from_secs(10)).await;
    wait_for_status(&app, &token("ec-1"), 401, Duration::from_secs(10)).await;

    // The file gone: the last good set stays.
    std::fs::remove_file(&path).unwrap();
    let failures = app.series("eventide_jwks_refresh_failures_total").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.series("eventide_jwks_refresh_failures_total").await <= failures {
        assert!(Instant::now() < deadline, "no failed read counted");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status_with(&app, &token("rsa-1")).await, 200);
}

/// Runs the real binary with a JWKS URL; returns its exit status and stderr.
fn start_binary_with_jwks(url: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eventide-hub"))
        .env_clear()
        .env("EVENTIDE_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/hub.db", dir.path().display()),
        )
        .env("EVENTIDE_JWT_JWKS_URL", url)
        .output()
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unreadable_set_at_start_stops_the_hub_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let only_secrets = dir.path().join("oct.json");
    let oct = json!({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]});
    std::fs::write(&only_secrets, oct.to_string()).unwrap();
    let closed = format!("http://127.0.0.1:{}/jwks.json", free_port());
    let closed_tls = format!("https://127.0.0.1:{}/jwks.json", free_port());
    let cases = [
        closed,
        closed_tls,
        format!("file://{}/missing.json", dir.path().display()),
        format!("file://{}", only_secrets.display()),
        "ftp://example.com/jwks.json".to_owned(),
    ];
    for url in cases {
        let (status, stderr) = start_binary_with_jwks(&url);
        assert!(!status.success(), "{url}: started; stderr: {stderr}");
        assert!(stderr.contains("EVENTIDE_JWT_JWKS_URL"), "{url}: {stderr}");
        assert!(!stderr.contains("listening on"), "{url}: {stderr}");
    }
}
