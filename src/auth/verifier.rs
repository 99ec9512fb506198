//! Verifying tokens (HS256 with a secret, or RS256/ES256 with a public key) and minting
//! HS256 tokens for local use.
//!
//! The accepted algorithm comes from configuration, never from the token's header, so
//! `alg: none` and tokens of the other key family are refused.

use std::collections::HashSet;
use std::path::Path;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{load_or_generate_secret, secret_file_for, Claims, Role};
use crate::config::Settings;
use crate::db::DatabaseTarget;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was presented.
    Missing,
    /// The token is malformed, badly signed, of the wrong algorithm or its claims are wrong.
    Invalid(String),
    /// The token's `exp` has passed.
    Expired,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Missing => write!(
                f,
                "missing token: send `Authorization: Bearer <jwt>` (or `access_token` on /ws)"
            ),
            AuthError::Invalid(why) => write!(f, "invalid token: {why}"),
            AuthError::Expired => write!(f, "token expired"),
        }
    }
}

/// Verifies tokens against the configured key, and mints HS256 tokens.
pub struct TokenVerifier {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    leeway: u64,
}

impl TokenVerifier {
    /// The verifier the settings call for: the public key file if set, else the HS256
    /// secret from `EVENTIDE_JWT_SECRET`, else the one generated beside the SQLite file.
    /// `serve` and `token` both find their key here.
    pub fn from_settings(settings: &Settings, target: &DatabaseTarget) -> Result<Self, String> {
        if let Some(path) = &settings.jwt_public_key_file {
            return Self::from_public_key_file(path, settings);
        }
        let secret = match (&settings.jwt_secret, target.sqlite_path()) {
            (Some(secret), _) => secret.clone(),
            (None, Some(db_path)) => load_or_generate_secret(&secret_file_for(db_path))?,
            (None, None) => {
                return Err(
                    "EVENTIDE_JWT_SECRET: must be set when DATABASE_URL is PostgreSQL, \
                     so that every node verifies tokens with the same secret"
                        .into(),
                )
            }
        };
        Ok(Self::hs256(secret.as_bytes(), settings))
    }

    /// An HS256 verifier for the given secret.
    pub fn hs256(secret: &[u8], settings: &Settings) -> Self {
        let validation = Self::validation(Algorithm::HS256, settings);
        TokenVerifier {
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            validation,
            leeway: settings.jwt_leeway_secs,
        }
    }

    /// An RS256 or ES256 verifier for the PEM public key in `path` (the key type picks
    /// the algorithm). Such a verifier cannot mint tokens.
    pub fn from_public_key_file(path: &Path, settings: &Settings) -> Result<Self, String> {
        let pem = std::fs::read(path).map_err(|e| {
            format!(
                "EVENTIDE_JWT_PUBLIC_KEY_FILE: cannot read {}: {e}",
                path.display()
            )
        })?;
        let (decoding, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            (key, Algorithm::RS256)
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            (key, Algorithm::ES256)
        } else {
            return Err(format!(
                "EVENTIDE_JWT_PUBLIC_KEY_FILE: {} is not an RSA or EC (P-256) public key in PEM",
                path.display()
            ));
        };
        Ok(TokenVerifier {
            decoding,
            encoding: None,
            validation: Self::validation(algorithm, settings),
            leeway: settings.jwt_leeway_secs,
        })
    }

    fn validation(algorithm: Algorithm, settings: &Settings) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = settings.jwt_leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if settings.jwt_issuer.is_some() {
            required.push("iss");
        }
        if settings.jwt_audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &settings.jwt_issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => {
                validation.validate_aud = false;
                validation.aud = None::<HashSet<String>>;
            }
        }
        validation
    }

    /// The configured clock leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => {
                    AuthError::Invalid("algorithm not accepted by this hub".into())
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Invalid(format!("missing claim `{c}`"))
                }
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet (nbf)".into()),
                ErrorKind::Json(_) => AuthError::Invalid(
                    "claims do not fit (need string `sub`, known `role`, integer `exp`)".into(),
                ),
                _ => AuthError::Invalid("malformed token".into()),
            }
        })?;
        let claims = data.claims;
        if claims.role == Role::Provider && claims.provider_id.is_none() {
            return Err(AuthError::Invalid(
                "a `provider` token needs an integer `providerId`".into(),
            ));
        }
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("`sub` must not be empty".into()));
        }
        Ok(claims)
    }

    /// Signs `claims` with the HS256 secret.
    pub fn mint(&self, claims: &Claims) -> Result<String, String> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            "cannot mint tokens: the hub verifies with a public key (EVENTIDE_JWT_PUBLIC_KEY_FILE); \
             sign tokens with the matching private key instead"
                .to_owned()
        })?;
        encode(&Header::new(Algorithm::HS256), claims, key).map_err(|e| e.to_string())
    }
}
