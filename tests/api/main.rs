//! Integration tests: the real hub on a loopback port, real SQLite, real HTTP and
//! WebSocket clients. One test binary, so one build serves every test.

mod auth;
mod browser;
mod cluster;
mod helpers;
mod lifecycle;
mod limits;
mod malformed;
mod postgres;
mod properties;
mod recovery;
mod registry;
mod rest;
mod websocket;
