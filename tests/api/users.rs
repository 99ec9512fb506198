//! Users, presence and the per-subject limit, as services and operators use them: an
//! event to every socket of one subject, disconnecting and revoking a subject, who is
//! in a room — on one node and across nodes.

use std::time::{Duration, Instant};

use eventide_hub::auth::{Claims, Role};
use serde_json::{json, Value};

use crate::cluster::{redis_url, two_nodes_with};
use crate::helpers::*;

/// A client token of subject `sub`, issued at `iat`, that may join `lobby`.
pub(crate) fn token_of(sub: &str, iat: Option<u64>) -> String {
    let mut c: Claims = claims(Role::Client, None);
    c.sub = sub.into();
    c.rooms = vec!["lobby".into()];
    c.iat = iat;
    sign(&c)
}

/// The status of a handshake with `token` (101 on success).
pub(crate) async fn handshake(app: &TestApp, token: &str) -> u16 {
    app.handshake_status(app.http().ws(app.ws_url()).bearer_auth(token))
        .await
}

#[actix_web::test]
async fn an_event_to_a_user_reaches_every_socket_of_that_subject_only() {
    let app = TestApp::builder().spawn().await;
    let mut first = app.ws(&token_of("ann smith", Some(now()))).await;
    let mut second = app.ws(&token_of("ann smith", Some(now()))).await;
    let mut other = app.ws(&token_of("bob", Some(now()))).await;
    let body = json!({"event": "bookingConfirmed", "data": {"id": 7}});
    let (status, reply) = app
        .post("/api/users/ann%20smith/events", &service(), &body)
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        reply,
        json!({"user": "ann smith", "event": "bookingConfirmed"})
    );
    let expected = json!({"event": "bookingConfirmed", "user": "ann smith", "data": {"id": 7}});
    assert_eq!(first.recv().await, expected);
    assert_eq!(second.recv().await, expected);
    other.assert_silent(Duration::from_millis(200)).await;

    let reserved = json!({"event": "joinedRoom", "data": {}});
    let (status, _) = app.post("/api/users/bob/events", &admin(), &reserved).await;
    assert_eq!(status, 422);
    let (status, _) = app.post("/api/users/bob/events", &provider(1), &body).await;
    assert_eq!(status, 403);
    let (status, _) = app.post("/api/users/bob/events", "junk", &body).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn a_disconnect_closes_every_socket_of_the_subject_with_4003() {
    let app = TestApp::builder().spawn().await;
    let token = token_of("carol", Some(now()));
    let mut sockets = vec![app.ws(&token).await, app.ws(&token).await];
    let mut bystander = app.ws(&token_of("dave", Some(now()))).await;
    let body = json!({"revokeTokens": false});
    let (status, reply) = app
        .post("/api/users/carol/disconnect", &admin(), &body)
        .await;
    assert_eq!((status, reply), (202, json!({"user": "carol"})));
    for socket in &mut sockets {
        assert_eq!(
            socket.ending(Duration::from_secs(2)).await,
            Ending::Close(4003)
        );
    }
    // Without revocation the same token connects again.
    assert_eq!(handshake(&app, &token).await, 101);
    bystander.assert_silent(Duration::from_millis(100)).await;
    let (status, _) = app
        .post("/api/users/carol/disconnect", &provider(1), &body)
        .await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn revoked_tokens_are_refused_everywhere_and_after_a_restart() {
    let app = TestApp::builder().spawn().await;
    let issued = now() - 5;
    let old = token_of("erin", Some(issued));
    let no_iat = token_of("erin", None);
    let mut socket = app.ws(&old).await;
    socket.join("lobby", None).await;
    let (status, reply) = app
        .post(
            "/api/users/erin/disconnect",
            &service(),
            &json!({"revokeTokens": true}),
        )
        .await;
    assert_eq!(status, 202);
    let revoked_before = reply["revokedBefore"]
        .as_u64()
        .expect("the revocation second");
    assert!(revoked_before >= issued);
    assert_eq!(
        socket.ending(Duration::from_secs(2)).await,
        Ending::Close(4003)
    );

    let later = token_of("erin", Some(revoked_before + 1));
    refuses_revoked(&app, &old, &no_iat, &later).await;
    // refreshToken to a revoked token is refused on a socket of a later one.
    let mut fresh = app.ws(&later).await;
    fresh
        .send(json!({"event": "refreshToken", "data": {"token": old}, "ref": "r"}))
        .await;
    let reply: Value = fresh.recv().await;
    assert_eq!(reply["data"]["code"], "unauthorized", "{reply}");

    // A restart (a new process on the same database) still refuses them.
    let restarted = TestApp::builder().same_data_as(&app).spawn().await;
    refuses_revoked(&restarted, &old, &no_iat, &later).await;
}

/// Old tokens and tokens without `iat` are refused at the handshake and on REST;
/// later tokens work.
async fn refuses_revoked(app: &TestApp, old: &str, no_iat: &str, later: &str) {
    assert_eq!(handshake(app, old).await, 401);
    assert_eq!(handshake(app, no_iat).await, 401);
    assert_eq!(app.get("/api/providers/1/availability", old).await.0, 401);
    assert_eq!(app.get("/api/providers/1/availability", later).await.0, 200);
    assert_eq!(handshake(app, later).await, 101);
}

#[actix_web::test]
async fn presence_counts_sockets_and_subjects_and_shows_subjects_to_operators_only() {
    let app = TestApp::builder().spawn().await;
    let mut sockets = Vec::new();
    for sub in ["ann", "ann", "bob"] {
        let mut socket = app.ws(&token_of(sub, Some(now()))).await;
        socket.join("lobby", None).await;
        sockets.push(socket);
    }
    let (status, body) = app.get("/api/rooms/lobby/presence", &admin()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"room": "lobby", "connections": 3, "users": 2, "subs": ["ann", "bob"]})
    );
    let (status, body) = app
        .get("/api/rooms/lobby/presence", &token_of("x", None))
        .await;
    assert_eq!(status, 200);
    assert!(body.get("subs").is_none(), "{body}");
    let (status, _) = app
        .get("/api/rooms/other/presence", &token_of("x", None))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.get("/api/rooms/bad%20room/presence", &admin()).await;
    assert_eq!(status, 400);

    let bob = sockets.pop().unwrap();
    bob.close().await;
    app.wait_for_sessions(2).await;
    let (_, body) = app.get("/api/rooms/lobby/presence", &admin()).await;
    assert_eq!(
        (body["connections"].clone(), body["users"].clone()),
        (json!(2), json!(1))
    );
}

/// Polls `path` on `app` until `done` holds, for at most `wait`.
pub(crate) async fn eventually(
    app: &TestApp,
    path: &str,
    wait: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + wait;
    loop {
        let (_, body) = app.get(path, &admin()).await;
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn users_disconnects_and_presence_hold_across_nodes() {
    let (a, b) = two_nodes_with(&redis_url(), |_| {}).await;
    let token = token_of("fay", Some(now() - 5));
    let mut on_a = a.ws(&token).await;
    let mut on_b = b.ws(&token).await;
    on_a.join("lobby", None).await;
    on_b.join("lobby", None).await;
    let mut watcher = b.ws(&token_of("gus", Some(now()))).await;
    watcher.join("lobby", None).await;

    // Presence over both nodes within 2 s.
    let presence = eventually(
        &a,
        "/api/rooms/lobby/presence",
        Duration::from_secs(2),
        |p| p["connections"] == 3,
    )
    .await;
    assert_eq!(presence["users"], 2, "{presence}");
    assert_eq!(presence["subs"], json!(["fay", "gus"]));

    let body = json!({"event": "note", "data": 1});
    assert_eq!(
        b.post("/api/users/fay/events", &service(), &body).await.0,
        202
    );
    for socket in [&mut on_a, &mut on_b] {
        assert_eq!(socket.recv().await["user"], "fay");
    }
    watcher.assert_silent(Duration::from_millis(200)).await;

    let revoke = json!({"revokeTokens": true});
    assert_eq!(
        b.post("/api/users/fay/disconnect", &admin(), &revoke)
            .await
            .0,
        202
    );
    for socket in [&mut on_a, &mut on_b] {
        assert_eq!(
            socket.ending(Duration::from_secs(2)).await,
            Ending::Close(4003)
        );
    }
    assert_eq!(handshake(&a, &token).await, 401);
    let presence = eventually(
        &a,
        "/api/rooms/lobby/presence",
        Duration::from_secs(2),
        |p| p["connections"] == 1,
    )
    .await;
    assert_eq!(presence["subs"], json!(["gus"]));
}

#[actix_web::test]
#[ignore = "needs PostgreSQL and Redis"]
async fn the_per_subject_limit_counts_every_node_and_forgets_a_dead_one() {
    let redis = redis_url();
    let (a, b) = two_nodes_with(&redis, |s| s.limits.max_connections_per_sub = 3).await;
    let token = token_of("hal", Some(now()));
    let _first = a.ws(&token).await;
    let _second = a.ws(&token).await;
    // The census publishes within a second.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let _third = b.ws(&token).await;
    assert_eq!(handshake(&b, &token).await, 429);

    // A node holding sockets dies: its count is forgotten within 30 s.
    let (_, other) = two_nodes_with(&redis, |s| s.limits.max_connections_per_sub = 2).await;
    let max = ("EVENTIDE_MAX_CONNECTIONS_PER_SUB", "2");
    let mut victim = HubProcess::start(&[
        ("DATABASE_URL", other.settings.database_url.as_str()),
        ("EVENTIDE_REDIS_URL", redis.as_str()),
        (
            "EVENTIDE_REDIS_PREFIX",
            other.settings.redis_prefix.as_str(),
        ),
        max,
    ]);
    let token = token_of("ida", Some(now()));
    let _one = victim.ws(&token).await;
    let _two = victim.ws(&token).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(handshake(&other, &token).await, 429);
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match handshake(&other, &token).await {
            101 => break,
            429 if Instant::now() < deadline => {
                actix_web::rt::time::sleep(Duration::from_millis(500)).await
            }
            status => panic!("the dead node still counts after 30 s ({status})"),
        }
    }
}
