//! The `availabilityUpdated` frame a change sends to its provider's room.

use bytestring::ByteString;
use serde::Serialize;

use super::Slot;
use crate::rooms::event_frame;

/// What happened to a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new slot.
    Created,
    /// A slot changed.
    Updated,
    /// A slot was removed; the event carries it as it was.
    Deleted,
}

impl Action {
    /// The name stored in the change log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

#[derive(Serialize)]
struct AvailabilityUpdated<'a> {
    action: Action,
    version: i64,
    slot: &'a Slot,
}

/// `{"event": "availabilityUpdated", "room": "provider-{id}", "data": {action, version, slot}}`.
pub fn availability_frame(action: Action, version: i64, slot: &Slot) -> ByteString {
    let room = format!("provider-{}", slot.provider_id);
    event_frame(
        "availabilityUpdated",
        Some(&room),
        &AvailabilityUpdated {
            action,
            version,
            slot,
        },
    )
}
