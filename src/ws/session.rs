//! The session actor: one per WebSocket connection.
//!
//! It registers with its thread's registry shard (through the [`Hub`](crate::rooms::Hub))
//! when it starts and deregisters when it stops; takes what the shard hands it
//! through its inbox (events it must see, closes, heartbeats), while the shard writes
//! the events of its live rooms straight to its socket ([`direct`]); parses,
//! rate-limits and authorizes client frames ([`frames`]: every frame counts, and a
//! fragmented message must be finished within the client timeout); runs room requests
//! in the client's order ([`Rooms`]); on each heartbeat pings the client and drops it
//! when silent, or when a message it began stays unfinished; closes with 4001 when its
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

mod direct;
mod frames;
mod rooms;

use actix::prelude::*;
use bytestring::ByteString;
use serde_json::{json, Value};

use self::direct::SessionSocket;
use super::close_code::{AGAIN, AWAY, NORMAL, POLICY, REVOKED, TOKEN_EXPIRED};
use super::context::WsContext;
use super::frame::ReaderLimits;
use super::joins::{RoomRequest, Rooms};
use super::outbox::Outbox;
use super::protocol::{self, ClientRequest, ErrorCode, FrameError};
use super::rate_limit::RateLimiter;
use super::socket::{Connection, Incoming};
use crate::auth::Claims;
use crate::rooms::direct::DirectSocket;
use crate::rooms::{inbox, InboxLimits, Link, Mailbox, SessionId, SessionMsg};

/// Messages a session's inbox holds before its shard evicts it as too slow (their
/// frames' bytes are bounded by `EVENTIDE_MAX_PENDING_BYTES` too).
const SESSION_INBOX: usize = 1024;

/// One WebSocket connection.
pub struct WsSession {
    id: SessionId,
    claims: Claims,
    context: Arc<WsContext>,
    /// Its socket's outbox and its rooms, shared with its shard, which writes the
    /// events of live rooms straight to the socket ([`direct`]).
    socket: Rc<SessionSocket>,
    /// Set in `started`: the session's membership in its thread's registry shard.
    link: Option<Arc<Link>>,
    last_heard: Instant,
    limiter: RateLimiter,
    /// The token-expiry timer, armed only while `exp` is near (`schedule_expiry`).
    expiry: Option<SpawnHandle>,
    /// Set once the hub closes the socket: later frames go nowhere and are not counted.
    closing: bool,
    /// When the first frame of a message still unfinished came; the message must be
    /// finished within the client timeout.
    message_since: Option<Instant>,
    /// Set when a fragment of the unfinished message was refused by the rate limit:
    /// the whole message is then dropped.
    message_refused: bool,
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
    ) {
        let limits = ReaderLimits {
            max_message: context.limits.max_message_bytes,
            max_fragments: context.limits.max_fragments,
        };
        let incoming = Incoming::new(connection.clone(), limits, unread);
        WsSession::create(move |ctx| {
            ctx.add_stream(incoming);
            WsSession::new(id, claims, context, connection)
        });
    }

    fn new(
        id: SessionId,
        mut claims: Claims,
        context: Arc<WsContext>,
        connection: Rc<Connection>,
    ) -> Self {
        // Kept for the life of the socket: without the spare room parsing left.
        claims.rooms.shrink_to_fit();
        let limits = &context.limits;
        let now = Instant::now();
        WsSession {
            id,
            claims,
            socket: Rc::new(SessionSocket::new(
                Outbox::new(connection, limits.max_pending_bytes),
                Rooms::new(limits.max_rooms_per_connection, limits.max_pending_bytes),
            )),
            limiter: RateLimiter::new(
                limits.max_frames_per_sec,
                limits.max_frame_burst,
                limits.max_rate_limited_frames,
                now,
            ),
            context,
            link: None,
            last_heard: now,
            expiry: None,
            closing: false,
            message_since: None,
            message_refused: false,
        }
    }

    /// Sends a frame, closing the session as a slow consumer if its queue is full.
    fn send(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let sent = self.socket.outbox().text(frame.into_bytes());
        match sent {
            Ok(()) => self.context.metrics.frames_sent.inc(),
            Err(_) => return self.drop_slow_consumer(ctx),
        }
        self.after_send(ctx);
    }

    /// Writes what was held for one write (see [`Outbox::hold`]).
    fn release_outbox(&mut self, ctx: &mut Context<Self>) {
        let released = self.socket.outbox().release();
        match released {
            Ok(()) => self.after_send(ctx),
            Err(_) => ctx.stop(),
        }
    }

    /// Arms one wait for the socket to take what the kernel refused, if anything is
    /// queued; the wait flushes and re-arms until the queue is empty.
    fn after_send(&mut self, ctx: &mut Context<Self>) {
        let writable = self.socket.outbox().wait_writable();
        if let Some(writable) = writable {
            ctx.spawn(writable.into_actor(self).map(|ready, act, ctx| {
                let flushed = ready.and_then(|()| act.socket.outbox().flush());
                match flushed {
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
            "session {} ({:?}) closed by the hub: {why}",
            self.id,
            self.claims.sub
        );
        self.closing = true;
        self.socket.outbox().close(code, why);
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
            "session {} ({:?}) is a slow consumer: {} bytes unsent; closing with 1013",
            self.id,
            self.claims.sub,
            self.socket.outbox().pending_bytes()
        );
        self.socket
            .outbox()
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
        let timeout = self.context.limits.client_timeout();
        if self.last_heard.elapsed() > timeout {
            self.close(NORMAL, "heartbeat timeout", ctx);
        } else if self
            .message_since
            .is_some_and(|since| since.elapsed() > timeout)
        {
            // Pongs keep a socket alive, not a message it never finishes.
            self.close(POLICY, "a fragmented message was not finished in time", ctx);
        } else if !self.closing {
            if self.expiry.is_none() {
                self.schedule_expiry(ctx);
            }
            let pinged = self.socket.outbox().ping();
            match pinged {
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
        let direct: DirectSocket = self.socket.clone();
        let link = self
            .context
            .hub
            .connect(self.id, sub, mailbox, Some(direct));
        self.link = Some(Arc::new(link));
        // A revocation noted after the handshake checked the token closed the
        // subject's sockets before this one was registered: look again now.
        if self.context.revocations.is_revoked(&self.claims) {
            return self.close(REVOKED, "revoked before the session registered", ctx);
        }
        self.schedule_expiry(ctx);
        log::info!(
            "session {} connected: sub={:?} role={}",
            self.id,
            self.claims.sub,
            self.claims.role.as_str()
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.socket.outbox().finish();
        // `refreshToken` keeps the role, so this is the gauge `started` raised.
        self.context.metrics.connections.dec();
        self.context.metrics.connections_of(self.claims.role).dec();
        if let Some(link) = &self.link {
            link.disconnect();
        }
        log::info!(
            "session {} disconnected: sub={:?}",
            self.id,
            self.claims.sub
        );
    }
}

/// Everything the shard handed over since the session last looked, in order: its
/// frames go out in one write.
impl StreamHandler<VecDeque<SessionMsg>> for WsSession {
    fn handle(&mut self, batch: VecDeque<SessionMsg>, ctx: &mut Self::Context) {
        self.socket.outbox().hold();
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
            SessionMsg::Flush => self.after_send(ctx),
        }
    }
}
