//! Identity: JWT claims, how tokens are verified and minted, which rooms a token may
//! join, and the REST extractor that authenticates a request.

mod claims;
mod extractor;
mod jwks;
mod keys;
mod policy;
mod reload;
mod revocation;
mod secret;
mod verifier;

pub use claims::{Claims, Role};
pub use extractor::{bearer_token, revoked, Caller};
pub use jwks::{JwksLocation, UNKNOWN_KID_INTERVAL};
pub use keys::KeyError;
pub use policy::{may_join, pattern_matches};
pub use reload::reload_on_sighup;
pub use revocation::{RevocationError, Revocations};
pub use secret::{load_or_generate_secret, read_secret, secret_file_for, SECRET_FILE_MODE};
pub use verifier::{AuthError, TokenVerifier};
