//! The keys tokens are verified with, and how each kind is read: the HS256 secret, a
//! PEM public key, or a JSON Web Key Set.
//!
//! Every key carries its own `Validation`, built from configuration for the key's one
//! algorithm, never from a token's header: a token signed with any other algorithm
//! (`none`, HS256 against a public key, RS256 against an EC key) is refused.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::Settings;

/// Why the configured keys cannot be used. Each message names the variable to fix.
#[derive(Debug)]
pub enum KeyError {
    /// `EVENTIDE_JWT_SECRET` is unset and the generated secret file cannot be used.
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
        /// The I/O error, if one caused it.
        source: Option<std::io::Error>,
    },
    /// `EVENTIDE_JWT_SECRET` is unset on a database that has no file to keep one beside.
    SecretRequired,
    /// The `EVENTIDE_JWT_PUBLIC_KEY_FILE` cannot be used.
    PublicKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The `EVENTIDE_JWT_JWKS_URL` set cannot be read or holds no usable key.
    Jwks {
        /// Where the set was read from.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The configured keys can verify but not sign.
    CannotMint(&'static str),
    /// Signing failed.
    Sign(jsonwebtoken::errors::Error),
    /// The blocking pool that reads key files is gone (the runtime is stopping).
    Blocking(actix_web::error::BlockingError),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::SecretFile {
                path,
                detail,
                source,
            } => {
                write!(
                    f,
                    "EVENTIDE_JWT_SECRET is not set, and the generated secret file {} cannot \
                     be used: {detail}",
                    path.display()
                )?;
                match source {
                    Some(e) => write!(f, ": {e}"),
                    None => Ok(()),
                }
            }
            KeyError::SecretRequired => f.write_str(
                "EVENTIDE_JWT_SECRET: must be set when DATABASE_URL is PostgreSQL, \
                 so that every node verifies tokens with the same secret",
            ),
            KeyError::PublicKeyFile { path, detail } => write!(
                f,
                "EVENTIDE_JWT_PUBLIC_KEY_FILE: {}: {detail}",
                path.display()
            ),
            KeyError::Jwks { url, detail } => {
                write!(
                    f,
                    "EVENTIDE_JWT_JWKS_URL: cannot use the key set at {url}: {detail}"
                )
            }
            KeyError::CannotMint(why) => write!(f, "cannot mint tokens: {why}"),
            KeyError::Sign(e) => write!(f, "cannot sign the token: {e}"),
            KeyError::Blocking(e) => write!(f, "cannot read the keys: {e}"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::SecretFile {
                source: Some(e), ..
            } => Some(e),
            KeyError::Sign(e) => Some(e),
            KeyError::Blocking(e) => Some(e),
            _ => None,
        }
    }
}

/// One verification key with the validation of its algorithm.
pub struct Key {
    pub(super) decoding: DecodingKey,
    pub(super) validation: Validation,
}

/// The keys in force.
pub enum KeySet {
    /// One key: the HS256 secret or the PEM public key.
    Single(Box<Key>),
    /// A JSON Web Key Set: the token header's `kid` picks the key.
    ByKid(HashMap<String, Key>),
}

/// The claim rules every key applies: issuer, audience, leeway.
#[derive(Debug, Clone)]
pub struct Rules {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl Rules {
    /// The rules the settings call for.
    pub fn from_settings(settings: &Settings) -> Self {
        Rules {
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            leeway: settings.jwt_leeway_secs,
        }
    }

    /// The clock leeway, in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    /// The key `decoding`, for `algorithm` only.
    pub fn key(&self, decoding: DecodingKey, algorithm: Algorithm) -> Key {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => {
                validation.validate_aud = false;
                validation.aud = None::<HashSet<String>>;
            }
        }
        Key {
            decoding,
            validation,
        }
    }

    /// The HS256 key of `secret`.
    pub fn hs256(&self, secret: &[u8]) -> Key {
        self.key(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// The RS256 or ES256 key of the PEM public key in `path` (the key type picks the
    /// algorithm). Blocking: reads the file.
    pub fn pem_file(&self, path: &Path) -> Result<Key, KeyError> {
        let refuse = |detail: String| KeyError::PublicKeyFile {
            path: path.to_owned(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            Ok(self.key(key, Algorithm::RS256))
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            Ok(self.key(key, Algorithm::ES256))
        } else {
            Err(refuse("not an RSA or EC (P-256) public key in PEM".into()))
        }
    }

    /// The usable keys of a JSON Web Key Set: those with a `kid`, meant for signatures,
    /// of type RSA (RS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA). Other keys are
    /// skipped; a set with no usable key is an error (the caller keeps its last set).
    pub fn jwks(&self, body: &[u8]) -> Result<HashMap<String, Key>, String> {
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet = serde_json::from_slice(body)
            .map_err(|e| format!("not a JSON Web Key Set ({{\"keys\": [...]}}): {e}"))?;
        let mut keys = HashMap::new();
        for raw in set.keys {
            // One key of an unknown kind must not hide the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let Some(algorithm) = algorithm_of(&jwk) else {
                continue;
            };
            match DecodingKey::from_jwk(&jwk) {
                Ok(decoding) => {
                    keys.insert(kid, self.key(decoding, algorithm));
                }
                Err(e) => log::warn!("JWKS: key {kid:?} skipped: {e}"),
            }
        }
        if keys.is_empty() {
            return Err("no usable key (RS256, ES256 or EdDSA, with a `kid`)".into());
        }
        Ok(keys)
    }
}

/// The one algorithm a JWK is used with, if the hub accepts it.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    // A key that names another algorithm (RS512, RSA-OAEP, …) is not for us.
    match jwk.common.key_algorithm {
        None => Some(algorithm),
        Some(named) => (KeyAlgorithm::from(algorithm) == named).then_some(algorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/jwks.json");

    fn rules() -> Rules {
        Rules::from_settings(&Settings::with_database("sqlite://unused.db"))
    }

    #[test]
    fn every_fixture_key_is_used_with_its_algorithm() {
        let keys = rules().jwks(FIXTURE.as_bytes()).unwrap();
        let algorithm = |kid: &str| keys[kid].validation.algorithms.clone();
        assert_eq!(algorithm("rsa-1"), [Algorithm::RS256]);
        assert_eq!(algorithm("rsa-2"), [Algorithm::RS256]);
        assert_eq!(algorithm("ec-1"), [Algorithm::ES256]);
        assert_eq!(algorithm("ed-1"), [Algorithm::EdDSA]);
    }

    #[test]
    fn keys_the_hub_must_not_use_are_skipped() {
        let mut set: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        let keys = set["keys"].as_array_mut().unwrap();
        keys[0]["use"] = "enc".into();
        keys[1]["alg"] = "RS512".into();
        keys[2].as_object_mut().unwrap().remove("kid");
        keys.push(serde_json::json!({"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}));
        keys.push(serde_json::json!({"kty": "unknown-kind", "kid": "x"}));
        let usable = rules().jwks(set.to_string().as_bytes()).unwrap();
        let mut kids: Vec<&String> = usable.keys().collect();
        kids.sort();
        assert_eq!(kids, ["ed-1"]);

        let none = serde_json::json!({"keys": [{"kty": "oct", "kid": "hs", "k": "c2VjcmV0"}]});
        assert!(rules().jwks(none.to_string().as_bytes()).is_err());
        assert!(rules().jwks(b"not json").is_err());
    }
}
