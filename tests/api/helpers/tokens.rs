//! Tokens for test hubs: claims per role, signed with the secret every test hub uses.

use std::time::{SystemTime, UNIX_EPOCH};

use eventide_hub::auth::{Claims, Role};
use jsonwebtoken::{encode, EncodingKey, Header};

/// The HS256 secret of test hubs.
pub const SECRET: &str = "test-secret-0123456789";

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `role`, valid for an hour.
pub fn claims(role: Role, provider_id: Option<i64>) -> Claims {
    Claims {
        sub: match provider_id {
            Some(id) => format!("provider-{id}"),
            None => format!("{}-user", role.as_str()),
        },
        role,
        provider_id,
        rooms: Vec::new(),
        exp: now() + 3600,
        iss: None,
        aud: None,
        iat: Some(now()),
    }
}

/// Signs any JSON claims with the test secret.
pub fn sign(claims: &impl serde::Serialize) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// An admin token.
pub fn admin() -> String {
    sign(&claims(Role::Admin, None))
}

/// A service token.
pub fn service() -> String {
    sign(&claims(Role::Service, None))
}

/// A provider's token.
pub fn provider(id: i64) -> String {
    sign(&claims(Role::Provider, Some(id)))
}

/// A client token that may join the given room patterns.
pub fn client_with_rooms(rooms: &[&str]) -> String {
    let mut c = claims(Role::Client, None);
    c.rooms = rooms.iter().map(|r| r.to_string()).collect();
    sign(&c)
}
