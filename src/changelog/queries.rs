//! The change-log queries, on either backend. Everything here blocks: the
//! [`ChangeLog`](super::ChangeLog) runs it on the blocking pool.

use std::collections::HashMap;

use bytestring::ByteString;
use chrono::{SubsecRound, Utc};
use diesel::prelude::*;

use super::Stream;
use crate::db::schema::{availability_changes, providers, room_events, room_streams};
use crate::db::AnyConnection;
use crate::rooms::sequencer::Versioned;

/// Rows one read returns at most; a longer gap is read in several steps.
pub const READ_LIMIT: i64 = 2_000;

/// The stream's current version (0 before its first change).
pub fn head(conn: &mut AnyConnection, stream: &Stream) -> QueryResult<i64> {
    let version = match stream {
        Stream::Provider(id) => providers::table
            .find(id)
            .select(providers::version)
            .first::<i64>(conn)
            .optional()?,
        Stream::Room(room) => room_streams::table
            .find(room.as_str())
            .select(room_streams::version)
            .first::<i64>(conn)
            .optional()?,
    };
    Ok(version.unwrap_or(0))
}

/// The heads of many streams in two queries (one per kind).
pub fn heads(conn: &mut AnyConnection, streams: &[Stream]) -> QueryResult<HashMap<Stream, i64>> {
    let mut ids = Vec::new();
    let mut rooms = Vec::new();
    for stream in streams {
        match stream {
            Stream::Provider(id) => ids.push(*id),
            Stream::Room(room) => rooms.push(room.as_str().to_owned()),
        }
    }
    let mut out: HashMap<Stream, i64> = streams.iter().map(|s| (s.clone(), 0)).collect();
    for chunk in ids.chunks(500) {
        let rows: Vec<(i64, i64)> = providers::table
            .filter(providers::id.eq_any(chunk))
            .select((providers::id, providers::version))
            .load(conn)?;
        out.extend(rows.into_iter().map(|(id, v)| (Stream::Provider(id), v)));
    }
    for chunk in rooms.chunks(500) {
        let rows: Vec<(String, i64)> = room_streams::table
            .filter(room_streams::room.eq_any(chunk))
            .select((room_streams::room, room_streams::version))
            .load(conn)?;
        for (room, v) in rows {
            if let Ok(room) = crate::rooms::RoomName::parse(&room) {
                out.insert(Stream::Room(room), v);
            }
        }
    }
    Ok(out)
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
