//! The session actor: one per WebSocket connection.
//!
//! It registers with its thread's registry shard (through the [`Hub`](crate::rooms::Hub))
//! when it starts and deregisters when it stops; takes what the shard hands it
//! through its inbox (events, closes, heartbeats); parses, rate-limits and authorizes
//! client frames; runs room requests in the client's order ([`Rooms`]); on each
//! heartbeat pings the client and drops it when silent; closes with 4001 when its
//! token expires; and writes every frame straight to its own socket through a
//! byte-bounded [`Outbox`].
//!
//! Joining: the session joins its shard first, which answers where the room's stream
//! stands on this node (version `p`); live events after `p` arrive meanwhile and are
//! held. The session then reads what the client missed up to `p` from the change log
//! and sends `joinedRoom`, that replay, then the held events. Every version is thus
//! delivered once, in order, and none is lost between the read and the subscription.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod rooms;

use actix::prelude::*;
use actix_web::web::Bytes;
use bytestring::ByteString;
use serde_json::{json, Value};

use super::close_code::{AGAIN, AWAY, NORMAL, POLICY, REVOKED, TOKEN_EXPIRED};
use super::frame::{Message, ReadError};
use super::joins::{RoomRequest, Rooms};
use super::outbox::Outbox;
use super::protocol::{self, ClientRequest, ErrorCode, FrameError};
use super::rate_limit::{RateLimiter, Verdict};
use super::route::WsContext;
use super::socket::{Connection, Incoming};
use super::ConnectionSlot;
use crate::auth::Claims;
use crate::rooms::{inbox, InboxLimits, Link, Mailbox, SessionId, SessionMsg};

/// Messages a session's inbox holds before its shard evicts it as too slow (their
/// frames' bytes are bounded by `EVENTIDE_MAX_PENDING_BYTES` too).
const SESSION_INBOX: usize = 1024;

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
    /// The token-expiry timer, armed only while `exp` is near (`schedule_expiry`).
    expiry: Option<SpawnHandle>,
    /// Set once the hub closes the socket: later frames go nowhere and are not counted.
    closing: bool,
    _slot: ConnectionSlot,
}

impl WsSession {
    /// Starts the session of an upgraded connection on this thread, reading
    /// `connection` from `unread` (the bytes that came with the handshake) on.
    pub(super) fn start(
        id: SessionId,
        claims: Claims,
        context: Arc<WsContext>,
        connection: Rc<Connection>,
        unread: &[u8],
        slot: ConnectionSlot,
    ) {
        let max_message = context.limits.max_message_bytes;
        let incoming = Incoming::new(connection.clone(), max_message, unread);
        WsSession::create(move |ctx| {
            ctx.add_stream(incoming);
            WsSession::new(id, claims, context, connection, slot)
        });
    }

    fn new(
        id: SessionId,
        claims: Claims,
        context: Arc<WsContext>,
        connection: Rc<Connection>,
        slot: ConnectionSlot,
    ) -> Self {
        let limits = &context.limits;
        let now = Instant::now();
        WsSession {
            id,
            claims,
            outbox: Outbox::new(connection, limits.max_pending_bytes),
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
        match self.outbox.text(frame.into_bytes()) {
            Ok(()) => self.context.metrics.frames_sent.inc(),
            Err(_) => return self.drop_slow_consumer(ctx),
        }
        self.after_send(ctx);
    }

    /// Writes what was held for one write (see [`Outbox::hold`]).
    fn release_outbox(&mut self, ctx: &mut Context<Self>) {
        match self.outbox.release() {
            Ok(()) => self.after_send(ctx),
            Err(_) => ctx.stop(),
        }
    }

    /// Arms one wait for the socket to take what the kernel refused, if anything is
    /// queued; the wait flushes and re-arms until the queue is empty.
    fn after_send(&mut self, ctx: &mut Context<Self>) {
        if let Some(writable) = self.outbox.wait_writable() {
            ctx.spawn(writable.into_actor(self).map(|ready, act, ctx| {
                match ready.and_then(|()| act.outbox.flush()) {
                    Ok(()) => act.after_send(ctx),
                    // The reader sees the same failure; nothing more can be written.
                    Err(_) => ctx.stop(),
                }
            }));
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

    fn close(&mut self, code: u16, why: &str, ctx: &mut Context<Self>) {
        log::info!(
            "session {} ({}) closed by the hub: {why}",
            self.id,
            self.claims.sub
        );
        self.closing = true;
        self.outbox.close(code, why);
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
        self.outbox
            .abandon(AGAIN, "slow consumer: too much unsent data");
        ctx.stop();
    }

    /// Closes the socket with 4001 once the token's `exp` (plus leeway) passes. The
    /// exact timer is armed only when `exp` is at most two heartbeats away, so most
    /// sessions (tokens live for minutes or hours) keep no timer: a heartbeat looks
    /// again, and one always comes in time to arm it.
    fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            ctx.cancel_future(handle);
        }
        // `exp` is whatever the issuer signed, up to u64::MAX: saturate.
        let deadline = self
            .claims
            .exp
            .saturating_add(self.context.verifier.leeway_secs());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if now >= deadline {
            return self.close(TOKEN_EXPIRED, "token expired", ctx);
        }
        let wait = Duration::from_secs(deadline - now);
        if wait <= 2 * self.context.limits.heartbeat_interval() {
            self.expiry = Some(ctx.run_later(wait, |act, ctx| act.schedule_expiry(ctx)));
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.last_heard.elapsed() > self.context.limits.client_timeout() {
            self.close(NORMAL, "heartbeat timeout", ctx);
        } else if !self.closing {
            if self.expiry.is_none() {
                self.schedule_expiry(ctx);
            }
            match self.outbox.ping() {
                Ok(()) => self.after_send(ctx),
                Err(_) => self.drop_slow_consumer(ctx),
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let frame = protocol::parse(text);
        let reference = frame.reference;
        match frame.request {
            Err(error) => self.send_error(reference.as_ref(), &error, ctx),
            Ok(ClientRequest::JoinRoom { room, since, epoch }) => {
                let join = RoomRequest::Join {
                    room,
                    since,
                    epoch,
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
        self.context.metrics.connections.inc();
        self.context.metrics.connections_of(self.claims.role).inc();
        let sub: Arc<str> = Arc::from(self.claims.sub.as_str());
        let mailbox = self.inbox(ctx);
        let link = self.context.hub.connect(self.id, sub, mailbox);
        self.link = Some(Arc::new(link));
        // A revocation noted after the handshake checked the token closed the
        // subject's sockets before this one was registered: look again now.
        if self.context.revocations.is_revoked(&self.claims) {
            return self.close(REVOKED, "revoked before the session registered", ctx);
        }
        self.schedule_expiry(ctx);
        log::info!(
            "session {} connected: sub={} role={}",
            self.id,
            self.claims.sub,
            self.claims.role.as_str()
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.outbox.finish();
        // `refreshToken` keeps the role, so this is the gauge `started` raised.
        self.context.metrics.connections.dec();
        self.context.metrics.connections_of(self.claims.role).dec();
        if let Some(link) = &self.link {
            link.disconnect();
        }
        log::info!("session {} disconnected: sub={}", self.id, self.claims.sub);
    }
}

/// Everything the shard handed over since the session last looked, in order: its
/// frames go out in one write.
impl StreamHandler<VecDeque<SessionMsg>> for WsSession {
    fn handle(&mut self, batch: VecDeque<SessionMsg>, ctx: &mut Self::Context) {
        self.outbox.hold();
        for msg in batch {
            if self.closing {
                break;
            }
            self.on_shard_message(msg, ctx);
        }
        self.release_outbox(ctx);
    }
}

impl WsSession {
    /// The inbox its shard hands messages to; the session reads it as a stream.
    fn inbox(&mut self, ctx: &mut Context<Self>) -> Mailbox {
        let limits = InboxLimits {
            messages: SESSION_INBOX,
            bytes: self.context.limits.max_pending_bytes,
        };
        let (mailbox, inbox) = inbox(limits);
        ctx.add_stream(inbox);
        mailbox
    }

    fn on_shard_message(&mut self, msg: SessionMsg, ctx: &mut Context<Self>) {
        match msg {
            SessionMsg::Event(event) => self.deliver(event, ctx),
            SessionMsg::Resync {
                room,
                version,
                epoch,
            } => self.resync(room, version, epoch, ctx),
            SessionMsg::Unavailable => self.close(
                AGAIN,
                "a room's history is unreachable; reconnect with since",
                ctx,
            ),
            SessionMsg::Evicted => self.drop_slow_consumer(ctx),
            SessionMsg::Revoked => self.close(REVOKED, "revoked", ctx),
            SessionMsg::GoingAway => self.close(AWAY, "server shutting down", ctx),
            SessionMsg::Heartbeat => self.heartbeat(ctx),
        }
    }
}

impl StreamHandler<Result<Message, ReadError>> for WsSession {
    fn handle(&mut self, item: Result<Message, ReadError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let message = match item {
            Ok(message) => message,
            Err(refused) => {
                let why = match refused {
                    ReadError::Protocol => "protocol error",
                    ReadError::NotUtf8 => "text that is not UTF-8",
                    ReadError::TooBig => "message too big",
                };
                return self.close(refused.close_code(), why, ctx);
            }
        };
        if matches!(message, Message::Text(_) | Message::Binary(_)) {
            self.context.metrics.frames_received.inc();
        }
        if matches!(
            message,
            Message::Text(_) | Message::Binary(_) | Message::Ping(_)
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
                        Message::Text(text) => protocol::reference_of(text),
                        _ => None,
                    };
                    return self.send_error(reference.as_ref(), &error, ctx);
                }
                Verdict::Disconnect => {
                    return self.close(POLICY, "rate limit exceeded", ctx);
                }
            }
        }
        match message {
            Message::Text(text) => self.on_text(&text, ctx),
            Message::Binary(_) => {
                // A binary frame is not JSON, so it carries no `ref` to echo.
                let error =
                    FrameError::bad_request("binary frames are not supported: send JSON text");
                self.send_error(None, &error, ctx);
            }
            Message::Ping(payload) => {
                if !self.closing {
                    match self.outbox.pong(payload) {
                        Ok(()) => self.after_send(ctx),
                        Err(_) => self.drop_slow_consumer(ctx),
                    }
                }
            }
            Message::Pong(_) => {}
            Message::Close(reason) => {
                log::debug!("session {}: client closed ({reason:?})", self.id);
                self.closing = true;
                self.outbox.close(echoed_close_code(reason), "");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The code to answer a client's close frame with: its own, as RFC 6455 asks, unless
/// it is one no endpoint may send (then, like no code at all, 1000).
fn echoed_close_code(reason: Option<(u16, Bytes)>) -> u16 {
    match reason {
        Some((code, _)) if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) => code,
        _ => NORMAL,
    }
}
