//! The slot resource as stored and as sent (camelCase, RFC 3339 UTC times), and the
//! bodies that create and patch it.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::time;
use crate::db::schema::slots;

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 500;

/// Whether a slot can be booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SlotStatus {
    /// Free to book (the default).
    Available,
    /// Taken.
    Booked,
    /// Closed by the provider.
    Blocked,
}

impl SlotStatus {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Available => "available",
            SlotStatus::Booked => "booked",
            SlotStatus::Blocked => "blocked",
        }
    }

    fn from_stored(s: &str) -> Self {
        match s {
            "booked" => SlotStatus::Booked,
            "blocked" => SlotStatus::Blocked,
            _ => SlotStatus::Available,
        }
    }
}

/// A row of the `slots` table.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = slots)]
pub struct SlotRow {
    pub id: i64,
    pub provider_id: i64,
    pub starts_at: NaiveDateTime,
    pub ends_at: NaiveDateTime,
    pub status: String,
    pub note: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A slot as the API and the events show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
// Also documents `additionalProperties: false`, so a field added here without the
// schema knowing fails the OpenAPI and AsyncAPI tests.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"id": 7, "providerId": 42, "startsAt": "2026-12-01T09:00:00Z",
    "endsAt": "2026-12-01T09:30:00Z", "status": "available", "note": null,
    "createdAt": "2026-11-20T08:00:00.000Z", "updatedAt": "2026-11-20T08:00:00.000Z"}))]
pub struct Slot {
    /// Unique id.
    #[schema(minimum = 1)]
    pub id: i64,
    /// The provider whose slot this is.
    #[schema(minimum = 1)]
    pub provider_id: i64,
    /// Start, inclusive.
    pub starts_at: DateTime<Utc>,
    /// End, exclusive.
    pub ends_at: DateTime<Utc>,
    /// Available, booked or blocked.
    pub status: SlotStatus,
    /// Free text, at most 500 characters.
    #[schema(max_length = 500)]
    pub note: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<SlotRow> for Slot {
    fn from(row: SlotRow) -> Self {
        Slot {
            id: row.id,
            provider_id: row.provider_id,
            starts_at: row.starts_at.and_utc(),
            ends_at: row.ends_at.and_utc(),
            status: SlotStatus::from_stored(&row.status),
            note: row.note,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// The body of `POST /api/providers/{providerId}/availability`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"startsAt": "2026-12-01T09:00:00Z", "endsAt": "2026-12-01T09:30:00Z", "note": "first"}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSlot {
    /// Start, inclusive.
    #[serde(deserialize_with = "time::starts_at")]
    #[schema(pattern = "^[0-9]{4}-")]
    pub starts_at: DateTime<Utc>,
    /// End, exclusive; after `startsAt`.
    #[serde(deserialize_with = "time::ends_at")]
    #[schema(pattern = "^[0-9]{4}-")]
    pub ends_at: DateTime<Utc>,
    /// Defaults to `available`.
    #[serde(default)]
    pub status: Option<SlotStatus>,
    /// Optional note, at most 500 characters (no U+0000).
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\\u0000]*$")]
    pub note: Option<String>,
}

/// The body of `PATCH /api/availability/{id}`: any subset of the fields.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[schema(example = json!({"status": "booked", "note": null}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotPatch {
    /// New start.
    #[serde(default, deserialize_with = "time::some_starts_at")]
    #[schema(pattern = "^[0-9]{4}-")]
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    #[serde(default, deserialize_with = "time::some_ends_at")]
    #[schema(pattern = "^[0-9]{4}-")]
    pub ends_at: Option<DateTime<Utc>>,
    /// New status.
    #[serde(default)]
    pub status: Option<SlotStatus>,
    /// Absent: unchanged; `null`: cleared; a string (at most 500 characters, no
    /// U+0000): replaced.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500, pattern = "^[^\\u0000]*$")]
    pub note: Option<Option<String>>,
}

/// Tells an absent field (`None`, by `default`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Checks the rules JSON types cannot express; the message names the field.
pub fn validate(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    note: Option<&str>,
) -> Result<(), String> {
    if ends_at <= starts_at {
        return Err("`endsAt` must be after `startsAt`".into());
    }
    if let Some(note) = note {
        // PostgreSQL text cannot hold U+0000 (it would be a 500 there); refuse it on
        // every backend alike.
        if note.contains('\0') {
            return Err("`note` must not contain the character U+0000".into());
        }
        let len = note.chars().count();
        if len > MAX_NOTE_CHARS {
            return Err(format!(
                "`note` is {len} characters; at most {MAX_NOTE_CHARS} are allowed"
            ));
        }
    }
    Ok(())
}
