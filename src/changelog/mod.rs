//! The change log: the versioned rooms and their history in the database, which is the
//! truth every node delivers from.
//!
//! Two kinds of room are versioned: provider rooms (`provider-{id}`, whose changes the
//! availability store writes) and the rooms matching `EVENTIDE_HISTORY_ROOMS`, whose
//! emitted events are appended here. Every other room has no version and no history.
//!
//! Reads are the expensive part of recovery: a reconnect storm or a Redis resubscribe
//! can ask for thousands of them at once. So they run on the blocking pool behind a
//! small semaphore (a fraction of the connection pool, leaving the rest to REST), and
//! identical reads in flight are coalesced into one.

mod epochs;
mod queries;

pub use epochs::{Positions, HEADS_BATCH};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::web;
use bytestring::ByteString;
use diesel::Connection;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::auth::pattern_matches;
use crate::db::{read_transaction, DbPool};
use crate::rooms::sequencer::{Read, ReadResult, Versioned};
use crate::rooms::{frame_to, FrameTarget, RoomName};

/// The history of one versioned room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `provider-{id}`: the provider's availability changes.
    Provider(i64),
    /// A room matching `EVENTIDE_HISTORY_ROOMS`: its emitted events.
    Room(RoomName),
}

/// The change log could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogError(pub String);

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "change log unavailable: {}", self.0)
    }
}

impl std::error::Error for LogError {}

type SharedRead = Shared<BoxFuture<'static, Result<Arc<ReadResult>, LogError>>>;

/// A handle to the change log, cheap to clone.
#[derive(Clone)]
pub struct ChangeLog {
    pool: DbPool,
    history_rooms: Arc<[String]>,
    keep: i64,
    /// Limits concurrent reads so recovery never takes the whole pool from REST.
    permits: Arc<Semaphore>,
    /// Reads in flight, by what they read: a second identical read awaits the first.
    in_flight: Arc<Mutex<HashMap<(Stream, Read), SharedRead>>>,
}

impl ChangeLog {
    /// The change log in `pool`; `history_rooms` are the patterns of rooms with
    /// history (as `Delivery::history_patterns` gives them), `keep` how many changes
    /// each stream keeps.
    pub fn new(pool: DbPool, history_rooms: &[String], keep: i64) -> Self {
        let readers = (pool.max_size() as usize / 4).max(1);
        ChangeLog {
            pool,
            history_rooms: history_rooms.into(),
            keep,
            permits: Arc::new(Semaphore::new(readers)),
            in_flight: Arc::default(),
        }
    }

    /// The stream behind `room`, if the room is versioned.
    pub fn stream_of(&self, room: &RoomName) -> Option<Stream> {
        if let Some(id) = room.provider_id() {
            return Some(Stream::Provider(id));
        }
        self.is_history_room(room)
            .then(|| Stream::Room(room.clone()))
    }

    /// Whether events emitted to `room` are versioned and kept.
    pub fn is_history_room(&self, room: &RoomName) -> bool {
        room.provider_id().is_none()
            && self
                .history_rooms
                .iter()
                .any(|p| pattern_matches(p, room.as_str()))
    }

    /// Reads `read` of `room`'s stream (the head, or the changes after a version up to
    /// the head), sharing the result with identical reads in flight.
    pub async fn read(&self, stream: Stream, read: Read) -> Result<Arc<ReadResult>, LogError> {
        let key = (stream.clone(), read);
        let shared = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(shared) = in_flight.get(&key) {
                shared.clone()
            } else {
                let this = self.clone();
                let key_done = key.clone();
                let shared = async move {
                    let result = this.read_now(stream, read).await;
                    this.in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key_done);
                    result.map(Arc::new)
                }
                .boxed()
                .shared();
                in_flight.insert(key, shared.clone());
                shared
            }
        };
        shared.await
    }

    async fn read_now(&self, stream: Stream, read: Read) -> Result<ReadResult, LogError> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get().map_err(|e| LogError(e.to_string()))?;
            read_transaction(&mut conn, |conn| {
                let (head, epoch) = queries::position(conn, &stream)?;
                let frames = match read {
                    Read::Head => Vec::new(),
                    Read::After(after) => queries::changes_after(conn, &stream, after, head)?,
                };
                Ok::<_, diesel::result::Error>(ReadResult {
                    head,
                    epoch,
                    frames,
                })
            })
            .map_err(|e| LogError(e.to_string()))
        })
        .await
        .map_err(|_| closed())?
    }

    /// Appends an event to a history room in one transaction; answers its version and
    /// the frame `{"event", "room", "data", "version"}` that was stored.
    pub async fn append(
        &self,
        room: &RoomName,
        event: &str,
        data: &Value,
    ) -> Result<Versioned, LogError> {
        let (pool, keep) = (self.pool.clone(), self.keep);
        let (room, event, data) = (room.clone(), event.to_owned(), data.clone());
        web::block(move || {
            let mut conn = pool.get().map_err(|e| LogError(e.to_string()))?;
            let frame = |version| -> ByteString {
                let target = FrameTarget {
                    room: Some(room.as_str()),
                    version: Some(version),
                    ..FrameTarget::default()
                };
                frame_to(&event, target, &data)
            };
            conn.transaction(|conn| queries::append_room_event(conn, room.as_str(), keep, frame))
                .map_err(|e| LogError(e.to_string()))
        })
        .await
        .map_err(|_| closed())?
    }
}

fn closed() -> LogError {
    LogError("the hub is shutting down".into())
}
