//! The session actor: one per WebSocket connection.
//!
//! It registers with its thread's registry shard (through the [`Hub`](crate::rooms::Hub))
//! when it starts and deregisters when it stops; parses, rate-limits and authorizes
//! client frames; runs room requests in the client's order ([`Rooms`]); pings the
//! client and drops it when silent; closes with 4001 when its token expires; and
//! writes every frame through a byte-bounded [`Outbox`].
//!
//! Joining: the session joins its shard first, which answers where the room's stream
//! stands on this node (version `p`); live events after `p` arrive meanwhile and are
//! held. The session then reads what the client missed up to `p` from the change log
//! and sends `joinedRoom`, that replay, then the held events. Every version is thus
//! delivered once, in order, and none is lost between the read and the subscription.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod rooms;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytestring::ByteString;
use serde_json::{json, Value};

use super::joins::{RoomRequest, Rooms};
use super::outbox::Outbox;
use super::protocol::{self, ClientRequest, ErrorCode, FrameError};
use super::rate_limit::{RateLimiter, Verdict};
use super::route::WsContext;
use super::{ConnectionSlot, CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED};
use crate::auth::Claims;
use crate::rooms::{Link, SessionId, SessionMsg};

/// Longest single wait of the token-expiry timer (a day); it re-arms until `exp`.
const MAX_EXPIRY_TIMER_SECS: u64 = 86_400;

/// Messages a session's mailbox holds before the registry evicts it as too slow.
const SESSION_MAILBOX: usize = 1024;

/// One WebSocket connection.
pub struct WsSession {
    id: SessionId,
    claims: Claims,
    context: Arc<WsContext>,
    outbox: Outbox,
    /// Set in `started`: the session's membership in its thread's registry shard.
    link: Option<Arc<Link>>,
    rooms: Rooms,
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
            rooms: Rooms::new(limits.max_rooms_per_connection, limits.max_pending_bytes),
            context,
            link: None,
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
        } else if !self.closing && self.outbox.ping().is_err() {
            self.drop_slow_consumer(ctx);
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame = protocol::parse(text);
        let reference = frame.reference;
        match frame.request {
            Err(error) => self.send_error(reference.as_ref(), &error, ctx),
            Ok(ClientRequest::JoinRoom { room, since }) => {
                let join = RoomRequest::Join {
                    room,
                    since,
                    reference,
                };
                self.request(join, ctx)
            }
            Ok(ClientRequest::LeaveRoom { room }) => {
                self.request(RoomRequest::Leave { room, reference }, ctx)
            }
            Ok(ClientRequest::RefreshToken { token }) => self.refresh(&token, reference, ctx),
            Ok(ClientRequest::Ping) => self.send(protocol::pong(reference.as_ref()), ctx),
        }
    }

    fn refresh(&mut self, token: &str, reference: Option<Value>, ctx: &mut Context<Self>) {
        let outcome = self
            .context
            .verifier
            .verify(token)
            .map_err(|e| e.to_string())
            .and_then(|claims| {
                if self.context.revocations.is_revoked(&claims) {
                    Err("this token was revoked".into())
                } else if claims.same_identity(&self.claims) {
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
                self.narrow_rooms(ctx);
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
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_MAILBOX);
        self.context.metrics.connections.inc();
        self.context.metrics.connections_of(self.claims.role).inc();
        let sub: Arc<str> = Arc::from(self.claims.sub.as_str());
        let link = self
            .context
            .hub
            .connect(self.id, sub, ctx.address().recipient());
        self.link = Some(Arc::new(link));
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
        if let Some(link) = &self.link {
            link.disconnect();
        }
        log::info!("session {} disconnected: sub={}", self.id, self.claims.sub);
    }
}

impl Handler<SessionMsg> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: SessionMsg, ctx: &mut Self::Context) {
        match msg {
            SessionMsg::Event(event) => self.deliver(event, ctx),
            SessionMsg::Resync { room, version } => self.resync(room, version, ctx),
            SessionMsg::Unavailable => self.close(
                CloseCode::Again,
                "a room's history is unreachable; reconnect with since",
                ctx,
            ),
            SessionMsg::Evicted => self.drop_slow_consumer(ctx),
            SessionMsg::Revoked => self.close(CloseCode::Other(CLOSE_REVOKED), "revoked", ctx),
            SessionMsg::GoingAway => self.close(CloseCode::Away, "server shutting down", ctx),
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
                    // A binary frame or a ping has no `ref`; a text frame may.
                    let reference = match &message {
                        AggregatedMessage::Text(text) => protocol::reference_of(text),
                        _ => None,
                    };
                    return self.send_error(reference.as_ref(), &error, ctx);
                }
                Verdict::Disconnect => {
                    return self.close(CloseCode::Policy, "rate limit exceeded", ctx);
                }
            }
        }
        match message {
            AggregatedMessage::Text(text) => self.on_text(&text, ctx),
            AggregatedMessage::Binary(_) => {
                // A binary frame is not JSON, so it carries no `ref` to echo.
                let error =
                    FrameError::bad_request("binary frames are not supported: send JSON text");
                self.send_error(None, &error, ctx);
            }
            AggregatedMessage::Ping(payload) => {
                if !self.closing && self.outbox.pong(payload).is_err() {
                    self.drop_slow_consumer(ctx);
                }
            }
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
