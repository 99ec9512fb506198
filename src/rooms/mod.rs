//! Rooms: the [`RoomRegistry`] actor that knows which sessions are in which room, and
//! the [`Hub`] handle the rest of the hub uses to send events to rooms.

mod frame;
mod hub;
mod name;
mod registry;
pub mod routes;

pub use frame::event_frame;
pub use hub::{Hub, HubError};
pub use name::{InvalidRoomName, RoomName};
pub use registry::{
    CatchUp, CloseAll, Connect, Deliver, Disconnect, Fanout, Join, Leave, Publish, RegistryStats,
    RoomRegistry, SessionId, SessionMsg, Stats,
};
