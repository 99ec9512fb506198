//! Integration tests: the real hub on a loopback port, real SQLite, real HTTP and
//! WebSocket clients. One test binary, so one build serves every test.

mod abuse;
mod anti_entropy;
mod asyncapi;
mod auth;
mod browser;
mod cluster;
mod config;
mod conformance;
mod epochs;
mod faults;
mod healing;
mod helpers;
mod jwks;
mod keyfiles;
mod lifecycle;
mod limits;
mod malformed;
mod membership;
mod metrics;
mod openapi;
mod operations;
mod postgres;
mod properties;
mod recovery;
mod redis_cluster;
mod registry;
mod replay_tail;
mod rest;
mod seams;
mod times;
mod toolchain;
mod upgrade;
mod users;
mod websocket;
