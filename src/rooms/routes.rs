//! The emit routes: internal services send any event to a room or to everyone
//! (the seed's `emitToRoom` / `emitToAll`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Hub, RoomName};
use crate::auth::Caller;
use crate::error::{ApiError, JsonBody};

/// Longest event name accepted from an emitter.
const MAX_EVENT_NAME: usize = 128;

/// The body of both emit routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitBody {
    /// The event name the clients will see.
    pub event: String,
    /// Any JSON; `null` when absent.
    #[serde(default)]
    pub data: Value,
}

fn authorize_and_check(caller: &Caller, body: &EmitBody) -> Result<(), ApiError> {
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
    Ok(())
}

/// `POST /api/rooms/{room}/events`: sends the event to every socket in the room.
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
    Ok(HttpResponse::Accepted().json(json!({"room": room.as_str(), "event": body.event})))
}

/// `POST /api/broadcast`: sends the event to every socket.
pub async fn broadcast(
    caller: Caller,
    JsonBody(body): JsonBody<EmitBody>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, ApiError> {
    authorize_and_check(&caller, &body)?;
    hub.emit_to_all(&body.event, &body.data)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(HttpResponse::Accepted().json(json!({"event": body.event})))
}
