//! Rooms: the sharded [`RoomRegistry`] that knows which sessions are in which room and
//! delivers each versioned room's events in order, and the [`Hub`], the one door the
//! rest of the hub uses to reach it.

mod anti_entropy;
mod backlog;
pub mod direct;
mod frame;
mod hub;
mod hub_metrics;
mod inbox;
mod index;
mod messages;
mod name;
mod registry;
mod replay;
pub mod routes;
pub mod sequencer;
mod tail;

pub use anti_entropy::{read_heads, HeadsRead};
pub use frame::{event_frame, frame_to, FrameTarget};
pub use hub::{EmitError, Hub, HubError, Link, ShardConfig, TailLimits};
pub use hub_metrics::HubMetrics;
pub use inbox::{inbox, InboxLimits, Refused};
pub use index::{Members, RoomIndex};
pub use messages::{
    Event, Inbox, JoinError, Joined, Mailbox, RegistryStats, SessionId, SessionMsg, Target,
};
pub use name::{InvalidRoomName, RoomName};
pub use registry::RoomRegistry;
pub use replay::Replay;
