//! The cluster's shared state heals, and tokens are refused where they must be:
//! presence and the per-subject limit come back after Redis restarts empty; a
//! revocation closes the subject's sockets on every node from the database alone; a
//! session registered just after its revocation is closed; `iat` in the future is
//! refused; `/metrics` refuses revoked tokens.
//!
//! The cluster tests run their own `redis-server` (killed, restarted empty, paused)
//! and two nodes on one fresh PostgreSQL database.

use std::time::{Duration, Instant};

use eventide_hub::auth::{Claims, Role};
use serde_json::{json, Value};

use crate::cluster::two_nodes_with;
use crate::helpers::*;

/// What the contract allows for the cluster's shared state to heal.
const HEAL: Duration = Duration::from_secs(5);

/// A client token of subject `sub`, issued at `iat`, that may join `lobby`.
fn token_of(sub: &str, iat: Option<u64>) -> String {
    let mut c: Claims = claims(Role::Client, None);
    c.sub = sub.into();
    c.rooms = vec!["lobby".into()];
    c.iat = iat;
    sign(&c)
}

/// The status of a handshake with `token` (101 on success).
async fn handshake(app: &TestApp, token: &str) -> u16 {
    app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(token))
        .await
}

/// A private Redis and two nodes on it, with at most `per_sub` sockets per subject.
async fn cluster(per_sub: usize) -> (PrivateRedis, TestApp, TestApp) {
    let redis = PrivateRedis::spawn(free_port());
    let (a, b) = two_nodes_with(&redis.url(), |s| {
        s.limits.max_connections_per_sub = per_sub;
    })
    .await;
    (redis, a, b)
}

/// Runs one Redis command against the private server.
fn redis_command(redis: &PrivateRedis, args: &[&str]) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query::<redis::Value>(&mut conn).unwrap();
}

/// The presence of `lobby` seen through `app`, polled until `done` holds or `wait`
/// passes; answers the last one read.
async fn lobby_presence(app: &TestApp, wait: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let (status, body) = app.get("/api/rooms/lobby/presence", &admin()).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sockets joined to `lobby`, one per subject given.
async fn in_lobby(app: &TestApp, subs: &[&str]) -> Vec<WsClient> {
    let mut sockets = Vec::new();
    for sub in subs {
        let mut socket = app.ws(&token_of(sub, Some(now()))).await;
        socket.join("lobby", None).await;
        sockets.push(socket);
    }
    sockets
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL) and redis-server"]
async fn presence_and_the_subject_limit_heal_after_redis_restarts_empty() {
    let (mut redis, a, b) = cluster(3).await;
    let _on_a = in_lobby(&a, &["kim", "kim", "lee"]).await;
    let _on_b = in_lobby(&b, &["max"]).await;
    let everyone = |p: &Value| p["connections"] == 4;
    let before = lobby_presence(&b, HEAL, everyone).await;
    assert!(everyone(&before), "{before}");

    // Redis dies and comes back on its port with nothing: no persistence.
    let port = redis.port;
    redis.stop();
    let redis = PrivateRedis::spawn(port);
    let restarted = Instant::now();
    let healed = lobby_presence(&b, HEAL, everyone).await;
    assert!(
        everyone(&healed),
        "presence through the other node not healed after {:?}: {healed}",
        restarted.elapsed()
    );
    assert_eq!(healed["subs"], json!(["kim", "lee", "max"]));
    assert_eq!(healed["users"], 3);

    // The per-subject limit counts node A's two sockets of kim again: B takes a third
    // and refuses a fourth.
    let kim = token_of("kim", Some(now()));
    let _third = b.ws(&kim).await;
    assert_eq!(handshake(&b, &kim).await, 429);
    drop(redis);
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL) and redis-server"]
async fn a_revocation_made_while_redis_is_down_closes_sockets_on_every_node() {
    let (mut redis, a, b) = cluster(10).await;
    let token = token_of("ned", Some(now() - 5));
    let mut on_a = a.ws(&token).await;
    let mut on_b = b.ws(&token).await;
    let mut bystander = b.ws(&token_of("ola", Some(now()))).await;
    redis.stop();

    let revoke = json!({"revokeTokens": true});
    let (status, reply) = a.post("/api/users/ned/disconnect", &admin(), &revoke).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(on_a.ending(HEAL).await, Ending::Close(4003));
    // Node B hears nothing through Redis: it finds the revocation in the database.
    assert_eq!(on_b.ending(HEAL).await, Ending::Close(4003));
    assert_eq!(handshake(&b, &token).await, 401);
    bystander.assert_silent(Duration::from_millis(200)).await;
}

#[actix_web::test]
#[ignore = "needs PostgreSQL (EVENTIDE_TEST_PG_URL) and redis-server"]
async fn a_session_that_registers_after_its_revocation_is_closed() {
    let (redis, a, b) = cluster(10).await;
    // Node B counts A as a peer once it sees A's socket in the lobby.
    let _on_a = in_lobby(&a, &["pia"]).await;
    let seen = lobby_presence(&b, HEAL, |p| p["connections"] == 1).await;
    assert_eq!(seen["connections"], 1, "{seen}");

    // With Redis taking nothing, B's handshake waits (for the per-subject count
    // elsewhere) after it checked the token and before the session registers; the
    // revocation lands on B in that window.
    redis_command(&redis, &["CLIENT", "PAUSE", "3000", "ALL"]);
    let token = token_of("quinn", Some(now() - 5));
    let request = b.http().ws(b.ws_url()).bearer_auth(token);
    let connecting = actix_web::rt::spawn(WsClient::open(request));
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    let revoke = json!({"revokeTokens": true});
    let (status, reply) = b
        .post("/api/users/quinn/disconnect", &admin(), &revoke)
        .await;
    assert_eq!(status, 202, "{reply}");
    match connecting.await.unwrap() {
        // The handshake finished after the revocation: the session is closed at once.
        Ok(mut socket) => assert_eq!(
            socket.ending(Duration::from_secs(2)).await,
            Ending::Close(4003)
        ),
        // The revocation came first after all: the handshake was refused.
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 401)
        }
        Err(e) => panic!("the handshake failed: {e}"),
    }
}

#[actix_web::test]
async fn a_token_issued_in_the_future_is_refused() {
    let app = TestApp::builder().spawn().await;
    let leeway = app.settings.jwt_leeway_secs;
    let path = "/api/providers/1/availability";
    for iat in [now() + leeway + 600, i64::MAX as u64 + 1, u64::MAX] {
        let token = token_of("rex", Some(iat));
        let (status, body) = app.get(path, &token).await;
        assert_eq!(status, 401, "iat {iat}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert_eq!(handshake(&app, &token).await, 401, "iat {iat}");
    }
    // Within the leeway, a clock a little ahead is tolerated.
    let ahead = token_of("rex", Some(now() + leeway / 2));
    assert_eq!(app.get(path, &ahead).await.0, 200);
    assert_eq!(handshake(&app, &ahead).await, 101);
}

/// The status of a scrape of `/metrics` with `token`.
async fn scrape_status(app: &TestApp, token: &str) -> u16 {
    app.http()
        .get(format!("{}/metrics", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn metrics_refuse_a_revoked_admin_token() {
    let app = TestApp::builder()
        .configure(|s| s.metrics_loopback_open = false)
        .spawn()
        .await;
    let mut operator = claims(Role::Admin, None);
    operator.sub = "sam".into();
    operator.iat = Some(now() - 5);
    let old = sign(&operator);
    assert_eq!(scrape_status(&app, &old).await, 200);

    let revoke = json!({"revokeTokens": true});
    let (status, reply) = app
        .post("/api/users/sam/disconnect", &service(), &revoke)
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(scrape_status(&app, &old).await, 401);
    operator.iat = Some(reply["revokedBefore"].as_u64().unwrap() + 1);
    assert_eq!(scrape_status(&app, &sign(&operator)).await, 200);
}
