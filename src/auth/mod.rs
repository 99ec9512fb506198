//! Identity: JWT claims, how tokens are verified and minted, which rooms a token may
//! join, and the REST extractor that authenticates a request.

mod claims;
mod extractor;
mod policy;
mod revocation;
mod secret;
mod verifier;

pub use claims::{Claims, Role};
pub use extractor::{bearer_token, revoked, Caller};
pub use policy::{may_join, pattern_matches};
pub use revocation::{RevocationError, Revocations};
pub use secret::{load_or_generate_secret, secret_file_for};
pub use verifier::{AuthError, TokenVerifier};
