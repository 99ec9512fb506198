//! Diesel table definitions, shared by the SQLite and PostgreSQL backends.
//!
//! Written to match both `migrations/sqlite` and `migrations/postgres`: only types in
//! the subset that diesel's `MultiConnection` supports (integers, text, timestamps).

diesel::table! {
    /// Each provider's availability stream position and epoch.
    providers (id) {
        id -> BigInt,
        version -> BigInt,
        epoch -> Text,
    }
}

diesel::table! {
    /// Availability slots; a slot is the half-open interval [starts_at, ends_at) in UTC.
    slots (id) {
        id -> BigInt,
        provider_id -> BigInt,
        starts_at -> Timestamp,
        ends_at -> Timestamp,
        status -> Text,
        note -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// The last changes of each provider, as the exact frames that were sent.
    availability_changes (provider_id, version) {
        provider_id -> BigInt,
        version -> BigInt,
        action -> Text,
        frame -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Each history room's stream position and epoch.
    room_streams (room) {
        room -> Text,
        version -> BigInt,
        epoch -> Text,
    }
}

diesel::table! {
    /// The last events of each history room, as the exact frames that were sent.
    room_events (room, version) {
        room -> Text,
        version -> BigInt,
        frame -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Revoked subjects and the second up to which their tokens are refused.
    revocations (sub) {
        sub -> Text,
        revoked_before -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    providers,
    slots,
    availability_changes,
    room_streams,
    room_events,
    revocations
);
