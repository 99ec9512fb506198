//! A session's room requests: joining (the registry, then the replay of what the
//! client missed), leaving, the rooms a narrower token no longer allows, and the live
//! events of its rooms. The state itself is [`Rooms`](super::super::joins::Rooms); this
//! is how the actor moves messages through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use serde_json::{json, Value};

use super::WsSession;
use crate::auth::may_join;
use crate::rooms::sequencer::Epoch;
use crate::rooms::{Event, JoinError, Link, Replay, RoomName};
use crate::ws::joins::{Arrival, Refusal, RoomRequest, Step};
use crate::ws::protocol::{self, ErrorCode, FrameError, Joined};

/// The first retry of a replay read that failed; doubles up to a second.
const FIRST_REPLAY_RETRY: Duration = Duration::from_millis(100);

/// What a join found.
struct JoinResult {
    /// The stream's position on this node (versioned rooms).
    version: Option<i64>,
    /// The stream's epoch on this node (versioned rooms).
    epoch: Option<Epoch>,
    /// With a replay: whether it holds every missed version.
    complete: bool,
    frames: Vec<(i64, ByteString)>,
}

impl WsSession {
    pub(super) fn link(&self) -> Arc<Link> {
        self.link.clone().expect("linked when the actor started")
    }

    /// Queues a room request and runs what can run.
    pub(super) fn request(&mut self, request: RoomRequest, ctx: &mut Context<Self>) {
        if let RoomRequest::Join {
            room, reference, ..
        } = &request
        {
            if !may_join(&self.claims, room.as_str()) {
                let error = FrameError {
                    code: ErrorCode::Forbidden,
                    message: format!("this token may not join {room}"),
                };
                return self.send_error(reference.as_ref(), &error, ctx);
            }
        }
        let reference = match &request {
            RoomRequest::Join { reference, .. } | RoomRequest::Leave { reference, .. } => {
                reference.clone()
            }
        };
        let requested = self.socket.rooms().request(request);
        let refused = match requested {
            Ok(()) => return self.run_requests(ctx),
            Err(Refusal::TooManyRooms) => FrameError {
                code: ErrorCode::TooManyRooms,
                message: format!(
                    "a connection may be in at most {} rooms",
                    self.context.limits.max_rooms_per_connection
                ),
            },
            Err(Refusal::QueueFull) => FrameError {
                code: ErrorCode::RateLimited,
                message: "too many room requests waiting: wait for their replies".into(),
            },
        };
        self.send_error(reference.as_ref(), &refused, ctx);
    }

    /// Runs queued room requests until one has to wait (a join).
    fn run_requests(&mut self, ctx: &mut Context<Self>) {
        loop {
            let Some(step) = self.socket.rooms().next() else {
                return;
            };
            match step {
                Step::Leave {
                    room,
                    reference,
                    was_member,
                } => {
                    if was_member {
                        self.link().leave(room.clone());
                        log::debug!("session {} left {room}", self.id);
                    }
                    let data = json!({"room": room.as_str()});
                    let reply = protocol::reply("leftRoom", reference.as_ref(), data);
                    self.send(reply, ctx);
                }
                Step::Join {
                    room,
                    since,
                    replay_from,
                    epoch,
                    reference,
                } => {
                    // A `since` of another epoch counts on another stream: nothing
                    // in this one follows from it.
                    let replay_from = replay_from.map(|from| (from, epoch));
                    if !may_join(&self.claims, room.as_str()) {
                        // Queued before a `refreshToken` narrowed the token.
                        self.socket.rooms().join_failed(&room);
                        let error = FrameError {
                            code: ErrorCode::Forbidden,
                            message: format!("this token may not join {room}"),
                        };
                        self.send_error(reference.as_ref(), &error, ctx);
                        continue;
                    }
                    return self.start_join(room, since, replay_from, reference, ctx);
                }
            }
        }
    }

    /// Joins the room in the registry, then reads what the client missed.
    fn start_join(
        &mut self,
        room: RoomName,
        since: Option<i64>,
        replay_from: Option<(i64, Option<String>)>,
        reference: Option<Value>,
        ctx: &mut Context<Self>,
    ) {
        let link = self.link();
        let deadline = Instant::now() + self.context.recovery_deadline;
        let target = room.clone();
        let from = replay_from.as_ref().map(|(from, _)| *from);
        let lookup = async move {
            let joined = link.join(target.clone(), from).await?;
            let (Some(version), Some((from, theirs))) = (joined.version, replay_from) else {
                return Ok(JoinResult {
                    version: joined.version,
                    epoch: joined.epoch,
                    complete: true,
                    frames: Vec::new(),
                });
            };
            let ours = joined.epoch.as_deref().unwrap_or_default();
            let same_stream = theirs.is_none_or(|theirs| theirs.is_empty() || theirs == ours);
            if from == version || !same_stream {
                return Ok(JoinResult {
                    version: Some(version),
                    epoch: joined.epoch,
                    complete: same_stream,
                    frames: Vec::new(),
                });
            }
            if let Some(frames) = joined.recent {
                // The shard still held every missed frame: no change-log read.
                return Ok(JoinResult {
                    version: Some(version),
                    epoch: joined.epoch,
                    complete: true,
                    frames,
                });
            }
            let replay = replay_with_retries(&link, &target, from, version, deadline).await?;
            Ok(JoinResult {
                version: Some(version),
                epoch: joined.epoch,
                // A client ahead of the database (it was reset) must re-fetch.
                complete: replay.complete && from <= replay.head,
                frames: replay.frames,
            })
        };
        // Whatever the registry and the database do, the join is answered by the
        // deadline: `unavailable`, and the client retries.
        let lookup = async move {
            tokio::time::timeout_at(deadline.into(), lookup)
                .await
                .unwrap_or(Err(JoinError::Unavailable))
        };
        ctx.spawn(lookup.into_actor(self).map(move |result, act, ctx| {
            act.finish_join(room, since, from, reference, result, ctx);
            act.run_requests(ctx);
        }));
    }

    fn finish_join(
        &mut self,
        room: RoomName,
        since: Option<i64>,
        replay_from: Option<i64>,
        reference: Option<Value>,
        result: Result<JoinResult, JoinError>,
        ctx: &mut Context<Self>,
    ) {
        let joining = self.socket.rooms().is_joining(&room);
        if !joining {
            // A narrowed token took the room away while it was joining: `leftRoom`
            // went out already, and this join ends refused rather than joined.
            self.socket.rooms().join_failed(&room);
            let error = FrameError {
                code: ErrorCode::Forbidden,
                message: format!("this token may no longer join {room}"),
            };
            return self.send_error(reference.as_ref(), &error, ctx);
        }
        let mut joined = match result {
            Ok(joined) => joined,
            Err(why) => {
                self.socket.rooms().join_failed(&room);
                self.link().leave(room.clone());
                if why == JoinError::Gone {
                    return;
                }
                let error = FrameError {
                    code: ErrorCode::Unavailable,
                    message: format!("cannot join {room} now: the database did not answer; retry"),
                };
                return self.send_error(reference.as_ref(), &error, ctx);
            }
        };
        // A replay too large for the outbox is refused: the client re-fetches instead.
        let replay_bytes: usize = joined.frames.iter().map(|(_, f)| f.len()).sum();
        let fits = self
            .socket
            .outbox()
            .has_room_for(replay_bytes + self.context.limits.max_message_bytes);
        if !fits {
            joined.complete = false;
            joined.frames.clear();
        }
        // Without a complete replay the client re-fetches at `version`: a `since` it
        // sent (another epoch's, or ahead of the database) says nothing of what it has.
        let client_has = replay_from.filter(|_| joined.complete);
        let ended = self
            .socket
            .rooms()
            .joined(&room, joined.version, client_has, joined.frames)
            .expect("the room is joining, checked above");
        // Versions skipped during the join: what was replayed has a hole after it, so
        // the client re-fetches, and the stream goes on after the skip.
        let resumed = ended.skipped.as_ref().map(|(version, _)| *version);
        // A stream that moved back meanwhile goes on under its new epoch.
        let epoch = match &ended.skipped {
            Some((_, Some(fresh))) => Some(fresh.clone()),
            _ => joined.epoch.clone(),
        };
        let recovered = since
            .and(joined.version)
            .map(|_| joined.complete && resumed.is_none());
        let version = resumed.or_else(|| {
            // A client that already has more than this node delivered keeps its place.
            joined
                .version
                .map(|v| since.filter(|_| joined.complete).map_or(v, |s| s.max(v)))
        });
        let reply = protocol::reply(
            "joinedRoom",
            reference.as_ref(),
            Joined {
                room: room.as_str(),
                version,
                epoch: epoch.as_deref(),
                recovered,
            },
        );
        // The reply, the replay and what was held go out in one write.
        self.socket.outbox().hold();
        self.send(reply, ctx);
        if let (Some(resumed), None) = (resumed, since) {
            // A join without `since` has no `recovered` to carry the news: it gets
            // the notice a live socket would.
            let notice = Joined {
                room: room.as_str(),
                version: Some(resumed),
                epoch: epoch.as_deref(),
                recovered: Some(false),
            };
            self.send(protocol::reply("joinedRoom", None, notice), ctx);
        }
        log::debug!("session {} joined {room} (from {replay_from:?})", self.id);
        for frame in ended.frames {
            self.send(frame, ctx);
        }
        self.release_outbox(ctx);
    }

    /// Leaves every room the current token may no longer join.
    pub(super) fn narrow_rooms(&mut self, ctx: &mut Context<Self>) {
        let claims = &self.claims;
        let gone = self
            .socket
            .rooms()
            .retain(|room| may_join(claims, room.as_str()));
        for room in gone {
            self.link().leave(room.clone());
            let data = json!({"room": room.as_str(), "reason": "forbidden"});
            self.send(protocol::reply("leftRoom", None, data), ctx);
        }
    }

    pub(super) fn deliver(&mut self, event: Event, ctx: &mut Context<Self>) {
        let Some(room) = event.room() else {
            return self.send(event.frame, ctx);
        };
        let arrival = self
            .socket
            .rooms()
            .arrive(room, event.version, &event.frame);
        match arrival {
            Arrival::Send => self.send(event.frame, ctx),
            Arrival::Held | Arrival::Drop => {}
            Arrival::Overflow => self.drop_slow_consumer(ctx),
        }
    }

    /// The room's stream skipped versions its change log no longer keeps, or moved
    /// back (under a new epoch): the client must re-fetch, and is told so as after a
    /// `since` too old to recover.
    pub(super) fn resync(
        &mut self,
        room: RoomName,
        version: i64,
        epoch: Option<Epoch>,
        ctx: &mut Context<Self>,
    ) {
        let tell = self.socket.rooms().resync(&room, version, epoch.clone());
        if tell {
            let joined = Joined {
                room: room.as_str(),
                version: Some(version),
                epoch: epoch.as_deref(),
                recovered: Some(false),
            };
            self.send(protocol::reply("joinedRoom", None, joined), ctx);
        }
    }
}

/// Reads (`from`, `upto`] of `room`, retrying with backoff until `deadline`.
async fn replay_with_retries(
    link: &Link,
    room: &RoomName,
    from: i64,
    upto: i64,
    deadline: Instant,
) -> Result<Replay, JoinError> {
    let mut wait = FIRST_REPLAY_RETRY;
    loop {
        match link.replay(room, from, upto).await {
            Ok(replay) => return Ok(replay),
            Err(e) if Instant::now() + wait < deadline => {
                log::warn!("replay of {room} failed: {e}; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                log::warn!("replay of {room} failed: {e}; giving up");
                return Err(JoinError::Unavailable);
            }
        }
    }
}
