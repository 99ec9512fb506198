//! The one way a time enters the hub: RFC 3339 with a four-digit year.
//!
//! chrono's own `Deserialize` also takes expanded years (`+10000-…`, `-5000-…`). Neither
//! backend can hold them faithfully: SQLite stores times as text, where `+10000-…` sorts
//! before `9999-…` (so overlap checks, filters and ordering go wrong), and PostgreSQL
//! refuses years before 4713 BC (a 500 for bad input). So every body and query time is
//! read here, and anything outside `0001-01-01T00:00:00Z`..`9999-12-31T23:59:59Z`
//! (after conversion to UTC) is refused with a message naming the field.

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer};

/// Earliest year a time may have, in UTC.
pub const MIN_YEAR: i32 = 1;
/// Latest year a time may have, in UTC.
pub const MAX_YEAR: i32 = 9999;

/// Parses `value` as the time of `field`; the error names the field and says why.
pub fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    let four_digit_year = value.len() > 4
        && value.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && value.as_bytes()[4] == b'-';
    let parsed = four_digit_year
        .then(|| DateTime::parse_from_rfc3339(value).ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "`{field}` must be an RFC 3339 time with a four-digit year, \
                 e.g. 2030-01-01T09:00:00Z; got {value:?}"
            )
        })?;
    let utc = parsed.with_timezone(&Utc);
    if !(MIN_YEAR..=MAX_YEAR).contains(&utc.year()) {
        return Err(format!(
            "`{field}` must lie between the years {MIN_YEAR:04} and {MAX_YEAR} in UTC; got {value:?}"
        ));
    }
    Ok(utc)
}

/// Whether `value` is a time at all, if not one the hub takes: RFC 3339 as chrono
/// reads it, expanded years (`+10000-…`) included. A query parameter that is not is
/// `400` (it does not parse); one that is but was refused by [`parse_time`] is `422`.
pub fn reads_as_time(value: &str) -> bool {
    value.parse::<DateTime<chrono::FixedOffset>>().is_ok()
}

fn field<'de, D: Deserializer<'de>>(d: D, name: &str) -> Result<DateTime<Utc>, D::Error> {
    let value = String::deserialize(d)?;
    parse_time(name, &value).map_err(serde::de::Error::custom)
}

/// An explicit `null` means "unchanged", as an absent field does.
fn optional<'de, D: Deserializer<'de>>(
    d: D,
    name: &str,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|value| parse_time(name, &value).map_err(serde::de::Error::custom))
        .transpose()
}

/// `deserialize_with` for `startsAt`.
pub fn starts_at<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    field(d, "startsAt")
}

/// `deserialize_with` for `endsAt`.
pub fn ends_at<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    field(d, "endsAt")
}

/// `deserialize_with` for an optional `startsAt` (absent stays `None` by `default`).
pub fn some_starts_at<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    optional(d, "startsAt")
}

/// `deserialize_with` for an optional `endsAt` (absent stays `None` by `default`).
pub fn some_ends_at<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    optional(d, "endsAt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_digit_years_only() {
        for good in [
            "2030-01-01T09:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2030-01-01T09:00:00+02:00",
        ] {
            assert!(parse_time("startsAt", good).is_ok(), "{good}");
        }
        for bad in [
            "+10000-01-02T00:00:00Z",
            "-5000-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "+2030-01-01T00:00:00Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:00:00-02:00",
            "2030-01-01",
            "2030-01-01 09:00",
            "yesterday",
            "",
        ] {
            let err = parse_time("endsAt", bad).unwrap_err();
            assert!(err.contains("`endsAt`"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_time_outside_the_four_digit_years_is_still_a_time() {
        for time in [
            "+10000-01-02T00:00:00Z",
            "-5000-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:00:00-02:00",
            "2030-01-01T09:00:00Z",
        ] {
            assert!(reads_as_time(time), "{time}");
        }
        for not_a_time in ["yesterday-ish", "2030-01-01", "2030-01-01T25:00:00Z", ""] {
            assert!(!reads_as_time(not_a_time), "{not_a_time}");
        }
    }
}
