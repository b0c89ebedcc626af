//! Allot's integration tests: one binary, real redis-server processes, the real coordinator
//! (served in-process on loopback, or the built `allot` binary).

mod auth;
mod bad_input;
mod batch;
mod binary;
mod browser;
mod capacity;
mod common;
mod dashboard;
mod edge;
mod edge_events;
mod edge_fixture;
mod events;
mod flash_crowd;
mod ha;
mod history;
mod holds;
mod idempotency;
mod lua_clock;
mod model;
mod multi_item;
mod redis_restart;
mod shutdown;
