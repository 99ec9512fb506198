//! The change-log queries, on either backend. Everything here blocks: the
//! [`ChangeLog`](super::ChangeLog) runs it on the blocking pool.

use std::collections::HashMap;

use bytestring::ByteString;
use chrono::{SubsecRound, Utc};
use diesel::prelude::*;

use super::Stream;
use crate::db::schema::{availability_changes, providers, room_events, room_streams};
use crate::db::AnyConnection;
use crate::rooms::sequencer::{Epoch, Versioned};

/// Rows one read returns at most; a longer gap is read in several steps.
pub const READ_LIMIT: i64 = 2_000;

/// Where a stream stands: its head and epoch.
pub type Position = (i64, Epoch);

/// The stream's head and epoch (`(0, "")` before its first change).
pub fn position(conn: &mut AnyConnection, stream: &Stream) -> QueryResult<Position> {
    let row = match stream {
        Stream::Provider(id) => providers::table
            .find(id)
            .select((providers::version, providers::epoch))
            .first::<(i64, String)>(conn)
            .optional()?,
        Stream::Room(room) => room_streams::table
            .find(room.as_str())
            .select((room_streams::version, room_streams::epoch))
            .first::<(i64, String)>(conn)
            .optional()?,
    };
    Ok(row.map_or((0, Epoch::from("")), |(v, e)| (v, Epoch::from(e))))
}

/// The positions of `streams`, in their order: one query per kind of stream, so the
/// caller bounds the batch (a stream without a row stands at `(0, "")`).
pub fn positions(conn: &mut AnyConnection, streams: &[Stream]) -> QueryResult<Vec<Position>> {
    let mut ids = Vec::new();
    let mut rooms = Vec::new();
    for stream in streams {
        match stream {
            Stream::Provider(id) => ids.push(*id),
            Stream::Room(room) => rooms.push(room.as_str()),
        }
    }
    let mut by_id = HashMap::new();
    if !ids.is_empty() {
        let rows: Vec<(i64, i64, String)> = providers::table
            .filter(providers::id.eq_any(&ids))
            .select((providers::id, providers::version, providers::epoch))
            .load(conn)?;
        by_id = rows
            .into_iter()
            .map(|(id, v, e)| (id, (v, Epoch::from(e))))
            .collect();
    }
    let mut by_room = HashMap::new();
    if !rooms.is_empty() {
        let rows: Vec<(String, i64, String)> = room_streams::table
            .filter(room_streams::room.eq_any(&rooms))
            .select((
                room_streams::room,
                room_streams::version,
                room_streams::epoch,
            ))
            .load(conn)?;
        by_room = rows
            .into_iter()
            .map(|(room, v, e)| (room, (v, Epoch::from(e))))
            .collect();
    }
    let unborn = Epoch::from("");
    Ok(streams
        .iter()
        .map(|stream| {
            let found = match stream {
                Stream::Provider(id) => by_id.remove(id),
                Stream::Room(room) => by_room.remove(room.as_str()),
            };
            found.unwrap_or_else(|| (0, unborn.clone()))
        })
        .collect())
}

/// Replaces the stream's epoch `stale` by `fresh`, unless another node replaced it
/// already (then its epoch stays): every node ends on the same one. Answers where the
/// stream stands afterwards.
pub fn replace_epoch(
    conn: &mut AnyConnection,
    stream: &Stream,
    stale: &str,
    fresh: &str,
) -> QueryResult<Position> {
    match stream {
        Stream::Provider(id) => diesel::update(
            providers::table
                .filter(providers::id.eq(id))
                .filter(providers::epoch.eq(stale)),
        )
        .set(providers::epoch.eq(fresh))
        .execute(conn)?,
        Stream::Room(room) => diesel::update(
            room_streams::table
                .filter(room_streams::room.eq(room.as_str()))
                .filter(room_streams::epoch.eq(stale)),
        )
        .set(room_streams::epoch.eq(fresh))
        .execute(conn)?,
    };
    position(conn, stream)
}

/// The kept changes after `after`, up to `upto`, in order (at most [`READ_LIMIT`]).
pub fn changes_after(
    conn: &mut AnyConnection,
    stream: &Stream,
    after: i64,
    upto: i64,
) -> QueryResult<Vec<Versioned>> {
    let rows: Vec<(i64, String)> = match stream {
        Stream::Provider(id) => availability_changes::table
            .filter(availability_changes::provider_id.eq(id))
            .filter(availability_changes::version.gt(after))
            .filter(availability_changes::version.le(upto))
            .order(availability_changes::version.asc())
            .select((availability_changes::version, availability_changes::frame))
            .limit(READ_LIMIT)
            .load(conn)?,
        Stream::Room(room) => room_events::table
            .filter(room_events::room.eq(room.as_str()))
            .filter(room_events::version.gt(after))
            .filter(room_events::version.le(upto))
            .order(room_events::version.asc())
            .select((room_events::version, room_events::frame))
            .limit(READ_LIMIT)
            .load(conn)?,
    };
    Ok(rows
        .into_iter()
        .map(|(v, frame)| (v, ByteString::from(frame)))
        .collect())
}

/// Appends one event to a history room: bumps its version first (so concurrent
/// writers queue on the row), stores the frame `frame(version)`, prunes what is
/// beyond `keep`. The caller runs it in a transaction.
pub fn append_room_event(
    conn: &mut AnyConnection,
    room: &str,
    keep: i64,
    frame: impl Fn(i64) -> ByteString,
) -> QueryResult<Versioned> {
    let updated = diesel::update(room_streams::table.find(room))
        .set(room_streams::version.eq(room_streams::version + 1))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(room_streams::table)
            .values((room_streams::room.eq(room), room_streams::version.eq(1)))
            .execute(conn)?;
    }
    let version = room_streams::table
        .find(room)
        .select(room_streams::version)
        .first::<i64>(conn)?;
    let frame = frame(version);
    diesel::insert_into(room_events::table)
        .values((
            room_events::room.eq(room),
            room_events::version.eq(version),
            room_events::frame.eq(&*frame),
            room_events::created_at.eq(Utc::now().trunc_subsecs(3).naive_utc()),
        ))
        .execute(conn)?;
    diesel::delete(
        room_events::table
            .filter(room_events::room.eq(room))
            .filter(room_events::version.le(version - keep)),
    )
    .execute(conn)?;
    Ok((version, frame))
}
