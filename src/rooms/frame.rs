//! Building an outgoing event frame: serialized once, then shared by every recipient.

use bytestring::ByteString;
use serde::Serialize;

#[derive(Serialize)]
struct EventFrame<'a, T: Serialize> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    data: &'a T,
}

/// Serializes `{"event", "room"?, "data"}` into a reference-counted string whose clones
/// share one buffer.
pub fn event_frame<T: Serialize>(event: &str, room: Option<&str>, data: &T) -> ByteString {
    let json = serde_json::to_string(&EventFrame { event, room, data })
        .expect("an event of JSON values always serializes");
    ByteString::from(json)
}
