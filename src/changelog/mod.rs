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
//! identical reads in flight are coalesced into one (see [`reads`] for how a read
//! outlives the callers that asked for it). Every read answers within the read
//! deadline, whatever the database does.

mod epochs;
mod queries;
mod reads;

pub use epochs::{Positions, HEADS_BATCH};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web;
use bytestring::ByteString;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::Connection;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::auth::pattern_matches;
use crate::db::DbPool;
use crate::rooms::sequencer::{Read, ReadResult, Versioned};
use crate::rooms::{frame_to, FrameTarget, RoomName};

pub use queries::READ_LIMIT;

/// How long a read waits for a permit and the database together, unless told otherwise.
pub const DEFAULT_READ_DEADLINE: Duration = Duration::from_secs(5);

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

/// A handle to the change log, cheap to clone.
#[derive(Clone)]
pub struct ChangeLog {
    pool: DbPool,
    history_rooms: Arc<[String]>,
    keep: i64,
    /// Limits concurrent reads so recovery never takes the whole pool from REST. A
    /// permit is held exactly while a read uses a connection, on the blocking pool:
    /// it goes back when that work ends, whoever still waits for its answer.
    permits: Arc<Semaphore>,
    /// Reads in flight, by what they read: a second identical read awaits the first.
    /// An entry lives exactly as long as its read's task (see [`reads`]).
    in_flight: Arc<Mutex<reads::InFlight>>,
    /// How long a read may take, from its start to its answer (permit wait included).
    deadline: Duration,
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
            deadline: DEFAULT_READ_DEADLINE,
        }
    }

    /// The same change log, whose reads answer (an error, if need be) within `deadline`.
    pub fn with_read_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
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
    /// the head, at most [`READ_LIMIT`] of them), sharing the result with identical
    /// reads in flight. A shared result may come from a read that started before this
    /// call: a caller that needs a version it knows is committed checks the head.
    pub async fn read(&self, stream: Stream, read: Read) -> Result<Arc<ReadResult>, LogError> {
        reads::read(self, (stream, read)).await
    }

    /// Runs `query` on a connection of the pool under a read permit, answering within
    /// the read deadline. The permit moves with the query onto the blocking pool, so
    /// it is back only when the database work itself has ended.
    pub(super) async fn with_permit<T: Send + 'static>(
        &self,
        query: impl FnOnce(&mut crate::db::AnyConnection) -> Result<T, DieselError> + Send + 'static,
    ) -> Result<T, LogError> {
        self.with_permit_if(|| true, query)
            .await
            .map(|answer| answer.expect("always wanted"))
    }

    /// [`ChangeLog::with_permit`], asking `wanted` once the permit is held: `None`
    /// (and no query) if the answer is no longer wanted.
    pub(super) async fn with_permit_if<T: Send + 'static>(
        &self,
        wanted: impl FnOnce() -> bool,
        query: impl FnOnce(&mut crate::db::AnyConnection) -> Result<T, DieselError> + Send + 'static,
    ) -> Result<Option<T>, LogError> {
        let work = async {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| closed())?;
            if !wanted() {
                return Ok(None);
            }
            let pool = self.pool.clone();
            web::block(move || {
                let _permit = permit;
                let mut conn = pool.get().map_err(|e| LogError(e.to_string()))?;
                query(&mut conn).map_err(|e| LogError(e.to_string()))
            })
            .await
            .map_err(|_| closed())?
            .map(Some)
        };
        tokio::time::timeout(self.deadline, work)
            .await
            .unwrap_or_else(|_| Err(timed_out(self.deadline)))
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
            let mut append = || {
                conn.transaction(|conn| {
                    queries::append_room_event(conn, room.as_str(), keep, frame)
                })
            };
            match append() {
                // The room's first two events raced to create its stream row: the
                // loser finds the row now and appends after the winner.
                Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => append(),
                other => other,
            }
            .map_err(|e| LogError(e.to_string()))
        })
        .await
        .map_err(|_| closed())?
    }
}

#[cfg(test)]
impl ChangeLog {
    /// Read permits nobody holds.
    fn idle_permits(&self) -> usize {
        self.permits.available_permits()
    }

    /// Reads in the table of reads in flight.
    fn reads_in_flight(&self) -> usize {
        reads::lock(&self.in_flight).len()
    }
}

fn closed() -> LogError {
    LogError("the hub is shutting down".into())
}

fn timed_out(deadline: Duration) -> LogError {
    LogError(format!("no answer within {} ms", deadline.as_millis()))
}

#[cfg(test)]
mod tests;
