//! Which rooms a token may join (`docs/protocol.md` §2).

use super::{Claims, Role};

/// `admin` and `service` may join any room; a `provider` its own `provider-{id}`;
/// anyone the rooms its `rooms` claim matches.
pub fn may_join(claims: &Claims, room: &str) -> bool {
    if claims.role.is_privileged() {
        return true;
    }
    if claims.role == Role::Provider {
        if let Some(id) = claims.provider_id {
            if room.strip_prefix("provider-") == Some(id.to_string().as_str()) {
                return true;
            }
        }
    }
    claims.rooms.iter().any(|p| pattern_matches(p, room))
}

/// A pattern is an exact room name, or a prefix followed by `*`. A lone `*` matches
/// every room.
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, provider_id: Option<i64>, rooms: &[&str]) -> Claims {
        Claims {
            sub: "u".into(),
            role,
            provider_id,
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            exp: 0,
            iss: None,
            aud: None,
            iat: None,
        }
    }

    #[test]
    fn provider_joins_only_its_own_room() {
        let c = claims(Role::Provider, Some(42), &[]);
        assert!(may_join(&c, "provider-42"));
        assert!(!may_join(&c, "provider-420"));
        assert!(!may_join(&c, "provider-4"));
        assert!(!may_join(&c, "provider-42x"));
    }

    #[test]
    fn rooms_claim_grants_exact_and_prefix() {
        let c = claims(Role::Client, None, &["lobby", "provider-*"]);
        assert!(may_join(&c, "lobby"));
        assert!(!may_join(&c, "lobby2"));
        assert!(may_join(&c, "provider-7"));
        assert!(!may_join(&c, "other"));
    }

    #[test]
    fn privileged_roles_join_anything() {
        assert!(may_join(&claims(Role::Admin, None, &[]), "x"));
        assert!(may_join(&claims(Role::Service, None, &[]), "provider-1"));
        assert!(!may_join(&claims(Role::Client, None, &[]), "provider-1"));
    }
}
