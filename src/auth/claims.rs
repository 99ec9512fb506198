//! The claims an Eventide token carries (`docs/protocol.md` §2).

use serde::{Deserialize, Serialize};

/// What a token's holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Operators: every room, every route.
    Admin,
    /// Internal services: every room, every route.
    Service,
    /// A provider: its own room and its own slots.
    Provider,
    /// A browser user: read-only, rooms granted by the `rooms` claim.
    Client,
}

impl Role {
    /// The role's name as it appears in tokens and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Service => "service",
            Role::Provider => "provider",
            Role::Client => "client",
        }
    }

    /// Admins and services may act on every provider and emit events.
    pub fn is_privileged(self) -> bool {
        matches!(self, Role::Admin | Role::Service)
    }
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// User or service id.
    pub sub: String,
    /// What the holder is.
    pub role: Role,
    /// The provider this user is (required for `provider`).
    #[serde(
        rename = "providerId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<i64>,
    /// Extra room patterns this token may join: exact names or prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issuer, checked when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (a string or a list), checked when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Issued at, seconds since the epoch: a revocation refuses the subject's tokens
    /// issued at or before it (and those without `iat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    /// Whether this token may change the slots of `provider_id`.
    pub fn may_manage_provider(&self, provider_id: i64) -> bool {
        self.role.is_privileged()
            || (self.role == Role::Provider && self.provider_id == Some(provider_id))
    }

    /// Whether two tokens name the same holder (what `refreshToken` requires).
    pub fn same_identity(&self, other: &Claims) -> bool {
        self.sub == other.sub && self.role == other.role && self.provider_id == other.provider_id
    }
}
