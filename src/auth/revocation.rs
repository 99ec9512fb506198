//! Revoked subjects: a subject's tokens issued at or before its revocation second (and
//! its tokens without `iat`, or with one past `i64`) are refused at the handshake, on
//! REST, on `refreshToken` and on `/metrics`, on every node and after restarts.
//!
//! The database holds the truth. Each node keeps it in memory, so checking a token
//! costs no query: the node that revokes notes it at once, the others hear it through
//! the cluster within milliseconds, and every node re-reads what changed every
//! [`RELOAD_EVERY`] in case that message was lost. A revocation a node first learns
//! from that re-read closes the subject's sockets on that node, as the lost message
//! would have: so every socket of a revoked subject closes within [`RELOAD_EVERY`]
//! (plus one read) even with Redis down.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web;
use diesel::prelude::*;

use super::Claims;
use crate::db::schema::revocations;
use crate::db::DbPool;

/// How often a node re-reads revocations made elsewhere.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Clock skew between nodes tolerated by the incremental re-read.
const SKEW_SECS: i64 = 60;

/// The revocation could not be stored or read.
#[derive(Debug)]
pub struct RevocationError(String);

impl std::fmt::Display for RevocationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "revocations unavailable: {}", self.0)
    }
}

impl std::error::Error for RevocationError {}

/// The revoked subjects, shared by everything that checks tokens.
pub struct Revocations {
    pool: DbPool,
    /// Subject → the second up to which its tokens are refused. Only ever rises.
    revoked: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Loads every revocation from the database. Blocking.
    pub fn load(pool: DbPool) -> Result<Arc<Self>, RevocationError> {
        let this = Revocations {
            pool,
            revoked: RwLock::new(HashMap::new()),
        };
        this.reload_since(i64::MIN)?;
        Ok(Arc::new(this))
    }

    /// Whether `claims` belong to a revoked token.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        refused(revoked.get(&claims.sub).copied(), claims.iat)
    }

    /// Revokes `sub`'s tokens issued up to now; answers the revocation second.
    pub async fn revoke(self: &Arc<Self>, sub: &str) -> Result<i64, RevocationError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| RevocationError(e.to_string()))?
            .as_secs() as i64;
        let (this, owned) = (self.clone(), sub.to_owned());
        web::block(move || {
            let mut conn = this
                .pool
                .get()
                .map_err(|e| RevocationError(e.to_string()))?;
            // Update, else insert; a concurrent first revocation of the same subject
            // makes the insert fail, and the update then succeeds.
            let mut store = || -> QueryResult<()> {
                let updated = diesel::update(revocations::table.find(&owned))
                    .set(revocations::revoked_before.eq(now))
                    .execute(&mut conn)?;
                if updated == 0 {
                    diesel::insert_into(revocations::table)
                        .values((
                            revocations::sub.eq(&owned),
                            revocations::revoked_before.eq(now),
                        ))
                        .execute(&mut conn)?;
                }
                Ok(())
            };
            store()
                .or_else(|_| store())
                .map_err(|e| RevocationError(e.to_string()))
        })
        .await
        .map_err(|e| RevocationError(e.to_string()))??;
        self.note(sub, now);
        Ok(now)
    }

    /// Records a revocation made on another node; answers whether it is news (the
    /// subject was not revoked up to `before` already).
    ///
    /// Whoever closes the subject's sockets for a revocation does so after noting it,
    /// never before: a session checks again once registered with its shard, so one
    /// whose handshake passed just before the note is closed either way.
    pub fn note(&self, sub: &str, before: i64) -> bool {
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        match revoked.get_mut(sub) {
            Some(known) if *known >= before => false,
            Some(known) => {
                *known = before;
                true
            }
            None => {
                revoked.insert(sub.to_owned(), before);
                true
            }
        }
    }

    /// Re-reads the revocations of the last minutes every [`RELOAD_EVERY`], in the
    /// background, forever; calls `close` with each subject whose revocation it is the
    /// first to tell this node of (the cluster's message never came), after noting it.
    pub fn keep_fresh(self: &Arc<Self>, close: impl Fn(&str) + 'static) {
        let this = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            loop {
                tick.tick().await;
                let since = this.latest() - SKEW_SECS;
                let reader = this.clone();
                match web::block(move || reader.reload_since(since)).await {
                    Ok(Ok(news)) => {
                        for sub in news {
                            log::info!("{sub:?} was revoked on another node; closing its sockets");
                            close(&sub);
                        }
                    }
                    Ok(Err(e)) => log::warn!("{e}"),
                    Err(_) => return, // shutting down
                }
            }
        });
    }

    fn latest(&self) -> i64 {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        revoked.values().copied().max().unwrap_or(0)
    }

    /// Reads the revocations made from second `since` on; answers the subjects they
    /// told this node of first.
    fn reload_since(&self, since: i64) -> Result<Vec<String>, RevocationError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| RevocationError(e.to_string()))?;
        let rows: Vec<(String, i64)> = revocations::table
            .filter(revocations::revoked_before.ge(since))
            .select((revocations::sub, revocations::revoked_before))
            .load(&mut conn)
            .map_err(|e| RevocationError(e.to_string()))?;
        Ok(rows
            .into_iter()
            .filter(|(sub, before)| self.note(sub, *before))
            .map(|(sub, _)| sub)
            .collect())
    }
}

/// Whether a token issued at `iat` is refused when its subject's tokens are revoked up
/// to `before`. A token without `iat`, or with one past `i64` (no revocation second
/// can be compared with it), is refused once its subject was revoked at all.
fn refused(before: Option<i64>, iat: Option<u64>) -> bool {
    match (before, iat) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(before), Some(iat)) => i64::try_from(iat).map_or(true, |iat| iat <= before),
    }
}

#[cfg(test)]
mod tests {
    use super::refused;

    #[test]
    fn tokens_issued_up_to_the_revocation_are_refused() {
        assert!(!refused(None, None));
        assert!(!refused(None, Some(u64::MAX)));
        assert!(refused(Some(100), None));
        assert!(refused(Some(100), Some(99)));
        assert!(refused(Some(100), Some(100)));
        assert!(!refused(Some(100), Some(101)));
        // An `iat` no revocation second can be compared with counts as revoked.
        assert!(refused(Some(100), Some(i64::MAX as u64 + 1)));
        assert!(refused(Some(100), Some(u64::MAX)));
        assert!(!refused(Some(100), Some(i64::MAX as u64)));
    }
}
