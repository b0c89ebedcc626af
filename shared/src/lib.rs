//! What the Allot coordinator and edge agree on: identifiers, limits, request and response
//! bodies, problem details, event types and the request signature.
//!
//! This crate does no IO and never depends on tokio or the Workers API: it builds for
//! `wasm32-unknown-unknown` and for the host, so both sides run the same checks.

pub mod ids;
pub mod limits;
pub mod problem;
pub mod signature;
pub mod stream_id;
pub mod wire;

pub use ids::{IdempotencyKey, InvalidId, ReservationId, ResourceId, SiteId, Slot, ZoneId};
pub use problem::{PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
pub use stream_id::{InvalidStreamId, StreamId};
pub use wire::{
    Availability, AvailabilityQuery, CapacityRequest, Counter, CounterCapacity, EventCounter, EventData, EventType,
    Item, Reservation, ReservationRequest, ReservationStatus, Shortage,
};
