//! The client's frames as the session takes them: each one counted against the
//! frame rate (fragments, pings, pongs and closes too), a message dropped whole when
//! one of its frames was over the rate, and the client's close echoed.

use std::time::Instant;

use actix::prelude::*;
use actix_web::web::Bytes;

use super::WsSession;
use crate::ws::close_code::{NORMAL, POLICY};
use crate::ws::frame::{Message, ReadError};
use crate::ws::protocol::{self, ErrorCode, FrameError};
use crate::ws::rate_limit::Verdict;

impl StreamHandler<Result<Message, ReadError>> for WsSession {
    /// One client frame: counted against the rate whatever it is, then handled.
    fn handle(&mut self, item: Result<Message, ReadError>, ctx: &mut Self::Context) {
        let now = Instant::now();
        self.last_heard = now;
        let message = match item {
            Ok(message) => message,
            Err(refused) => {
                let why = match refused {
                    ReadError::Protocol => "protocol error",
                    ReadError::NotUtf8 => "text that is not UTF-8",
                    ReadError::TooBig => "message too big",
                    ReadError::TooManyFragments => "message in too many fragments",
                };
                return self.close(refused.close_code(), why, ctx);
            }
        };
        // A data frame's message is refused if any of its frames was.
        let mut refused = false;
        match message {
            Message::Fragment => {
                self.message_since.get_or_insert(now);
            }
            Message::Text(_) | Message::Binary(_) => {
                self.context.metrics.frames_received.inc();
                self.message_since = None;
                refused = std::mem::take(&mut self.message_refused);
            }
            _ => {}
        }
        match self.limiter.check(now) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                self.context.metrics.rate_limited.inc();
                refused = true;
            }
            Verdict::Disconnect => {
                return self.close(POLICY, "rate limit exceeded", ctx);
            }
        }
        if refused {
            return self.refuse(message, ctx);
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
                    let ponged = self.socket.outbox().pong(payload);
                    match ponged {
                        Ok(()) => self.after_send(ctx),
                        Err(_) => self.drop_slow_consumer(ctx),
                    }
                }
            }
            Message::Pong(_) | Message::Fragment => {}
            Message::Close(reason) => self.on_close(reason, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl WsSession {
    /// Drops a frame over the rate: a message is answered `rate_limited` (with its
    /// `ref`, if it has one), a fragment drops the message it belongs to, a pong is
    /// dropped, and a close is honoured all the same.
    fn refuse(&mut self, message: Message, ctx: &mut Context<Self>) {
        let reference = match message {
            Message::Text(text) => protocol::reference_of(&text),
            Message::Binary(_) | Message::Ping(_) => None,
            Message::Fragment => {
                self.message_refused = true;
                return;
            }
            Message::Pong(_) => return,
            Message::Close(reason) => return self.on_close(reason, ctx),
        };
        let error = FrameError {
            code: ErrorCode::RateLimited,
            message: format!(
                "more than {} frames per second; this frame was dropped",
                self.context.limits.max_frames_per_sec
            ),
        };
        self.send_error(reference.as_ref(), &error, ctx);
    }

    /// The client closed: its code is echoed, as RFC 6455 asks (the reader has refused
    /// codes no endpoint may send), or 1000 if it sent none.
    fn on_close(&mut self, reason: Option<(u16, Bytes)>, ctx: &mut Context<Self>) {
        log::debug!("session {}: client closed ({reason:?})", self.id);
        self.closing = true;
        let code = reason.map_or(NORMAL, |(code, _)| code);
        self.socket.outbox().close(code, "");
        ctx.stop();
    }
}
