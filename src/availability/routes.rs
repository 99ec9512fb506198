//! The availability REST routes (`docs/protocol.md` §3).
//!
//! Each handler carries its `#[utoipa::path]`: the OpenAPI document is generated from
//! these, next to the code they describe (see `crate::openapi`).

use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{parse_time, reads_as_time, AvailabilityStore, NewSlot, Slot, SlotPatch};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, JsonBody};

/// `from`/`to` of the list: slots overlapping [`from`, `to`). Read as text and parsed
/// by [`parse_time`]: what is not a time at all does not parse (400), a time the hub
/// does not take (outside years 0001–9999) is a 422 as in bodies; both name the
/// parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// Inclusive start of the window (RFC 3339, four-digit year).
    #[param(value_type = Option<String>, format = DateTime, pattern = "^[0-9]{4}-")]
    pub from: Option<String>,
    /// Exclusive end of the window (RFC 3339, four-digit year); not before `from`.
    #[param(value_type = Option<String>, format = DateTime, pattern = "^[0-9]{4}-")]
    pub to: Option<String>,
}

/// One end of a window; `None` leaves that side open.
type Bound = Option<DateTime<Utc>>;

impl Window {
    /// The window's bounds; a bad time is a 400 or a 422 naming `from` or `to`.
    fn bounds(&self) -> Result<(Bound, Bound), ApiError> {
        let parse = |name: &str, value: &Option<String>| {
            let Some(value) = value.as_deref() else {
                return Ok(None);
            };
            parse_time(name, value).map(Some).map_err(|why| {
                if reads_as_time(value) {
                    ApiError::Unprocessable(why)
                } else {
                    ApiError::BadRequest(why)
                }
            })
        };
        Ok((parse("from", &self.from)?, parse("to", &self.to)?))
    }
}

/// The body of the list, as documented: the store's `Availability`, which the store
/// serializes. The OpenAPI test checks real list bodies against this schema.
#[derive(ToSchema)]
#[schema(as = Availability)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct AvailabilityDoc {
    /// The provider.
    #[schema(minimum = 1)]
    provider_id: i64,
    /// The provider's version when the slots were read (0 before any change).
    #[schema(minimum = 0)]
    version: i64,
    /// The slots overlapping the window, ordered by `startsAt`.
    slots: Vec<Slot>,
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
#[utoipa::path(
    get,
    path = "/api/providers/{providerId}/availability",
    tag = "availability",
    description = "A provider's slots overlapping [`from`, `to`), ordered by `startsAt`, with \
                   the provider's version. Any valid token.",
    params(
        ("providerId" = i64, Path, description = "The provider", minimum = 1),
        Window
    ),
    responses(
        (status = 200, description = "The slots and the version they reflect", body = AvailabilityDoc),
        (status = 400, description = "A bad `providerId`, `from` or `to` that is not a time, `to` before `from`, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 422, description = "`from` or `to` is a time outside years 0001–9999 (in UTC) or not written with a four-digit year", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    _caller: Caller,
    provider_id: web::Path<PositiveId>,
    window: web::Query<Window>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let provider_id = provider_id.into_inner().0;
    let (from, to) = window.bounds()?;
    if let (Some(from), Some(to)) = (from, to) {
        if to < from {
            return Err(ApiError::BadRequest(
                "`to` must not be before `from`".into(),
            ));
        }
    }
    let availability = store.list(provider_id, from, to).await?;
    Ok(HttpResponse::Ok().json(availability))
}

/// `POST /api/providers/{providerId}/availability`
#[utoipa::path(
    post,
    path = "/api/providers/{providerId}/availability",
    tag = "availability",
    description = "Creates a slot and sends `availabilityUpdated` (`created`) to the \
                   provider's room. Admin, service, or that provider.",
    params(("providerId" = i64, Path, description = "The provider", minimum = 1)),
    request_body = NewSlot,
    responses(
        (status = 201, description = "The new slot", body = Slot,
            headers(("Location" = String, description = "`/api/availability/{id}` of the new slot"))),
        (status = 400, description = "A bad `providerId`, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not change this provider's slots", body = ErrorBody),
        (status = 409, description = "The slot overlaps another slot of the provider", body = ErrorBody),
        (status = 413, description = "The body is larger than `EVENTIDE_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape, a time that is not RFC 3339 with a four-digit year, `endsAt <= startsAt`, or a note over 500 characters or holding U+0000", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
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
#[utoipa::path(
    get,
    path = "/api/availability/{id}",
    tag = "availability",
    description = "One slot. Any valid token.",
    params(("id" = i64, Path, description = "The slot", minimum = 1)),
    responses(
        (status = 200, description = "The slot", body = Slot),
        (status = 400, description = "A bad `id`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No slot with this id", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    _caller: Caller,
    id: web::Path<PositiveId>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    Ok(HttpResponse::Ok().json(store.get(id).await?))
}

/// `PATCH /api/availability/{id}`
#[utoipa::path(
    patch,
    path = "/api/availability/{id}",
    tag = "availability",
    description = "Changes any subset of `startsAt`, `endsAt`, `status`, `note` (`note: null` \
                   clears it) and sends `availabilityUpdated` (`updated`). Admin, service, or \
                   the slot's provider.",
    params(("id" = i64, Path, description = "The slot", minimum = 1)),
    request_body = SlotPatch,
    responses(
        (status = 200, description = "The changed slot", body = Slot),
        (status = 400, description = "A bad `id`, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not change this provider's slots", body = ErrorBody),
        (status = 404, description = "No slot with this id", body = ErrorBody),
        (status = 409, description = "The changed slot would overlap another slot of the provider", body = ErrorBody),
        (status = 413, description = "The body is larger than `EVENTIDE_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape, a time that is not RFC 3339 with a four-digit year, `endsAt <= startsAt`, or a note over 500 characters or holding U+0000", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    caller: Caller,
    id: web::Path<PositiveId>,
    body: JsonBody<SlotPatch>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    let claims = caller.0;
    let slot = store
        .update(id, body.0, move |provider| {
            claims.may_manage_provider(provider)
        })
        .await?;
    Ok(HttpResponse::Ok().json(slot))
}

/// `DELETE /api/availability/{id}`
#[utoipa::path(
    delete,
    path = "/api/availability/{id}",
    tag = "availability",
    description = "Deletes a slot and sends `availabilityUpdated` (`deleted`, with the slot as \
                   it was). Admin, service, or the slot's provider.",
    params(("id" = i64, Path, description = "The slot", minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A bad `id`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not change this provider's slots", body = ErrorBody),
        (status = 404, description = "No slot with this id", body = ErrorBody),
        (status = 503, description = "The database is busy or down; retry", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    caller: Caller,
    id: web::Path<PositiveId>,
    store: web::Data<AvailabilityStore>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    let claims = caller.0;
    store
        .delete(id, move |provider| claims.may_manage_provider(provider))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
