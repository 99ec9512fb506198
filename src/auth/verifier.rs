//! Verifying tokens against the configured keys (an HS256 secret, a PEM public key, or
//! a JSON Web Key Set), keeping those keys current, and minting HS256 tokens for local
//! use.
//!
//! The keys in force sit behind one lock and are swapped whole: by a JWKS read, or by
//! SIGHUP for a key file or the generated secret file. A failed reload leaves the
//! previous keys in force.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, encode, Algorithm, EncodingKey, Header};

use super::jwks::{JwksLocation, Refresh};
use super::keys::{Key, KeyError, KeySet, Rules};
use super::{load_or_generate_secret, read_secret, secret_file_for, Claims, Role};
use crate::config::Settings;
use crate::db::DatabaseTarget;
use crate::metrics::Metrics;

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

impl std::error::Error for AuthError {}

/// Where the keys come from, and so how they are reloaded.
enum Source {
    /// `EVENTIDE_JWT_SECRET`: fixed for the life of the process.
    Secret,
    /// The generated secret file: re-read on SIGHUP.
    SecretFile(PathBuf),
    /// `EVENTIDE_JWT_PUBLIC_KEY_FILE`: re-read on SIGHUP.
    PemFile(PathBuf),
    /// `EVENTIDE_JWT_JWKS_URL`: re-read on an interval and on unknown `kid`s.
    Jwks(Refresh),
}

/// Verifies tokens against the configured keys, and mints HS256 tokens.
pub struct TokenVerifier {
    /// The keys in force; swapped whole, never edited in place.
    keys: RwLock<Arc<KeySet>>,
    /// The signing key, for `token` only (HS256 configurations).
    encoding: Option<EncodingKey>,
    rules: Rules,
    source: Source,
}

/// A refusal, before it is told to the caller: an unknown `kid` may still be fixed by
/// reading the key set again.
enum Refusal {
    UnknownKid(String),
    Other(AuthError),
}

impl TokenVerifier {
    /// The verifier of an HS256 secret, a PEM key file, the generated secret file, or
    /// (when `jwks` is given: the set's bytes, read by the caller) a JWKS. Blocking:
    /// reads key files.
    fn build(
        settings: &Settings,
        target: &DatabaseTarget,
        jwks: Option<(JwksLocation, Vec<u8>)>,
    ) -> Result<Self, KeyError> {
        let rules = Rules::from_settings(settings);
        let (keys, encoding, source) = if let Some((location, body)) = jwks {
            let keys = rules.jwks(&body).map_err(|detail| KeyError::Jwks {
                url: location.to_string(),
                detail,
            })?;
            let interval = Duration::from_secs(settings.jwt_jwks_refresh_secs);
            let refresh = Refresh::new(location, interval);
            (KeySet::ByKid(keys), None, Source::Jwks(refresh))
        } else if let Some(path) = &settings.jwt_public_key_file {
            let key = rules.pem_file(path)?;
            (
                KeySet::Single(Box::new(key)),
                None,
                Source::PemFile(path.clone()),
            )
        } else {
            let (secret, source) = match (&settings.jwt_secret, target.sqlite_path()) {
                (Some(secret), _) => (secret.clone(), Source::Secret),
                (None, Some(db_path)) => {
                    let path = secret_file_for(db_path);
                    (load_or_generate_secret(&path)?, Source::SecretFile(path))
                }
                (None, None) => return Err(KeyError::SecretRequired),
            };
            let key = rules.hs256(secret.as_bytes());
            let encoding = EncodingKey::from_secret(secret.as_bytes());
            (KeySet::Single(Box::new(key)), Some(encoding), source)
        };
        Ok(TokenVerifier {
            keys: RwLock::new(Arc::new(keys)),
            encoding,
            rules,
            source,
        })
    }

    /// The verifier the settings call for, without a JWKS: the public key file if set,
    /// else the HS256 secret from `EVENTIDE_JWT_SECRET`, else the one generated beside
    /// the SQLite file. What `token` uses; blocking.
    pub fn from_settings(settings: &Settings, target: &DatabaseTarget) -> Result<Self, KeyError> {
        if settings.jwt_jwks_url.is_some() {
            return Err(KeyError::CannotMint(
                "the hub verifies with a key set (EVENTIDE_JWT_JWKS_URL); \
                 tokens come from the identity provider that publishes it",
            ));
        }
        Self::build(settings, target, None)
    }

    /// The verifier of a running hub: [`TokenVerifier::from_settings`], or the JWKS
    /// read now (an unreadable set is an error naming `EVENTIDE_JWT_JWKS_URL`). Its
    /// counters are registered in `metrics`; [`TokenVerifier::keep_current`] then keeps
    /// its keys up to date.
    pub async fn load(
        settings: &Settings,
        target: &DatabaseTarget,
        metrics: &Metrics,
    ) -> Result<Arc<Self>, KeyError> {
        let jwks = match &settings.jwt_jwks_url {
            None => None,
            Some(url) => {
                let location = JwksLocation::parse(url).map_err(|detail| KeyError::Jwks {
                    url: url.clone(),
                    detail,
                })?;
                let body = location.read().await.map_err(|detail| KeyError::Jwks {
                    url: url.clone(),
                    detail,
                })?;
                Some((location, body))
            }
        };
        let (settings, target) = (settings.clone(), target.clone());
        let verifier = actix_web::web::block(move || Self::build(&settings, &target, jwks))
            .await
            .map_err(KeyError::Blocking)??;
        if let Source::Jwks(refresh) = &verifier.source {
            metrics.register(Box::new(refresh.refreshes.clone()));
            metrics.register(Box::new(refresh.failures.clone()));
        }
        Ok(Arc::new(verifier))
    }

    /// An HS256 verifier for the given secret.
    pub fn hs256(secret: &[u8], settings: &Settings) -> Self {
        let rules = Rules::from_settings(settings);
        TokenVerifier {
            keys: RwLock::new(Arc::new(KeySet::Single(Box::new(rules.hs256(secret))))),
            encoding: Some(EncodingKey::from_secret(secret)),
            rules,
            source: Source::Secret,
        }
    }

    /// The configured clock leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.rules.leeway()
    }

    /// Verifies a token and returns its claims. A `kid` missing from the key set makes
    /// the set be read again soon; [`TokenVerifier::verify_fresh`] also waits for it.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.check(token).map_err(|refusal| match refusal {
            Refusal::UnknownKid(kid) => {
                if let Source::Jwks(refresh) = &self.source {
                    refresh.unknown_kid();
                }
                unknown_kid(&kid)
            }
            Refusal::Other(e) => e,
        })
    }

    /// Verifies a token; if its `kid` is missing from the key set, reads the set again
    /// (at most once per 10 s) and waits a few seconds for it, so a key just added to
    /// the set verifies on its first use.
    pub async fn verify_fresh(&self, token: &str) -> Result<Claims, AuthError> {
        match self.check(token) {
            Ok(claims) => Ok(claims),
            Err(Refusal::Other(e)) => Err(e),
            Err(Refusal::UnknownKid(kid)) => {
                let waiting = match &self.source {
                    Source::Jwks(refresh) => refresh.unknown_kid(),
                    _ => None,
                };
                match waiting {
                    Some(receiver) if Refresh::wait(receiver.clone()).await => self.verify(token),
                    _ => Err(unknown_kid(&kid)),
                }
            }
        }
    }

    fn check(&self, token: &str) -> Result<Claims, Refusal> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let key: &Key = match &*keys {
            KeySet::Single(key) => key,
            KeySet::ByKid(keys) => {
                let header = decode_header(token)
                    .map_err(|_| Refusal::Other(AuthError::Invalid("malformed token".into())))?;
                if !matches!(
                    header.alg,
                    Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
                ) {
                    return Err(Refusal::Other(AuthError::Invalid(
                        "algorithm not accepted by this hub".into(),
                    )));
                }
                let kid = header.kid.ok_or_else(|| {
                    Refusal::Other(AuthError::Invalid("no `kid` in the token header".into()))
                })?;
                keys.get(&kid).ok_or(Refusal::UnknownKid(kid))?
            }
        };
        verify_with(token, key).map_err(Refusal::Other)
    }

    /// Re-reads a key file or the generated secret file (what SIGHUP does); keeps the
    /// keys in force when the file cannot be used. Blocking. `Ok(false)`: nothing to
    /// reload (the secret comes from the environment, or the keys from a JWKS).
    pub fn reload_files(&self) -> Result<bool, KeyError> {
        let key = match &self.source {
            Source::PemFile(path) => self.rules.pem_file(path)?,
            Source::SecretFile(path) => self.rules.hs256(read_secret(path)?.as_bytes()),
            Source::Secret | Source::Jwks(_) => return Ok(false),
        };
        self.replace(KeySet::Single(Box::new(key)));
        Ok(true)
    }

    fn replace(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// Keeps a JWKS current: reads it every `EVENTIDE_JWT_JWKS_REFRESH_SECS` and when
    /// an unknown `kid` asks, until the runtime stops. Returns at once for other
    /// sources. Runs on the actix runtime (awc is not `Send`).
    pub async fn keep_current(self: Arc<Self>) {
        let Source::Jwks(refresh) = &self.source else {
            return;
        };
        loop {
            refresh.next_read().await;
            let read = refresh.location.read().await;
            match read.and_then(|body| self.rules.jwks(&body)) {
                Ok(keys) => {
                    let count = keys.len();
                    self.replace(KeySet::ByKid(keys));
                    refresh.refreshes.inc();
                    log::debug!("JWKS: read {count} key(s) from {}", refresh.location);
                }
                Err(e) => {
                    refresh.failures.inc();
                    log::warn!(
                        "EVENTIDE_JWT_JWKS_URL: cannot re-read the key set at {} ({e}); \
                         the last good set stays in use",
                        refresh.location
                    );
                }
            }
            refresh.read_done();
        }
    }

    /// Signs `claims` with the HS256 secret, stamped with `iat` = `issued_at` (seconds
    /// since the epoch), so that a later revocation can tell old tokens from new.
    pub fn mint(&self, claims: &Claims, issued_at: u64) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or(KeyError::CannotMint(
            "the hub verifies with a public key (EVENTIDE_JWT_PUBLIC_KEY_FILE); \
             sign tokens with the matching private key instead",
        ))?;
        let minted = Claims {
            iat: Some(issued_at),
            ..claims.clone()
        };
        encode(&Header::new(Algorithm::HS256), &minted, key).map_err(KeyError::Sign)
    }
}

fn unknown_kid(kid: &str) -> AuthError {
    AuthError::Invalid(format!("no key {kid:?} in the key set"))
}

/// Verifies `token` with one key and checks what the claims' types cannot.
fn verify_with(token: &str, key: &Key) -> Result<Claims, AuthError> {
    let data = decode::<Claims>(token, &key.decoding, &key.validation).map_err(|e| {
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
    // Revocations compare `iat` with the second they were made: a token claiming to
    // be issued later than now would outlive every revocation of its subject.
    let now = jsonwebtoken::get_current_timestamp();
    if claims
        .iat
        .is_some_and(|iat| iat > now.saturating_add(key.validation.leeway))
    {
        return Err(AuthError::Invalid("issued in the future (`iat`)".into()));
    }
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
