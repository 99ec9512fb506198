//! Availability slots: the REST resource, its storage with a per-provider version and
//! change log, and the `availabilityUpdated` events each change sends to the
//! provider's room.

mod events;
mod model;
pub mod routes;
mod store;
mod time;

pub use events::{availability_frame, Action};
pub use model::{validate, NewSlot, Slot, SlotPatch, SlotStatus, MAX_NOTE_CHARS};
pub use store::{Availability, AvailabilityStore, StoreError};
pub use time::{parse_time, reads_as_time, MAX_YEAR, MIN_YEAR};
