//! `POST /api/users/{sub}/events` and `POST /api/users/{sub}/disconnect`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Revocations};
use crate::error::{ApiError, ErrorBody, JsonBody};
use crate::metrics::Metrics;
use crate::rooms::routes::{authorize_and_check, EmitBody, Emitted};
use crate::rooms::Hub;

/// Longest subject accepted in a path.
const MAX_SUB: usize = 256;

fn subject(sub: &str) -> Result<&str, ApiError> {
    if sub.is_empty() || sub.chars().count() > MAX_SUB {
        return Err(ApiError::BadRequest(format!(
            "`sub` must be 1 to {MAX_SUB} characters"
        )));
    }
    Ok(sub)
}

/// `POST /api/users/{sub}/events`: sends the event to every socket of the subject.
#[utoipa::path(
    post,
    path = "/api/users/{sub}/events",
    tag = "users",
    description = "Sends `{\"event\", \"data\", \"user\"}` to every socket whose token has this \
                   `sub`, on every node. Admin or service.",
    params(("sub" = String, Path, description = "A token's `sub`, URL-encoded")),
    request_body = EmitBody,
    responses(
        (status = 202, description = "Handed to the subject's sockets", body = Emitted),
        (status = 400, description = "A bad subject, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin or service token", body = ErrorBody),
        (status = 413, description = "The body is larger than `EVENTIDE_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape, an event name of 0 or over 128 characters, or one of the hub's own events", body = ErrorBody),
        (status = 503, description = "The hub is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn emit_to_user(
    caller: Caller,
    sub: web::Path<String>,
    JsonBody(body): JsonBody<EmitBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    let sub = subject(&sub)?;
    authorize_and_check(&caller, &body)?;
    hub.emit_to_user(sub, &body.event, &body.data)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(Emitted {
        room: None,
        user: Some(sub.to_owned()),
        event: body.event,
    }))
}

/// The body of `POST /api/users/{sub}/disconnect`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DisconnectBody {
    /// Also refuse the subject's tokens issued up to now (and those without `iat`),
    /// on every node and after restarts.
    #[serde(default)]
    pub revoke_tokens: bool,
}

/// What a disconnect did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disconnected {
    /// The subject.
    pub user: String,
    /// When tokens were revoked: the second (seconds since the epoch) up to which
    /// its tokens are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_before: Option<i64>,
}

/// `POST /api/users/{sub}/disconnect`: closes the subject's sockets, optionally
/// revoking its tokens.
#[utoipa::path(
    post,
    path = "/api/users/{sub}/disconnect",
    tag = "users",
    description = "Closes every socket of this `sub`, on every node, with 4003 (\"revoked\") \
                   within 2 s. With `revokeTokens`, the subject's tokens issued at or before \
                   this second (and its tokens without `iat`) are refused from then on: \
                   handshake 401, REST 401, `refreshToken` unauthorized; stored in the \
                   database. Admin or service.",
    params(("sub" = String, Path, description = "A token's `sub`, URL-encoded")),
    request_body = DisconnectBody,
    responses(
        (status = 202, description = "The sockets are being closed", body = Disconnected),
        (status = 400, description = "A bad subject, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin or service token", body = ErrorBody),
        (status = 413, description = "The body is larger than `EVENTIDE_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 503, description = "The database did not answer (tokens not revoked)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn disconnect(
    caller: Caller,
    sub: web::Path<String>,
    JsonBody(body): JsonBody<DisconnectBody>,
    hub: web::Data<Hub>,
    revocations: web::Data<Arc<Revocations>>,
    metrics: web::Data<Arc<Metrics>>,
) -> Result<HttpResponse, ApiError> {
    let sub = subject(&sub)?;
    if !caller.0.role.is_privileged() {
        return Err(ApiError::Forbidden(
            "only admin and service tokens may disconnect users".into(),
        ));
    }
    let revoked_before = if body.revoke_tokens {
        let revoked = revocations.revoke(sub).await;
        Some(revoked.map_err(|e| ApiError::Unavailable(e.to_string()))?)
    } else {
        None
    };
    hub.disconnect_user(sub, revoked_before);
    metrics.hub.disconnects.inc();
    if revoked_before.is_some() {
        metrics.hub.revocations.inc();
    }
    log::info!(
        "disconnected {sub:?} (tokens revoked: {})",
        revoked_before.is_some()
    );
    Ok(HttpResponse::Accepted().json(Disconnected {
        user: sub.to_owned(),
        revoked_before,
    }))
}
