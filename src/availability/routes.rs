//! The availability REST routes (contract section 3).

use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{AvailabilityStore, NewSlot, SlotPatch};
use crate::auth::Caller;
use crate::error::{ApiError, JsonBody};

/// `from`/`to` of the list: slots overlapping [`from`, `to`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Inclusive start of the window.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end of the window.
    pub to: Option<DateTime<Utc>>,
}

/// A positive id in a path. Checked while the path is extracted, so a bad id is a
/// 400 before the body is even read.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct PositiveId(pub i64);

impl TryFrom<i64> for PositiveId {
    type Error = String;

    fn try_from(id: i64) -> Result<Self, String> {
        if id > 0 {
            Ok(PositiveId(id))
        } else {
            Err(format!("ids are positive integers, got {id}"))
        }
    }
}

fn may_manage(caller: &Caller, provider_id: i64) -> Result<(), ApiError> {
    if caller.0.may_manage_provider(provider_id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this token may not change the slots of provider {provider_id}"
        )))
    }
}

/// `GET /api/providers/{providerId}/availability?from=&to=`
pub async fn list(
    _caller: Caller,
    provider_id: web::Path<PositiveId>,
    window: web::Query<Window>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let provider_id = provider_id.into_inner().0;
    if let (Some(from), Some(to)) = (window.from, window.to) {
        if to < from {
            return Err(ApiError::BadRequest(
                "`to` must not be before `from`".into(),
            ));
        }
    }
    let availability = store.list(provider_id, window.from, window.to).await?;
    Ok(HttpResponse::Ok().json(availability))
}

/// `POST /api/providers/{providerId}/availability`
pub async fn create(
    caller: Caller,
    provider_id: web::Path<PositiveId>,
    body: JsonBody<NewSlot>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let provider_id = provider_id.into_inner().0;
    may_manage(&caller, provider_id)?;
    let slot = store.create(provider_id, body.0).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/availability/{}", slot.id)))
        .json(slot))
}

/// `GET /api/availability/{id}`
pub async fn get(
    _caller: Caller,
    id: web::Path<PositiveId>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    Ok(HttpResponse::Ok().json(store.get(id).await?))
}

/// `PATCH /api/availability/{id}`
pub async fn update(
    caller: Caller,
    id: web::Path<PositiveId>,
    body: JsonBody<SlotPatch>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    // A slot never changes provider, so authorizing on this read stays valid.
    let current = store.get(id).await?;
    may_manage(&caller, current.provider_id)?;
    let slot = store.update(current.provider_id, id, body.0).await?;
    Ok(HttpResponse::Ok().json(slot))
}

/// `DELETE /api/availability/{id}`
pub async fn delete(
    caller: Caller,
    id: web::Path<PositiveId>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    let current = store.get(id).await?;
    may_manage(&caller, current.provider_id)?;
    store.delete(current.provider_id, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
