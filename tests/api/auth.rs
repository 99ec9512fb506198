//! Tokens and origins: every refused token case at the handshake and on REST, the
//! ways a browser may present its token, the origin allowlist, and RS256/ES256.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::*;

fn unsigned(claims: &Value) -> String {
    use base64_like::encode_url;
    format!(
        "{}.{}.",
        encode_url(br#"{"alg":"none","typ":"JWT"}"#),
        encode_url(claims.to_string().as_bytes())
    )
}

/// Base64url without padding, enough to forge an `alg: none` token.
mod base64_like {
    pub fn encode_url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

fn rsa_token(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa-private.pem")).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn ec_token(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(include_bytes!("../fixtures/ec-private.pem")).unwrap();
    encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

fn valid_claims() -> Value {
    json!({"sub": "u1", "role": "admin", "exp": now() + 600})
}

fn bad_tokens() -> Vec<(&'static str, String)> {
    let exp = now() + 600;
    let with = |patch: Value| {
        let mut c = valid_claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        sign(&c)
    };
    vec![
        ("garbage", "not-a-token".into()),
        ("alg none", unsigned(&valid_claims())),
        ("other family (RS256)", rsa_token(&valid_claims())),
        ("bad signature", {
            let key = EncodingKey::from_secret(b"another secret");
            encode(&Header::default(), &valid_claims(), &key).unwrap()
        }),
        ("HS384 with the right secret", {
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            encode(&Header::new(Algorithm::HS384), &valid_claims(), &key).unwrap()
        }),
        ("expired", with(json!({"exp": now() - 60}))),
        ("missing exp", with(json!({"exp": null}))),
        ("exp as string", with(json!({"exp": exp.to_string()}))),
        ("missing sub", with(json!({"sub": null}))),
        ("missing role", with(json!({"role": null}))),
        ("unknown role", with(json!({"role": "superuser"}))),
        (
            "provider without providerId",
            with(json!({"role": "provider"})),
        ),
        (
            "provider with string providerId",
            with(json!({"role": "provider", "providerId": "42"})),
        ),
    ]
}

#[actix_web::test]
async fn refused_tokens_get_401_on_rest_and_at_the_handshake() {
    let app = TestApp::builder().spawn().await;
    for (case, token) in bad_tokens() {
        let (status, body) = app.get("/api/providers/1/availability", &token).await;
        assert_eq!(status, 401, "REST accepted {case}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let status = app
            .handshake_status(app.http().ws(app.ws_url()).bearer_auth(&token))
            .await;
        assert_eq!(status, 401, "handshake accepted {case}");
        let url = format!("{}?access_token={token}", app.ws_url());
        assert_eq!(
            app.handshake_status(app.http().ws(url)).await,
            401,
            "query token: {case}"
        );
    }
    // No token at all.
    assert_eq!(app.handshake_status(app.http().ws(app.ws_url())).await, 401);
    // The valid one passes everywhere.
    let good = sign(&valid_claims());
    assert_eq!(app.get("/api/providers/1/availability", &good).await.0, 200);
    assert_eq!(
        app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(&good))
            .await,
        101
    );
}

#[actix_web::test]
async fn browsers_can_send_the_token_in_the_query_or_as_a_subprotocol() {
    let app = TestApp::builder().spawn().await;
    let token = provider(9);
    let mut by_query = app
        .ws_request(
            app.http()
                .ws(format!("{}?access_token={token}", app.ws_url())),
        )
        .await
        .unwrap();
    by_query.join("provider-9", None).await;

    let request = app
        .http()
        .ws(app.ws_url())
        .protocols(["eventide", &format!("bearer.{token}")]);
    let (response, framed) = request.connect().await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "eventide",
        "the hub selects the plain subprotocol, never echoing the token"
    );
    let mut by_protocol = WsClient { framed };
    by_protocol.join("provider-9", None).await;
}

#[actix_web::test]
async fn origins_outside_the_allowlist_are_refused() {
    let app = TestApp::builder().spawn().await;
    let token = admin();
    let ws = |origin: &str| {
        app.http()
            .ws(app.ws_url())
            .bearer_auth(&token)
            .origin(origin)
    };
    assert_eq!(app.handshake_status(ws("http://evil.example")).await, 403);
    assert_eq!(app.handshake_status(ws("http://localhost:8080")).await, 101);
    assert_eq!(app.handshake_status(ws("http://localhost:4200")).await, 101);
    // websocat and services send no Origin.
    assert_eq!(
        app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(&token))
            .await,
        101
    );

    // CORS on REST: the allowed origin is echoed, another is not.
    let preflight = |origin: &'static str| {
        app.http()
            .request(
                awc::http::Method::OPTIONS,
                format!("{}/api/broadcast", app.address),
            )
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ))
            .send()
    };
    let allowed = preflight("http://localhost:4200").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("http://localhost:4200")
    );
    let refused = preflight("http://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[actix_web::test]
async fn rs256_and_es256_with_a_public_key_and_nothing_else() {
    for (key_file, good_token) in [
        ("rsa-public.pem", rsa_token(&valid_claims())),
        ("ec-public.pem", ec_token(&valid_claims())),
    ] {
        let app = TestApp::builder()
            .configure(|s| {
                s.jwt_public_key_file = Some(
                    format!("{}/tests/fixtures/{key_file}", env!("CARGO_MANIFEST_DIR")).into(),
                );
            })
            .spawn()
            .await;
        assert_eq!(
            app.get("/api/providers/1/availability", &good_token)
                .await
                .0,
            200,
            "{key_file}"
        );
        assert_eq!(
            app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(&good_token))
                .await,
            101
        );
        // HS256, even signed with the configured secret, is refused then.
        assert_eq!(
            app.get("/api/providers/1/availability", &admin()).await.0,
            401,
            "{key_file}"
        );
        let other_family = if key_file.starts_with("rsa") {
            ec_token(&valid_claims())
        } else {
            rsa_token(&valid_claims())
        };
        assert_eq!(
            app.get("/api/providers/1/availability", &other_family)
                .await
                .0,
            401,
            "{key_file}"
        );
    }
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = TestApp::builder()
        .configure(|s| {
            s.jwt_issuer = Some("eventide-auth".into());
            s.jwt_audience = Some("eventide-hub".into());
        })
        .spawn()
        .await;
    let mut good = valid_claims();
    good["iss"] = json!("eventide-auth");
    good["aud"] = json!("eventide-hub");
    assert_eq!(
        app.get("/api/providers/1/availability", &sign(&good))
            .await
            .0,
        200
    );
    for (k, v) in [
        ("iss", json!("someone-else")),
        ("aud", json!("another-app")),
        ("iss", Value::Null),
    ] {
        let mut bad = good.clone();
        if v.is_null() {
            bad.as_object_mut().unwrap().remove(k);
        } else {
            bad[k] = v;
        }
        assert_eq!(
            app.get("/api/providers/1/availability", &sign(&bad))
                .await
                .0,
            401,
            "{bad}"
        );
    }
}

#[actix_web::test]
async fn a_generated_secret_is_kept_beside_the_database_and_found_by_token() {
    let app = TestApp::builder()
        .configure(|s| s.jwt_secret = None)
        .spawn()
        .await;
    let secret_file = app.dir.path().join("hub.db.jwt-secret");
    let metadata =
        std::fs::metadata(&secret_file).expect("the secret is stored beside the database");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eventide-hub"))
        .args([
            "token",
            "--role",
            "provider",
            "--provider-id",
            "42",
            "--ttl",
            "10m",
        ])
        .env("DATABASE_URL", &app.settings.database_url)
        .env_remove("EVENTIDE_JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let token = token.trim();
    assert_eq!(token.lines().count(), 1, "the token alone on stdout");
    let (status, _) = app
        .post("/api/providers/42/availability", token, &slot_at(0))
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .post("/api/providers/43/availability", token, &slot_at(0))
        .await;
    assert_eq!(status, 403);
}
