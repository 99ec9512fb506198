//! Building an outgoing event frame: serialized once, then shared by every recipient.

use bytestring::ByteString;
use serde::Serialize;

/// Where an event goes, as it appears in its frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameTarget<'a> {
    /// The room, for room events.
    pub room: Option<&'a str>,
    /// The subject, for events to one user.
    pub user: Option<&'a str>,
    /// The room's version, for events of a room with history.
    pub version: Option<i64>,
}

#[derive(Serialize)]
struct EventFrame<'a, T: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    data: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
}

/// Serializes `{"event", "room"?, "data"}` into a reference-counted string whose clones
/// share one buffer.
pub fn event_frame<T: Serialize>(event: &str, room: Option<&str>, data: &T) -> ByteString {
    frame_to(
        event,
        FrameTarget {
            room,
            ..FrameTarget::default()
        },
        data,
    )
}

/// Serializes `{"event", "room"?, "user"?, "data", "version"?}`.
pub fn frame_to<T: Serialize>(event: &str, target: FrameTarget<'_>, data: &T) -> ByteString {
    let json = serde_json::to_string(&EventFrame {
        event,
        room: target.room,
        user: target.user,
        data,
        version: target.version,
    })
    .expect("an event of JSON values always serializes");
    ByteString::from(json)
}
