//! The session actor: one per WebSocket connection.
//!
//! It registers with the [`RoomRegistry`] when it starts and deregisters when it
//! stops; parses, rate-limits and authorizes client frames; joins rooms (replaying
//! missed changes with `since`); pings the client and drops it when silent; closes
//! with 4001 when its token expires; and writes every frame through a byte-bounded
//! [`Outbox`].
//!
//! Joining is the delicate part. The session joins the registry first and only then
//! reads the room's version (and missed changes) from the database; live events that
//! arrive meanwhile are held back. When the read returns, the client gets
//! `joinedRoom`, then the replay, then the held events newer than what it has seen.
//! Every event is thus delivered once, in version order, and none is lost between
//! the read and the subscription.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;
use serde_json::{json, Value};

use super::outbox::Outbox;
use super::protocol::{self, ClientRequest, ErrorCode, FrameError, Joined};
use super::rate_limit::{RateLimiter, Verdict};
use super::route::WsContext;
use super::{ConnectionSlot, CLOSE_TOKEN_EXPIRED};
use crate::auth::{may_join, Claims};
use crate::rooms::{Connect, Deliver, Disconnect, Join, Leave, RoomName, SessionId, SessionMsg};

/// Longest single wait of the token-expiry timer (a day); it re-arms until `exp`.
const MAX_EXPIRY_TIMER_SECS: u64 = 86_400;

/// Messages a session's mailbox holds before the registry evicts it as too slow.
const SESSION_MAILBOX: usize = 1024;

/// Where the session stands in one room.
enum Membership {
    /// Waiting for the database; live events are held here meanwhile.
    Joining {
        attempt: u64,
        held: Vec<Deliver>,
        held_bytes: usize,
    },
    /// Receiving live events; `version` is the last one the client has.
    Live { version: Option<i64> },
}

/// A join in flight: what the client asked and how to answer.
struct JoinRequest {
    room: RoomName,
    attempt: u64,
    /// The client's `since`, if it sent one.
    since: Option<i64>,
    /// Where the replay starts: the client's `since`, or what it already has.
    replay_from: Option<i64>,
    reference: Option<Value>,
    /// Whether to answer `joinedRoom` (not for a catch-up the client did not ask for).
    announce: bool,
}

/// What the database said for a join.
struct JoinResult {
    version: Option<i64>,
    recovered: Option<bool>,
    frames: Vec<(i64, String)>,
}

/// One WebSocket connection.
pub struct WsSession {
    id: SessionId,
    claims: Claims,
    context: Arc<WsContext>,
    outbox: Outbox,
    rooms: HashMap<RoomName, Membership>,
    next_attempt: u64,
    last_heard: Instant,
    limiter: RateLimiter,
    expiry: Option<SpawnHandle>,
    /// Set once the hub closes the socket: later frames go nowhere and are not counted.
    closing: bool,
    _slot: ConnectionSlot,
}

impl WsSession {
    /// A session for an accepted socket.
    pub fn new(
        id: SessionId,
        claims: Claims,
        context: Arc<WsContext>,
        session: actix_ws::Session,
        slot: ConnectionSlot,
    ) -> Self {
        let limits = &context.limits;
        let now = Instant::now();
        WsSession {
            id,
            claims,
            outbox: Outbox::new(session, limits.max_pending_bytes),
            limiter: RateLimiter::new(
                limits.max_frames_per_sec,
                limits.max_frame_burst,
                limits.max_rate_limited_frames,
                now,
            ),
            context,
            rooms: HashMap::new(),
            next_attempt: 0,
            last_heard: now,
            expiry: None,
            closing: false,
            _slot: slot,
        }
    }

    /// Sends a frame, closing the session as a slow consumer if its queue is full.
    fn send(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        match self.outbox.text(frame) {
            Ok(()) => self.context.metrics.frames_sent.inc(),
            Err(_) => self.drop_slow_consumer(ctx),
        }
    }

    fn send_error(
        &mut self,
        reference: Option<&Value>,
        error: &FrameError,
        ctx: &mut Context<Self>,
    ) {
        let frame = protocol::error_frame(reference, error.code, &error.message);
        self.send(frame, ctx);
    }

    fn close(&mut self, code: CloseCode, why: &str, ctx: &mut Context<Self>) {
        log::info!(
            "session {} ({}) closed by the hub: {why}",
            self.id,
            self.claims.sub
        );
        self.closing = true;
        self.outbox.close(Some(CloseReason {
            code,
            description: Some(why.to_owned()),
        }));
        ctx.stop();
    }

    fn drop_slow_consumer(&mut self, ctx: &mut Context<Self>) {
        // One slow consumer is one disconnect, however many frames then fail; a
        // session already closing is on its way out.
        if std::mem::replace(&mut self.closing, true) {
            return;
        }
        self.context.metrics.slow_consumers.inc();
        log::warn!(
            "session {} ({}) is a slow consumer: {} bytes unsent; closing with 1013",
            self.id,
            self.claims.sub,
            self.outbox.pending_bytes()
        );
        self.outbox.abandon(CloseReason {
            code: CloseCode::Again,
            description: Some("slow consumer: too much unsent data".into()),
        });
        ctx.stop();
    }

    /// Closes the socket with 4001 once the token's `exp` (plus leeway) passes.
    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        // `exp` is whatever the issuer signed, up to u64::MAX: saturate, and wake at
        // least daily to look again rather than arming a timer decades ahead.
        let deadline = self
            .claims
            .exp
            .saturating_add(self.context.verifier.leeway_secs());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now >= deadline {
            return self.close(CloseCode::Other(CLOSE_TOKEN_EXPIRED), "token expired", ctx);
        }
        let wait = Duration::from_secs((deadline - now).min(MAX_EXPIRY_TIMER_SECS));
        self.expiry = Some(ctx.run_later(wait, |act, ctx| act.schedule_expiry(ctx)));
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.last_heard.elapsed() > self.context.limits.client_timeout() {
            self.close(CloseCode::Normal, "heartbeat timeout", ctx);
        } else {
            self.outbox.ping();
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame = protocol::parse(text);
        let reference = frame.reference;
        match frame.request {
            Err(error) => self.send_error(reference.as_ref(), &error, ctx),
            Ok(ClientRequest::JoinRoom { room, since }) => self.join(room, since, reference, ctx),
            Ok(ClientRequest::LeaveRoom { room }) => self.leave(room, reference, ctx),
            Ok(ClientRequest::RefreshToken { token }) => self.refresh(&token, reference, ctx),
            Ok(ClientRequest::Ping) => self.send(protocol::pong(reference.as_ref()), ctx),
        }
    }

    fn join(
        &mut self,
        room: RoomName,
        since: Option<i64>,
        reference: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        if !may_join(&self.claims, room.as_str()) {
            let error = FrameError {
                code: ErrorCode::Forbidden,
                message: format!("this token may not join {room}"),
            };
            return self.send_error(reference.as_ref(), &error, ctx);
        }
        let already = self.rooms.get(&room);
        if already.is_none() && self.rooms.len() >= self.context.limits.max_rooms_per_connection {
            let error = FrameError {
                code: ErrorCode::TooManyRooms,
                message: format!(
                    "a connection may be in at most {} rooms",
                    self.context.limits.max_rooms_per_connection
                ),
            };
            return self.send_error(reference.as_ref(), &error, ctx);
        }
        self.subscribe(room, since, reference, true, ctx);
    }

    /// Joins `room` in the registry, then reads its version and what the client missed.
    /// Rejoining a live room replays from what this client already has, so nothing
    /// between the two joins is lost or repeated.
    fn subscribe(
        &mut self,
        room: RoomName,
        since: Option<i64>,
        reference: Option<Value>,
        announce: bool,
        ctx: &mut Context<Self>,
    ) {
        let replay_from = since.or(match self.rooms.get(&room) {
            Some(Membership::Live { version }) => *version,
            _ => None,
        });
        self.next_attempt += 1;
        let attempt = self.next_attempt;
        self.rooms.insert(
            room.clone(),
            Membership::Joining {
                attempt,
                held: Vec::new(),
                held_bytes: 0,
            },
        );

        let registry = self.context.hub.registry().clone();
        let store = self.context.store.clone();
        let (id, target) = (self.id, room.clone());
        let lookup = async move {
            if !registry
                .send(Join {
                    id,
                    room: target.clone(),
                })
                .await
                .unwrap_or(false)
            {
                return Err("the hub is shutting down".to_owned());
            }
            let Some(provider_id) = target.provider_id() else {
                return Ok(JoinResult {
                    version: None,
                    recovered: None,
                    frames: Vec::new(),
                });
            };
            match replay_from {
                Some(since) => store.replay(provider_id, since).await.map(|r| JoinResult {
                    version: Some(r.version),
                    recovered: Some(r.recovered),
                    frames: r.frames,
                }),
                None => store.version(provider_id).await.map(|v| JoinResult {
                    version: Some(v),
                    recovered: None,
                    frames: Vec::new(),
                }),
            }
            .map_err(|e| format!("{:?}", e))
        };
        let request = JoinRequest {
            room,
            attempt,
            since,
            replay_from,
            reference,
            announce,
        };
        ctx.spawn(
            lookup
                .into_actor(self)
                .map(move |result, act, ctx| act.finish_join(request, result, ctx)),
        );
    }

    fn finish_join(
        &mut self,
        request: JoinRequest,
        result: Result<JoinResult, String>,
        ctx: &mut Context<Self>,
    ) {
        let JoinRequest {
            room,
            attempt,
            since,
            replay_from,
            reference,
            announce,
        } = request;
        // A later join or a leave of the same room superseded this one.
        let held = match self.rooms.get_mut(&room) {
            Some(Membership::Joining {
                attempt: a, held, ..
            }) if *a == attempt => std::mem::take(held),
            _ => return,
        };
        let mut joined = match result {
            Ok(joined) => joined,
            Err(why) => {
                log::warn!("session {}: join of {room} failed: {why}", self.id);
                self.rooms.remove(&room);
                self.context.hub.registry().do_send(Leave {
                    id: self.id,
                    room: room.clone(),
                });
                let error = FrameError {
                    code: ErrorCode::Unavailable,
                    message: format!("cannot join {room} now: the database did not answer; retry"),
                };
                return self.send_error(reference.as_ref(), &error, ctx);
            }
        };
        // A replay too large for the outbox is refused: the client re-fetches instead.
        let replay_bytes: usize = joined.frames.iter().map(|(_, f)| f.len()).sum();
        if !self
            .outbox
            .has_room_for(replay_bytes + self.context.limits.max_message_bytes)
        {
            joined.recovered = Some(false);
            joined.frames.clear();
        }
        // The client asked for a replay only if it sent `since`; an implicit rejoin
        // replays silently.
        // A catch-up the client did not ask for speaks only when it could not recover:
        // then the client must re-fetch the snapshot.
        let recovered = if announce {
            since.and(joined.recovered)
        } else {
            joined.recovered.filter(|complete| !complete)
        };
        if announce || recovered == Some(false) {
            let reply = protocol::reply(
                "joinedRoom",
                reference.as_ref(),
                Joined {
                    room: room.as_str(),
                    version: joined.version,
                    recovered,
                },
            );
            self.send(reply, ctx);
        }
        log::debug!("session {} joined {room} (since {replay_from:?})", self.id);

        let mut last = joined.version;
        for (version, frame) in joined.frames {
            self.send(ByteString::from(frame), ctx);
            last = last.max(Some(version));
        }
        for deliver in held {
            match (deliver.version, last) {
                (Some(v), Some(seen)) if v <= seen => continue,
                (Some(v), _) => last = Some(v),
                _ => {}
            }
            self.send(deliver.frame, ctx);
        }
        self.rooms.insert(room, Membership::Live { version: last });
    }

    fn leave(&mut self, room: RoomName, reference: Option<Value>, ctx: &mut Context<Self>) {
        if self.rooms.remove(&room).is_some() {
            self.context.hub.registry().do_send(Leave {
                id: self.id,
                room: room.clone(),
            });
            log::debug!("session {} left {room}", self.id);
        }
        let reply = protocol::reply(
            "leftRoom",
            reference.as_ref(),
            json!({"room": room.as_str()}),
        );
        self.send(reply, ctx);
    }

    fn refresh(&mut self, token: &str, reference: Option<Value>, ctx: &mut Context<Self>) {
        let outcome = self
            .context
            .verifier
            .verify(token)
            .map_err(|e| e.to_string())
            .and_then(|claims| {
                if claims.same_identity(&self.claims) {
                    Ok(claims)
                } else {
                    Err(
                        "the new token's sub, role and providerId must match the current one"
                            .into(),
                    )
                }
            });
        match outcome {
            Ok(claims) => {
                self.claims = claims;
                self.schedule_expiry(ctx);
                let reply = protocol::reply(
                    "tokenRefreshed",
                    reference.as_ref(),
                    json!({"exp": self.claims.exp}),
                );
                self.send(reply, ctx);
            }
            Err(why) => {
                let error = FrameError {
                    code: ErrorCode::Unauthorized,
                    message: format!("token not refreshed: {why}"),
                };
                self.send_error(reference.as_ref(), &error, ctx);
            }
        }
    }

    fn deliver(&mut self, deliver: Deliver, ctx: &mut Context<Self>) {
        let Some(room) = &deliver.room else {
            return self.send(deliver.frame, ctx);
        };
        match self.rooms.get_mut(room) {
            Some(Membership::Live { version }) => {
                if let Some(v) = deliver.version {
                    if version.is_some_and(|seen| v <= seen) {
                        return;
                    }
                    *version = Some(v);
                }
                self.send(deliver.frame, ctx);
            }
            Some(Membership::Joining {
                held, held_bytes, ..
            }) => {
                *held_bytes += deliver.frame.len();
                let too_much = *held_bytes > self.context.limits.max_pending_bytes;
                held.push(deliver);
                if too_much {
                    self.drop_slow_consumer(ctx);
                }
            }
            None => {}
        }
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_MAILBOX);
        self.context.metrics.connections.inc();
        self.context.metrics.connections_of(self.claims.role).inc();
        self.context.hub.registry().do_send(Connect {
            id: self.id,
            recipient: ctx.address().recipient(),
        });
        ctx.run_interval(self.context.limits.heartbeat_interval(), |act, ctx| {
            act.heartbeat(ctx)
        });
        self.schedule_expiry(ctx);
        log::info!(
            "session {} connected: sub={} role={}",
            self.id,
            self.claims.sub,
            self.claims.role.as_str()
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // `refreshToken` keeps the role, so this is the gauge `started` raised.
        self.context.metrics.connections.dec();
        self.context.metrics.connections_of(self.claims.role).dec();
        self.context
            .hub
            .registry()
            .do_send(Disconnect { id: self.id });
        log::info!("session {} disconnected: sub={}", self.id, self.claims.sub);
    }
}

impl Handler<SessionMsg> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: SessionMsg, ctx: &mut Self::Context) {
        match msg {
            SessionMsg::Event(deliver) => self.deliver(deliver, ctx),
            SessionMsg::Evicted => self.drop_slow_consumer(ctx),
            SessionMsg::GoingAway => self.close(CloseCode::Away, "server shutting down", ctx),
            SessionMsg::CatchUp(room) => {
                if matches!(self.rooms.get(&room), Some(Membership::Live { .. })) {
                    self.subscribe(room, None, None, false, ctx);
                }
            }
        }
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let message = match item {
            Ok(message) => message,
            Err(ProtocolError::Overflow) => {
                return self.close(CloseCode::Size, "message too big", ctx);
            }
            Err(ProtocolError::Io(e)) if e.to_string().contains("continuation size") => {
                return self.close(CloseCode::Size, "message too big", ctx);
            }
            Err(e) => {
                log::debug!("session {}: protocol error: {e}", self.id);
                return self.close(CloseCode::Protocol, "protocol error", ctx);
            }
        };
        if matches!(
            message,
            AggregatedMessage::Text(_) | AggregatedMessage::Binary(_)
        ) {
            self.context.metrics.frames_received.inc();
        }
        if matches!(
            message,
            AggregatedMessage::Text(_) | AggregatedMessage::Binary(_) | AggregatedMessage::Ping(_)
        ) {
            match self.limiter.check(Instant::now()) {
                Verdict::Allow => {}
                Verdict::Refuse => {
                    self.context.metrics.rate_limited.inc();
                    let error = FrameError {
                        code: ErrorCode::RateLimited,
                        message: format!(
                            "more than {} frames per second; this frame was dropped",
                            self.context.limits.max_frames_per_sec
                        ),
                    };
                    return self.send_error(None, &error, ctx);
                }
                Verdict::Disconnect => {
                    return self.close(CloseCode::Policy, "rate limit exceeded", ctx);
                }
            }
        }
        match message {
            AggregatedMessage::Text(text) => self.on_text(&text, ctx),
            AggregatedMessage::Binary(_) => {
                let error =
                    FrameError::bad_request("binary frames are not supported: send JSON text");
                self.send_error(None, &error, ctx);
            }
            AggregatedMessage::Ping(payload) => self.outbox.pong(payload),
            AggregatedMessage::Pong(_) => {}
            AggregatedMessage::Close(reason) => {
                log::debug!("session {}: client closed ({reason:?})", self.id);
                self.outbox.close(reason);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
