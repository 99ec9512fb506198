//! The emit routes: internal services send any event to a room or to everyone
//! (`emitToRoom` / `emitToAll`), and who is in a room.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{Hub, RoomName};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, JsonBody};

/// Events only the hub itself sends.
pub const RESERVED_EVENTS: [&str; 5] = [
    "availabilityUpdated",
    "joinedRoom",
    "leftRoom",
    "tokenRefreshed",
    "error",
];

/// Longest event name accepted from an emitter.
const MAX_EVENT_NAME: usize = 128;

/// The body of both emit routes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event": "providerMessage", "data": {"text": "closed on Friday"}}))]
pub struct EmitBody {
    /// The event name the clients will see (1 to 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub event: String,
    /// Any JSON; `null` when absent.
    #[serde(default)]
    pub data: Value,
}

/// The answer to an emit: what was sent where.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Emitted {
    /// The room it was sent to; absent for a broadcast or a user event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The subject it was sent to, for a user event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The event name.
    pub event: String,
}

pub(crate) fn authorize_and_check(caller: &Caller, body: &EmitBody) -> Result<(), ApiError> {
    if !caller.0.role.is_privileged() {
        return Err(ApiError::Forbidden(
            "only admin and service tokens may emit events".into(),
        ));
    }
    if body.event.is_empty() || body.event.chars().count() > MAX_EVENT_NAME {
        return Err(ApiError::Unprocessable(format!(
            "`event` must be 1 to {MAX_EVENT_NAME} characters"
        )));
    }
    // A client must be able to trust these: an emitted `availabilityUpdated` without a
    // version, or a forged `error` or `joinedRoom`, would corrupt its state.
    if RESERVED_EVENTS.contains(&body.event.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "`{}` is an event of the hub's own protocol and cannot be emitted",
            body.event
        )));
    }
    Ok(())
}

/// `POST /api/rooms/{room}/events`: sends the event to every socket in the room.
#[utoipa::path(
    post,
    path = "/api/rooms/{room}/events",
    tag = "events",
    description = "Sends `{\"event\", \"room\", \"data\"}` to every socket in the room, on every \
                   node (`emitToRoom`). Admin or service.",
    params(("room" = String, Path, description = "The room", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    request_body = EmitBody,
    responses(
        (status = 202, description = "Handed to the room", body = Emitted),
        (status = 400, description = "A bad room name, or a body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin or service token", body = ErrorBody),
        (status = 413, description = "The body is larger than `EVENTIDE_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape, an event name of 0 or over 128 characters, or one of the hub's own events (availabilityUpdated, joinedRoom, leftRoom, tokenRefreshed, error)", body = ErrorBody),
        (status = 503, description = "The hub is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn emit_to_room(
    caller: Caller,
    room: web::Path<RoomName>,
    JsonBody(body): JsonBody<EmitBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    authorize_and_check(&caller, &body)?;
    let room = room.into_inner();
    hub.emit_to_room(&room, &body.event, &body.data)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(Emitted {
        room: Some(room.as_str().to_owned()),
        user: None,
        event: body.event,
    }))
}

/// `POST /api/broadcast`: sends the event to every socket.
#[utoipa::path(
    post,
    path = "/api/broadcast",
    tag = "events",
    description = "Sends `{\"event\", \"data\"}` to every socket of every node (\
                   `emitToAll`). Admin or service.",
    request_body = EmitBody,
    responses(
        (status = 202, description = "Handed to every socket", body = Emitted),
        (status = 400, description = "A body that is not JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin or service token", body = ErrorBody),
        (status = 413, description = "The body is larger than `EVENTIDE_MAX_BODY_BYTES`", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape, an event name of 0 or over 128 characters, or one of the hub's own events (availabilityUpdated, joinedRoom, leftRoom, tokenRefreshed, error)", body = ErrorBody),
        (status = 503, description = "The hub is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn broadcast(
    caller: Caller,
    JsonBody(body): JsonBody<EmitBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    authorize_and_check(&caller, &body)?;
    hub.emit_to_all(&body.event, &body.data)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(Emitted {
        room: None,
        user: None,
        event: body.event,
    }))
}

/// Who is in a room, over every node.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomPresence {
    /// The room.
    pub room: String,
    /// Sockets joined to the room.
    pub connections: u64,
    /// Distinct token subjects among them.
    pub users: usize,
    /// The subjects (at most 1,000), for admin and service tokens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subs: Option<Vec<String>>,
}

/// Subjects listed in a presence answer at most.
const MAX_PRESENCE_SUBS: usize = 1000;

/// `GET /api/rooms/{room}/presence`: sockets and subjects in the room.
#[utoipa::path(
    get,
    path = "/api/rooms/{room}/presence",
    tag = "events",
    description = "Sockets joined to the room and distinct subjects among them, over every \
                   node, reflecting joins and leaves within 2 s. Admin, service, or a token that \
                   may join the room; only admin and service get the subjects (`subs`).",
    params(("room" = String, Path, description = "The room", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses(
        (status = 200, description = "The room's presence", body = RoomPresence),
        (status = 400, description = "A bad room name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A token that may not join the room", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn presence(
    caller: Caller,
    room: web::Path<RoomName>,
    hub: web::Data<Hub>,
    metrics: web::Data<std::sync::Arc<crate::metrics::Metrics>>,
) -> Result<HttpResponse, ApiError> {
    let room = room.into_inner();
    let privileged = caller.0.role.is_privileged();
    if !privileged && !crate::auth::may_join(&caller.0, room.as_str()) {
        return Err(ApiError::Forbidden(format!(
            "this token may not join {room}, so it may not see who is there"
        )));
    }
    metrics.hub.presence_queries.inc();
    let presence = hub.presence(&room).await;
    let users = presence.subs.len();
    let subs = privileged.then(|| presence.subs.into_iter().take(MAX_PRESENCE_SUBS).collect());
    Ok(HttpResponse::Ok().json(RoomPresence {
        room: room.as_str().to_owned(),
        connections: presence.connections,
        users,
        subs,
    }))
}
