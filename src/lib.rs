//! Eventide hub: a realtime hub that pushes live availability updates to browsers over
//! raw WebSockets.
//!
//! One event's way through the hub: a REST handler ([`availability::routes`]) commits
//! a slot change, its provider's new version and a change-log row in one transaction
//! ([`availability::AvailabilityStore`]); the frame, serialized once, goes to the
//! [`rooms::RoomRegistry`] actor through the [`rooms::Hub`] handle; the registry hands
//! the same bytes to the [`ws::WsSession`] actor of every socket in the room, which
//! writes them through its bounded outbox.
//!
//! Around that path: [`startup`] assembles the hub from [`config`] and the HTTP
//! [`server`] (route table, state, middleware, socket options, shutdown); [`error`]
//! maps every error to its HTTP status; `docs/protocol.md` is the contract all of it
//! implements.

pub mod auth;
pub mod availability;
pub mod changelog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod rooms;
pub mod server;
pub mod startup;
pub mod users;
pub mod ws;
