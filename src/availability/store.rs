//! Storage of slots with diesel, and the versioned change log.
//!
//! Each change runs in one transaction that bumps the provider's version, writes the
//! slot and appends the exact frame to the change log. Only after the commit, with no
//! lock held, is the frame handed to the hub: order comes from the versions (each
//! room's sequencer delivers them in order), so publishing needs no lock, and a slow
//! Redis never holds a writer or a database connection.
//!
//! Everything here blocks; the async methods run it on the blocking pool.

use std::sync::{Arc, Mutex};

use actix_web::web;
use bytestring::ByteString;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::events::{availability_frame, Action};
use super::model::{validate, NewSlot, Slot, SlotPatch, SlotRow};
use crate::db::schema::{availability_changes, providers, slots};
use crate::db::{read_transaction, AnyConnection, DbPool};
use crate::metrics::Origin;
use crate::rooms::{Event, Hub, RoomName, Target};

/// Why a storage operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// No slot with that id.
    NotFound(i64),
    /// The caller may not change this provider's slots.
    Forbidden,
    /// The slot would overlap another slot of the same provider.
    Overlap {
        /// The slot in the way.
        existing: i64,
    },
    /// The change breaks a rule (times, note length).
    Invalid(String),
    /// The database did not answer in time (pool exhausted, locked, down).
    Unavailable(String),
    /// Any other database failure: a bug or an outage.
    Database(DieselError),
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match &e {
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("database is locked") =>
            {
                StoreError::Unavailable("the database is busy; retry".into())
            }
            // PostgreSQL cancelled it at EVENTIDE_DB_STATEMENT_TIMEOUT_MS (a lock held
            // elsewhere, an overloaded server).
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("statement timeout") =>
            {
                StoreError::Unavailable("the database did not answer in time; retry".into())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                StoreError::Unavailable("the database connection was lost; retry".into())
            }
            _ => StoreError::Database(e),
        }
    }
}

impl From<actix_web::error::BlockingError> for StoreError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        StoreError::Unavailable("the blocking pool is shutting down".into())
    }
}

/// A provider's slots with the version they reflect.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// The provider.
    pub provider_id: i64,
    /// The provider's version when the slots were read.
    pub version: i64,
    /// Slots ordered by `startsAt`.
    pub slots: Vec<Slot>,
}

/// Serializes writers of one provider on this node (striped, fixed memory).
struct ProviderLocks([Mutex<()>; 64]);

impl ProviderLocks {
    fn lock(&self, provider_id: i64) -> std::sync::MutexGuard<'_, ()> {
        let stripe = provider_id.rem_euclid(64) as usize;
        // A panic while holding the lock leaves no shared state behind it.
        self.0[stripe].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Slots, versions and the change log, with the hub that hears of every change.
#[derive(Clone)]
pub struct AvailabilityStore {
    pool: DbPool,
    hub: Hub,
    locks: Arc<ProviderLocks>,
    history: i64,
    /// Test fail point: stop forever between a commit and its publish.
    pause_after_commit: bool,
}

fn now() -> NaiveDateTime {
    Utc::now().trunc_subsecs(3).naive_utc()
}

fn get_conn(pool: &DbPool) -> Result<crate::db::PooledConnection, StoreError> {
    pool.get()
        .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
}

fn current_version(conn: &mut AnyConnection, provider_id: i64) -> Result<i64, StoreError> {
    Ok(providers::table
        .find(provider_id)
        .select(providers::version)
        .first::<i64>(conn)
        .optional()?
        .unwrap_or(0))
}

/// Bumps the provider's version and returns the new one. Runs first in every write
/// transaction: the UPDATE takes the write lock (SQLite) or the row lock (PostgreSQL)
/// before anything is read, so concurrent writers queue instead of failing.
fn bump_version(conn: &mut AnyConnection, provider_id: i64) -> Result<i64, StoreError> {
    let updated = diesel::update(providers::table.find(provider_id))
        .set(providers::version.eq(providers::version + 1))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(providers::table)
            .values((providers::id.eq(provider_id), providers::version.eq(1)))
            .execute(conn)?;
        return Ok(1);
    }
    current_version(conn, provider_id)
}

fn find_overlap(
    conn: &mut AnyConnection,
    provider_id: i64,
    starts_at: NaiveDateTime,
    ends_at: NaiveDateTime,
    except: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    Ok(slots::table
        .filter(slots::provider_id.eq(provider_id))
        .filter(slots::starts_at.lt(ends_at))
        .filter(slots::ends_at.gt(starts_at))
        .filter(slots::id.ne(except.unwrap_or(-1)))
        .select(slots::id)
        .first::<i64>(conn)
        .optional()?)
}

fn load_row(conn: &mut AnyConnection, id: i64) -> Result<SlotRow, StoreError> {
    slots::table
        .find(id)
        .select(SlotRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound(id))
}

/// Whose slots a change touches.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// A provider named by the route.
    Provider(i64),
    /// The provider of a slot; the change's own transaction loads the slot again and
    /// authorizes on it (a slot never changes provider).
    SlotOf(i64),
}

/// The provider of slot `id`.
fn slot_provider(conn: &mut AnyConnection, id: i64) -> Result<i64, StoreError> {
    slots::table
        .find(id)
        .select(slots::provider_id)
        .first::<i64>(conn)
        .optional()?
        .ok_or(StoreError::NotFound(id))
}

fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

/// A slot time as stored: microsecond precision, the finest both backends keep (so a
/// slot reads back the same everywhere and `endsAt > startsAt` still holds once
/// stored); leap seconds (`:60`) are refused, as PostgreSQL would silently move them.
fn stored_time(t: DateTime<Utc>, field: &str) -> Result<NaiveDateTime, StoreError> {
    use chrono::Timelike;
    if t.nanosecond() >= 1_000_000_000 {
        return Err(StoreError::Invalid(format!(
            "`{field}` is a leap second, which slots do not support"
        )));
    }
    Ok(t.trunc_subsecs(6).naive_utc())
}

impl AvailabilityStore {
    /// A store over `pool` that tells `hub` of every change and keeps the last
    /// `history` changes of each provider.
    pub fn new(pool: DbPool, hub: Hub, history: i64) -> Self {
        AvailabilityStore {
            pool,
            hub,
            locks: Arc::new(ProviderLocks(std::array::from_fn(|_| Mutex::new(())))),
            history,
            pause_after_commit: false,
        }
    }

    /// Makes every change stop forever after its commit, before it is published: the
    /// fail point with which tests kill a node at the worst moment.
    pub fn pause_after_commit(mut self, pause: bool) -> Self {
        self.pause_after_commit = pause;
        self
    }

    /// The provider's slots overlapping [`from`, `to`), ordered by start.
    pub async fn list(
        &self,
        provider_id: i64,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Availability, StoreError> {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = get_conn(&pool)?;
            read_transaction(&mut conn, |conn| {
                let version = current_version(conn, provider_id)?;
                let mut query = slots::table
                    .filter(slots::provider_id.eq(provider_id))
                    .select(SlotRow::as_select())
                    .order((slots::starts_at.asc(), slots::id.asc()))
                    .into_boxed();
                if let Some(from) = from {
                    query = query.filter(slots::ends_at.gt(naive(from)));
                }
                if let Some(to) = to {
                    query = query.filter(slots::starts_at.lt(naive(to)));
                }
                let rows = query.load(conn)?;
                Ok(Availability {
                    provider_id,
                    version,
                    slots: rows.into_iter().map(Slot::from).collect(),
                })
            })
        })
        .await?
    }

    /// One slot.
    pub async fn get(&self, id: i64) -> Result<Slot, StoreError> {
        let pool = self.pool.clone();
        web::block(move || load_row(&mut *get_conn(&pool)?, id).map(Slot::from)).await?
    }

    /// Creates a slot and announces it.
    pub async fn create(&self, provider_id: i64, new: NewSlot) -> Result<Slot, StoreError> {
        let starts_at = stored_time(new.starts_at, "startsAt")?;
        let ends_at = stored_time(new.ends_at, "endsAt")?;
        validate(starts_at.and_utc(), ends_at.and_utc(), new.note.as_deref())
            .map_err(StoreError::Invalid)?;
        self.change(Owner::Provider(provider_id), Action::Created, move |conn| {
            if let Some(existing) = find_overlap(conn, provider_id, starts_at, ends_at, None)? {
                return Err(StoreError::Overlap { existing });
            }
            let at = now();
            Ok(diesel::insert_into(slots::table)
                .values((
                    slots::provider_id.eq(provider_id),
                    slots::starts_at.eq(starts_at),
                    slots::ends_at.eq(ends_at),
                    slots::status.eq(new.status.unwrap_or(super::SlotStatus::Available).as_str()),
                    slots::note.eq(new.note.clone()),
                    slots::created_at.eq(at),
                    slots::updated_at.eq(at),
                ))
                .returning(slots::all_columns)
                .get_result::<SlotRow>(conn)?)
        })
        .await
    }

    /// Applies a patch to slot `id` and announces it, if `may_change` allows the
    /// slot's provider (checked inside the transaction, on the row it changes).
    pub async fn update(
        &self,
        id: i64,
        patch: SlotPatch,
        may_change: impl Fn(i64) -> bool + Send + 'static,
    ) -> Result<Slot, StoreError> {
        let new_start = patch
            .starts_at
            .map(|t| stored_time(t, "startsAt"))
            .transpose()?;
        let new_end = patch
            .ends_at
            .map(|t| stored_time(t, "endsAt"))
            .transpose()?;
        self.change(Owner::SlotOf(id), Action::Updated, move |conn| {
            let row = load_row(conn, id)?;
            if !may_change(row.provider_id) {
                return Err(StoreError::Forbidden);
            }
            let provider_id = row.provider_id;
            let starts_at = new_start.unwrap_or(row.starts_at);
            let ends_at = new_end.unwrap_or(row.ends_at);
            let note = patch.note.clone().unwrap_or(row.note);
            validate(starts_at.and_utc(), ends_at.and_utc(), note.as_deref())
                .map_err(StoreError::Invalid)?;
            if let Some(existing) = find_overlap(conn, provider_id, starts_at, ends_at, Some(id))? {
                return Err(StoreError::Overlap { existing });
            }
            let status = patch
                .status
                .map(|s| s.as_str().to_owned())
                .unwrap_or(row.status);
            Ok(diesel::update(slots::table.find(id))
                .set((
                    slots::starts_at.eq(starts_at),
                    slots::ends_at.eq(ends_at),
                    slots::status.eq(status),
                    slots::note.eq(note),
                    slots::updated_at.eq(now()),
                ))
                .returning(slots::all_columns)
                .get_result::<SlotRow>(conn)?)
        })
        .await
    }

    /// Deletes slot `id` and announces it, if `may_change` allows its provider (with the slot as it was).
    pub async fn delete(
        &self,
        id: i64,
        may_change: impl Fn(i64) -> bool + Send + 'static,
    ) -> Result<Slot, StoreError> {
        self.change(Owner::SlotOf(id), Action::Deleted, move |conn| {
            let row = load_row(conn, id)?;
            if !may_change(row.provider_id) {
                return Err(StoreError::Forbidden);
            }
            diesel::delete(slots::table.find(id)).execute(conn)?;
            Ok(row)
        })
        .await
    }

    /// One change: the transaction (version bump, the slot write `write`, the
    /// change-log row) under this node's provider lock, then, with no lock held, the
    /// event to the hub.
    async fn change<F>(&self, owner: Owner, action: Action, write: F) -> Result<Slot, StoreError>
    where
        F: Fn(&mut AnyConnection) -> Result<SlotRow, StoreError> + Send + 'static,
    {
        let store = self.clone();
        let (provider_id, (slot, version, frame)) = web::block(move || {
            let mut conn = get_conn(&store.pool)?;
            let provider_id = match owner {
                Owner::Provider(id) => id,
                Owner::SlotOf(id) => slot_provider(&mut conn, id)?,
            };
            // Writers of one provider queue here rather than on the database's lock;
            // across nodes the version bump's row lock serializes them.
            let _guard = store.locks.lock(provider_id);
            let committed = store.commit_retrying(&mut conn, provider_id, action, &write)?;
            Ok::<_, StoreError>((provider_id, committed))
        })
        .await??;
        if self.pause_after_commit {
            // A test's fail point: the node dies here, between commit and publish.
            log::warn!("change {provider_id}@{version} committed; pausing before publish");
            std::future::pending::<()>().await;
        }
        let event = Event {
            target: Target::Room(RoomName::for_provider(provider_id)),
            version: Some(version),
            frame,
        };
        if self.hub.publish(event, Origin::Rest).await.is_err() {
            log::warn!("change {provider_id}@{version} committed while the hub is stopping");
        }
        Ok(slot)
    }

    /// Commits one change, retrying the rare lost race on a provider's first version.
    fn commit_retrying<F>(
        &self,
        conn: &mut AnyConnection,
        provider_id: i64,
        action: Action,
        write: &F,
    ) -> Result<(Slot, i64, ByteString), StoreError>
    where
        F: Fn(&mut AnyConnection) -> Result<SlotRow, StoreError>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit(conn, provider_id, action, write) {
                // Two nodes creating a provider's first version at once: one insert
                // loses; run again and it takes the next version.
                Err(StoreError::Database(DieselError::DatabaseError(
                    DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure,
                    _,
                ))) if attempt < 3 => continue,
                other => return other,
            }
        }
    }

    /// One transaction: version bump first, the slot write, the change-log row, and
    /// the pruning of history beyond what is kept.
    fn commit<F>(
        &self,
        conn: &mut AnyConnection,
        provider_id: i64,
        action: Action,
        write: &F,
    ) -> Result<(Slot, i64, ByteString), StoreError>
    where
        F: Fn(&mut AnyConnection) -> Result<SlotRow, StoreError>,
    {
        conn.transaction(|conn| {
            let version = bump_version(conn, provider_id)?;
            let slot = Slot::from(write(conn)?);
            let frame = availability_frame(action, version, &slot);
            diesel::insert_into(availability_changes::table)
                .values((
                    availability_changes::provider_id.eq(provider_id),
                    availability_changes::version.eq(version),
                    availability_changes::action.eq(action.as_str()),
                    availability_changes::frame.eq(&*frame),
                    availability_changes::created_at.eq(now()),
                ))
                .execute(conn)?;
            diesel::delete(
                availability_changes::table
                    .filter(availability_changes::provider_id.eq(provider_id))
                    .filter(availability_changes::version.le(version - self.history)),
            )
            .execute(conn)?;
            Ok((slot, version, frame))
        })
    }
}
