//! The WebSocket protocol (`docs/protocol.md` §4): parsing client frames and building the
//! replies. Parsing never panics and every failure names what was wrong, so a client
//! gets a clear `error` frame and keeps its connection.

use bytestring::ByteString;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::rooms::RoomName;

/// The `code` of an `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, a missing or malformed field, a bad room name, a binary frame.
    BadRequest,
    /// An event the hub does not know.
    UnknownEvent,
    /// A room this token may not join.
    Forbidden,
    /// A refresh token that is invalid or of another identity.
    Unauthorized,
    /// The connection is in as many rooms as allowed.
    TooManyRooms,
    /// Too many frames per second.
    RateLimited,
    /// A dependency (the database) did not answer; try again.
    Unavailable,
}

impl ErrorCode {
    /// The code as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// A client frame that cannot be served, with the reason sent back.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// The error code.
    pub code: ErrorCode,
    /// What was wrong, for humans.
    pub message: String,
}

impl FrameError {
    /// A `bad_request` with the given message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        FrameError {
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    /// `joinRoom {room, since?, epoch?}`.
    JoinRoom {
        /// The room.
        room: RoomName,
        /// The last version the client saw, to replay what it missed.
        since: Option<i64>,
        /// The epoch `since` belongs to (as the last `joinedRoom` gave it).
        epoch: Option<String>,
    },
    /// `leaveRoom {room}`.
    LeaveRoom {
        /// The room.
        room: RoomName,
    },
    /// `refreshToken {token}`.
    RefreshToken {
        /// The new JWT.
        token: String,
    },
    /// `ping`: a heartbeat page JavaScript can see, since browsers hide protocol-level
    /// pings. Any `data` is ignored.
    Ping,
}

/// A parsed client frame: its `ref` (echoed in the reply) and the request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    /// The client's correlation value, if any.
    pub reference: Option<Value>,
    /// The request, or why it cannot be served.
    pub request: Result<ClientRequest, FrameError>,
}

/// Parses one text frame.
pub fn parse(text: &str) -> ClientFrame {
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return unreferenced("a frame must be a JSON object {\"event\", \"data\"}"),
        Err(e) => return unreferenced(format!("frame is not JSON: {e}")),
    };
    let reference = object.remove("ref").filter(|r| !r.is_null());
    let request = parse_request(&mut object);
    ClientFrame { reference, request }
}

/// The `ref` of a text frame, found without building the rest of it: for replies to
/// frames that are not otherwise parsed (a rate-limited one). `None` for anything but
/// a JSON object with a non-null `ref`; never fails.
pub fn reference_of(text: &str) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct OnlyRef {
        #[serde(rename = "ref", default)]
        reference: Option<Value>,
    }
    // A struct also deserializes from an array: only an object may answer.
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<OnlyRef>(text)
        .ok()
        .and_then(|frame| frame.reference)
        .filter(|r| !r.is_null())
}

fn unreferenced(message: impl Into<String>) -> ClientFrame {
    ClientFrame {
        reference: None,
        request: Err(FrameError::bad_request(message)),
    }
}

fn parse_request(object: &mut Map<String, Value>) -> Result<ClientRequest, FrameError> {
    let event = match object.get("event") {
        Some(Value::String(event)) => event.clone(),
        Some(_) => return Err(FrameError::bad_request("`event` must be a string")),
        None => return Err(FrameError::bad_request("missing `event`")),
    };
    let data = object.remove("data").unwrap_or(Value::Null);
    match event.as_str() {
        "joinRoom" => {
            let data = data_object(&event, data)?;
            Ok(ClientRequest::JoinRoom {
                room: room_field(&data)?,
                since: since_field(&data)?,
                epoch: epoch_field(&data)?,
            })
        }
        "leaveRoom" => {
            let data = data_object(&event, data)?;
            Ok(ClientRequest::LeaveRoom {
                room: room_field(&data)?,
            })
        }
        "refreshToken" => {
            let data = data_object(&event, data)?;
            match data.get("token") {
                Some(Value::String(token)) if !token.is_empty() => {
                    Ok(ClientRequest::RefreshToken {
                        token: token.clone(),
                    })
                }
                _ => Err(FrameError::bad_request(
                    "refreshToken needs `data.token`, a non-empty string",
                )),
            }
        }
        "ping" => Ok(ClientRequest::Ping),
        other => Err(FrameError {
            code: ErrorCode::UnknownEvent,
            message: format!(
                "unknown event {:?}: expected joinRoom, leaveRoom, refreshToken or ping",
                other.chars().take(64).collect::<String>()
            ),
        }),
    }
}

fn data_object(event: &str, data: Value) -> Result<Map<String, Value>, FrameError> {
    match data {
        Value::Object(map) => Ok(map),
        _ => Err(FrameError::bad_request(format!(
            "{event} needs `data` to be an object"
        ))),
    }
}

fn room_field(data: &Map<String, Value>) -> Result<RoomName, FrameError> {
    match data.get("room") {
        Some(Value::String(room)) => {
            RoomName::parse(room).map_err(|e| FrameError::bad_request(e.to_string()))
        }
        Some(_) => Err(FrameError::bad_request("`data.room` must be a string")),
        None => Err(FrameError::bad_request("missing `data.room`")),
    }
}

fn epoch_field(data: &Map<String, Value>) -> Result<Option<String>, FrameError> {
    match data.get("epoch") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(epoch)) if epoch.len() <= 64 => Ok(Some(epoch.clone())),
        Some(_) => Err(FrameError::bad_request(
            "`data.epoch` must be a string of at most 64 characters",
        )),
    }
}

fn since_field(data: &Map<String, Value>) -> Result<Option<i64>, FrameError> {
    match data.get("since") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= 0 => Ok(Some(v)),
            _ => Err(FrameError::bad_request(
                "`data.since` must be a non-negative integer",
            )),
        },
        Some(_) => Err(FrameError::bad_request(
            "`data.since` must be a non-negative integer",
        )),
    }
}

#[derive(Serialize)]
struct Reply<'a, T: Serialize> {
    event: &'a str,
    data: T,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
}

/// A reply frame `{"event", "data", "ref"?}`.
pub fn reply<T: Serialize>(event: &str, reference: Option<&Value>, data: T) -> ByteString {
    let json = serde_json::to_string(&Reply {
        event,
        data,
        reference,
    })
    .expect("replies are plain JSON values");
    ByteString::from(json)
}

/// The answer to `ping`: `{"event": "pong", "ref"?}`, with no `data`.
pub fn pong(reference: Option<&Value>) -> ByteString {
    let mut frame = Map::new();
    frame.insert("event".into(), Value::from("pong"));
    if let Some(reference) = reference {
        frame.insert("ref".into(), reference.clone());
    }
    ByteString::from(Value::Object(frame).to_string())
}

/// An `error` frame.
pub fn error_frame(reference: Option<&Value>, code: ErrorCode, message: &str) -> ByteString {
    reply(
        "error",
        reference,
        serde_json::json!({"code": code.as_str(), "message": message}),
    )
}

/// The data of `joinedRoom`.
#[derive(Debug, Serialize)]
pub struct Joined<'a> {
    /// The room.
    pub room: &'a str,
    /// The room's current version (versioned rooms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The epoch of the room's stream (versioned rooms): `version` and any `since`
    /// taken from it mean something only under this epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
    /// With `since`: whether every missed change follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse(text).request.unwrap_err().code
    }

    #[test]
    fn parses_join_with_since_and_ref() {
        let frame =
            parse(r#"{"event":"joinRoom","data":{"room":"provider-1","since":3},"ref":"a"}"#);
        assert_eq!(frame.reference, Some(Value::from("a")));
        assert_eq!(
            frame.request.unwrap(),
            ClientRequest::JoinRoom {
                room: RoomName::parse("provider-1").unwrap(),
                since: Some(3),
                epoch: None,
            }
        );
        let frame = parse(r#"{"event":"joinRoom","data":{"room":"r","since":3,"epoch":"ab"}}"#);
        assert!(matches!(
            frame.request.unwrap(),
            ClientRequest::JoinRoom { epoch: Some(e), .. } if e == "ab"
        ));
        assert_eq!(
            code(r#"{"event":"joinRoom","data":{"room":"r","since":3,"epoch":3}}"#),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn bad_frames_get_codes() {
        assert_eq!(code("nope"), ErrorCode::BadRequest);
        assert_eq!(code("[1]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"data":{}}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"event":"dance"}"#), ErrorCode::UnknownEvent);
        assert_eq!(code(r#"{"event":"joinRoom"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"event":"joinRoom","data":{"room":"a b"}}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"event":"joinRoom","data":{"room":"a","since":-1}}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"event":"refreshToken","data":{}}"#),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn ping_is_answered_by_a_pong_with_the_same_ref() {
        let frame = parse(r#"{"event":"ping","ref":"hb-9"}"#);
        assert_eq!(frame.request, Ok(ClientRequest::Ping));
        let answer: Value = serde_json::from_str(&pong(frame.reference.as_ref())).unwrap();
        assert_eq!(answer, serde_json::json!({"event": "pong", "ref": "hb-9"}));
        // Data is ignored; without a ref the pong has none.
        let frame = parse(r#"{"event":"ping","data":{"t":1}}"#);
        assert_eq!(frame.request, Ok(ClientRequest::Ping));
        assert_eq!(&*pong(None), r#"{"event":"pong"}"#);
    }

    #[test]
    fn the_ref_alone_is_found_in_any_object_and_nothing_else() {
        let frame = r#"{"event":"joinRoom","data":{"room":"a","x":[1,{"ref":2}]},"ref":"r1"}"#;
        assert_eq!(reference_of(frame), Some(Value::from("r1")));
        assert_eq!(
            reference_of(r#"{"ref":{"n":[1]}}"#),
            Some(serde_json::json!({"n": [1]}))
        );
        assert_eq!(reference_of(r#"{"event":"ping"}"#), None);
        assert_eq!(reference_of(r#"{"ref":null}"#), None);
        for bad in [
            "",
            "nope",
            "[1]",
            "\"ref\"",
            r#"{"ref":"a""#,
            r#"{"ref":1,"ref":2}"#,
        ] {
            assert_eq!(reference_of(bad), None, "{bad}");
        }
        let deep = "[".repeat(100_000);
        assert_eq!(reference_of(&format!("{{\"a\":{deep}}}")), None);
    }

    #[test]
    fn replies_echo_ref() {
        let r = Value::from("x1");
        let frame = reply("leftRoom", Some(&r), serde_json::json!({"room": "a"}));
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["ref"], "x1");
        assert_eq!(v["data"]["room"], "a");
    }
}
