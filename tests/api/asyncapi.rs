//! `docs/asyncapi.yaml` against the real hub: every frame a real hub sends (each reply,
//! each event, each error code) and every frame the tests send validates against the
//! schema of its message, every message of the document is seen, and the document's
//! own examples fit. The schemas are strict (`additionalProperties: false` on what the
//! hub sends), so a field the hub adds without documenting it fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws;
use futures_util::SinkExt;
use serde_json::{json, Value};

use crate::helpers::*;

/// The document's messages: name → a validator of its payload.
struct AsyncApi {
    doc: Value,
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl AsyncApi {
    fn load() -> AsyncApi {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml");
        let text = std::fs::read_to_string(path).expect("docs/asyncapi.yaml exists");
        let doc: Value = yaml_serde::from_str(&text).expect("docs/asyncapi.yaml is YAML");
        assert_eq!(doc["asyncapi"], "3.0.0");
        let mut validators = BTreeMap::new();
        for (name, message) in doc["components"]["messages"].as_object().unwrap() {
            let mut root = message["payload"].clone();
            root["components"] = doc["components"].clone();
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("the schema of {name} does not compile: {e}"));
            validators.insert(name.clone(), validator);
        }
        AsyncApi { doc, validators }
    }

    fn misfits(&self, message: &str, frame: &Value) -> Vec<String> {
        self.validators
            .get(message)
            .unwrap_or_else(|| panic!("no message {message} in the document"))
            .iter_errors(frame)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    fn assert_fits(&self, message: &str, frame: &Value) {
        let errors = self.misfits(message, frame);
        assert!(
            errors.is_empty(),
            "{frame} is not a valid {message}: {errors:?}"
        );
    }
}

/// The message a frame from the hub is an instance of.
fn message_of(frame: &Value) -> &'static str {
    match frame["event"].as_str() {
        Some("joinedRoom") => "joinedRoom",
        Some("leftRoom") => "leftRoom",
        Some("tokenRefreshed") => "tokenRefreshed",
        Some("pong") => "pong",
        Some("availabilityUpdated") => "availabilityUpdated",
        Some("error") => "error",
        _ if frame.get("room").is_some() => "roomEvent",
        _ if frame.get("user").is_some() => "userEvent",
        _ => "broadcastEvent",
    }
}

/// Collects what the hub sent and what the test sent, validating each as it comes.
struct Recorder {
    api: AsyncApi,
    seen: BTreeSet<String>,
    codes: BTreeSet<String>,
}

impl Recorder {
    /// Sends a client frame after checking it against its message.
    async fn send(&mut self, socket: &mut WsClient, frame: Value) {
        let name = frame["event"].as_str().unwrap().to_owned();
        self.api.assert_fits(&name, &frame);
        self.seen.insert(name);
        socket.send(frame).await;
    }

    /// Receives a frame from the hub and checks it against its message.
    async fn recv(&mut self, socket: &mut WsClient) -> Value {
        let frame = socket.recv().await;
        let message = message_of(&frame);
        self.api.assert_fits(message, &frame);
        self.seen.insert(message.to_owned());
        if message == "error" {
            self.codes
                .insert(frame["data"]["code"].as_str().unwrap().to_owned());
        }
        frame
    }

    /// Receives a frame that must be an `error` with `code`.
    async fn expect_error(&mut self, socket: &mut WsClient, code: &str) -> Value {
        let frame = self.recv(socket).await;
        assert_eq!(frame["data"]["code"], code, "{frame}");
        frame
    }
}

fn join(room: &str, since: Option<i64>, reference: &str) -> Value {
    let mut data = json!({"room": room});
    if let Some(since) = since {
        data["since"] = json!(since);
    }
    json!({"event": "joinRoom", "data": data, "ref": reference})
}

#[actix_web::test]
async fn frames_of_the_real_hub_fit_the_asyncapi_schemas() {
    let app = TestApp::builder()
        .configure(|s| s.limits.max_rooms_per_connection = 2)
        .spawn()
        .await;
    let pool = app.pool.clone();
    let mut r = Recorder {
        api: AsyncApi::load(),
        seen: BTreeSet::new(),
        codes: BTreeSet::new(),
    };

    // A provider watches its room: joinedRoom with a version, then each kind of change.
    let mut owner = app.ws(&provider(1)).await;
    r.send(&mut owner, join("provider-1", None, "j1")).await;
    assert_eq!(
        r.recv(&mut owner).await["data"],
        json!({"room": "provider-1", "version": 0, "epoch": ""})
    );
    let slot = app.create_slot(1, 0).await;
    let one = format!("/api/availability/{}", slot["id"]);
    assert_eq!(
        app.patch(&one, &admin(), &json!({"note": "x"})).await.0,
        200
    );
    assert_eq!(app.delete(&one, &admin()).await.0, 204);
    for action in ["created", "updated", "deleted"] {
        assert_eq!(r.recv(&mut owner).await["data"]["action"], action);
    }

    // Recovery: since 1 replays 2 and 3; a since ahead of the log is not recovered.
    let mut admin_socket = app.ws(&admin()).await;
    r.send(&mut admin_socket, join("provider-1", Some(1), "j2"))
        .await;
    let joined = r.recv(&mut admin_socket).await;
    assert_eq!(joined["data"]["recovered"], true);
    for version in [2, 3] {
        assert_eq!(r.recv(&mut admin_socket).await["data"]["version"], version);
    }
    r.send(&mut admin_socket, join("provider-1", Some(99), "j3"))
        .await;
    assert_eq!(r.recv(&mut admin_socket).await["data"]["recovered"], false);
    // A room without a version, then one room too many.
    r.send(&mut admin_socket, join("lobby", None, "j4")).await;
    assert_eq!(
        r.recv(&mut admin_socket).await["data"],
        json!({"room": "lobby"})
    );
    r.send(&mut admin_socket, join("third", None, "j5")).await;
    r.expect_error(&mut admin_socket, "too_many_rooms").await;

    // Emitted events, with data and without; a broadcast reaches both sockets.
    let emit = |body: Value| {
        let app = &app;
        async move {
            app.post("/api/rooms/lobby/events", &service(), &body)
                .await
                .0
        }
    };
    assert_eq!(
        emit(json!({"event": "hello", "data": {"n": [1, "two", null]}})).await,
        202
    );
    assert_eq!(emit(json!({"event": "ping"})).await, 202);
    assert_eq!(r.recv(&mut admin_socket).await["data"]["n"][1], "two");
    assert_eq!(r.recv(&mut admin_socket).await["data"], Value::Null);
    let (status, _) = app
        .post(
            "/api/broadcast",
            &admin(),
            &json!({"event": "notice", "data": "hi"}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(r.recv(&mut owner).await["event"], "notice");
    assert_eq!(r.recv(&mut admin_socket).await["event"], "notice");
    let (status, _) = app
        .post(
            "/api/users/provider-1/events",
            &service(),
            &json!({"event": "accountNotice", "data": {"plan": "pro"}}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(r.recv(&mut owner).await["user"], "provider-1");

    // Leaving, also a room never joined.
    for room in ["lobby", "never-joined"] {
        r.send(
            &mut admin_socket,
            json!({"event": "leaveRoom", "data": {"room": room}, "ref": "l"}),
        )
        .await;
        assert_eq!(r.recv(&mut admin_socket).await["data"]["room"], room);
    }

    // Token refresh: the same identity, then another identity, then garbage.
    for (token, outcome) in [
        (provider(1), "tokenRefreshed"),
        (provider(2), "error"),
        ("junk".to_owned(), "error"),
    ] {
        r.send(
            &mut owner,
            json!({"event": "refreshToken", "data": {"token": token}, "ref": "t"}),
        )
        .await;
        let reply = r.recv(&mut owner).await;
        assert_eq!(reply["event"], outcome, "{reply}");
        assert_eq!(reply["ref"], "t");
    }

    // The visible heartbeat, with a ref and without.
    r.send(&mut owner, json!({"event": "ping", "ref": "hb"}))
        .await;
    assert_eq!(
        r.recv(&mut owner).await,
        json!({"event": "pong", "ref": "hb"})
    );
    r.send(&mut owner, json!({"event": "ping"})).await;
    assert_eq!(r.recv(&mut owner).await, json!({"event": "pong"}));

    // Bad input, each with its code; the socket stays usable throughout.
    owner.send_text("not json").await;
    r.expect_error(&mut owner, "bad_request").await;
    owner
        .send_text(r#"{"event":"joinRoom","data":{"room":"a b"},"ref":"bad"}"#)
        .await;
    assert_eq!(
        r.expect_error(&mut owner, "bad_request").await["ref"],
        "bad"
    );
    owner.send_text(r#"{"event":"dance","ref":"d"}"#).await;
    r.expect_error(&mut owner, "unknown_event").await;
    r.send(&mut owner, join("provider-2", None, "f")).await;
    r.expect_error(&mut owner, "forbidden").await;
    owner
        .framed
        .send(ws::Message::Binary(Bytes::from_static(b"\x01\x02")))
        .await
        .unwrap();
    r.expect_error(&mut owner, "bad_request").await;

    // `unavailable`: every pooled connection is taken, so the join cannot read the
    // room's version (the pool gives up after its 5 s connection timeout).
    let held = actix_web::web::block(move || {
        (0..pool.max_size())
            .map(|_| pool.get().expect("a free connection"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    r.send(&mut admin_socket, join("provider-7", None, "u"))
        .await;
    let refused = r.expect_error(&mut admin_socket, "unavailable").await;
    assert_eq!(refused["ref"], "u");
    drop(held);
    r.send(&mut admin_socket, join("provider-7", None, "u2"))
        .await;
    assert_eq!(r.recv(&mut admin_socket).await["event"], "joinedRoom");

    // `rate_limited`, on a hub with a tiny burst.
    let strict = TestApp::builder()
        .configure(|s| {
            s.limits.max_frames_per_sec = 1;
            s.limits.max_frame_burst = 1;
        })
        .spawn()
        .await;
    let mut flooder = strict.ws(&admin()).await;
    for _ in 0..5 {
        r.send(&mut flooder, join("lobby", None, "x")).await;
    }
    let mut codes = Vec::new();
    for _ in 0..5 {
        let frame = r.recv(&mut flooder).await;
        codes.push(frame["data"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert!(codes.contains(&"rate_limited".to_owned()), "{codes:?}");

    // Every message of the document was produced, and every error code.
    let documented: BTreeSet<String> = r.api.validators.keys().cloned().collect();
    assert_eq!(r.seen, documented, "messages seen vs documented");
    let documented_codes: BTreeSet<String> = r.api.doc["components"]["schemas"]["Error"]
        ["properties"]["data"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(r.codes, documented_codes, "error codes seen vs documented");
    owner.assert_silent(Duration::from_millis(100)).await;
}

#[test]
fn the_documents_examples_fit_and_the_schemas_bite() {
    let api = AsyncApi::load();
    for (name, message) in api.doc["components"]["messages"].as_object().unwrap() {
        let examples = message["examples"]
            .as_array()
            .expect("every message has examples");
        for example in examples {
            api.assert_fits(name, &example["payload"]);
        }
        // Every message is on the channel and in an operation.
        assert!(
            api.doc["channels"]["socket"]["messages"][name].is_object(),
            "{name} is not on the channel"
        );
    }
    let wrong = [
        (
            "joinedRoom",
            json!({"event": "joinedRoom", "data": {"room": "a", "extra": 1}}),
        ),
        (
            "joinedRoom",
            json!({"event": "joinedRoom", "data": {"room": "a b"}}),
        ),
        (
            "error",
            json!({"event": "error", "data": {"code": "oops", "message": ""}}),
        ),
        ("leftRoom", json!({"event": "leftRoom", "data": {}})),
        (
            "tokenRefreshed",
            json!({"event": "tokenRefreshed", "data": {"exp": "soon"}}),
        ),
        (
            "availabilityUpdated",
            json!({"event": "availabilityUpdated", "room": "provider-1",
                   "data": {"action": "moved", "version": 1, "slot": {}}}),
        ),
        ("roomEvent", json!({"event": "x", "data": 1})),
        (
            "broadcastEvent",
            json!({"event": "x", "room": "r", "data": 1}),
        ),
        (
            "joinRoom",
            json!({"event": "joinRoom", "data": {"room": "a", "since": -1}}),
        ),
        (
            "refreshToken",
            json!({"event": "refreshToken", "data": {"token": ""}}),
        ),
        ("pong", json!({"event": "pong", "data": null})),
        ("ping", json!({"event": "pong"})),
    ];
    for (message, frame) in wrong {
        assert!(
            !api.misfits(message, &frame).is_empty(),
            "{frame} should not be a valid {message}"
        );
    }
    let operations = api.doc["operations"].as_object().unwrap();
    for name in ["joinRoom", "leaveRoom", "refreshToken", "ping"] {
        assert_eq!(operations[name]["action"], "receive");
        assert!(operations[name]["reply"].is_object(), "{name} has a reply");
    }
}
