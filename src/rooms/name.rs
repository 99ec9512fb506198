//! Room names: validated once, then shared cheaply (`Arc<str>`) between the registry,
//! sessions and every delivered event.

use std::fmt;
use std::sync::Arc;

/// A valid room name: `[A-Za-z0-9_.:-]{1,128}`. Deserializing validates too, so a
/// path parameter of this type is refused (400) before the body is read.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct RoomName(Arc<str>);

impl TryFrom<String> for RoomName {
    type Error = InvalidRoomName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        RoomName::parse(&name)
    }
}

/// Why a string is not a room name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRoomName(pub String);

impl fmt::Display for InvalidRoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid room name {:?}: use 1 to 128 of A-Z a-z 0-9 _ . : -",
            self.0.chars().take(140).collect::<String>()
        )
    }
}

impl RoomName {
    /// Longest allowed name.
    pub const MAX_LEN: usize = 128;

    /// Validates a room name.
    pub fn parse(name: &str) -> Result<Self, InvalidRoomName> {
        let valid = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if valid {
            Ok(RoomName(Arc::from(name)))
        } else {
            Err(InvalidRoomName(name.to_owned()))
        }
    }

    /// The room of a provider's availability.
    pub fn for_provider(provider_id: i64) -> Self {
        RoomName(Arc::from(format!("provider-{provider_id}")))
    }

    /// The provider whose availability room this is, for names of the exact form
    /// `provider-{id}` (other rooms have no version).
    pub fn provider_id(&self) -> Option<i64> {
        let id: i64 = self.0.strip_prefix("provider-")?.parse().ok()?;
        (format!("provider-{id}") == *self.0).then_some(id)
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(RoomName::parse("provider-42").is_ok());
        assert!(RoomName::parse("a.b:c_d-E9").is_ok());
        assert!(RoomName::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", " ", "a b", "é", "a/b", "a*", &"x".repeat(129)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn provider_rooms_have_canonical_ids() {
        assert_eq!(
            RoomName::parse("provider-42").unwrap().provider_id(),
            Some(42)
        );
        assert_eq!(RoomName::parse("provider-042").unwrap().provider_id(), None);
        assert_eq!(RoomName::parse("provider-x").unwrap().provider_id(), None);
        assert_eq!(RoomName::parse("lobby").unwrap().provider_id(), None);
    }
}
