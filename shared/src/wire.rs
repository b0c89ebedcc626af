//! The JSON bodies of the contract, parsed into checked values. Requests go through a raw serde
//! shape (`deny_unknown_fields`, exact types: failures are 400 `malformed-request`) and then a
//! range check (failures are 422 `validation-failed`), so inner code only sees valid values.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{ReservationId, ResourceId, SiteId, Slot, ZoneId};
use crate::limits::{
    CAPACITY_MAX, COUNTERS_PER_PUT_MAX, CUSTOMER_CHARS_MAX, HOLD_SECONDS_MAX, ITEMS_PER_RESERVATION_MAX, QUANTITY_MAX,
    ZONES_PER_COUNTER_MAX,
};
use crate::problem::{Problem, ProblemKind};
use crate::stream_id::StreamId;

/// One item of a reservation: a quantity of one counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The counter's resource.
    pub resource: ResourceId,
    /// The counter's slot.
    pub slot: Slot,
    /// How many units, 1..=`QUANTITY_MAX`.
    pub quantity: u64,
}

/// A checked `POST /v1/sites/{site}/reservations` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationRequest {
    /// 1..=32 distinct (resource, slot) items, accepted all or nothing.
    pub items: Vec<Item>,
    /// When set, the reservation is `held` for this long, then expires unless confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_seconds: Option<u64>,
    /// The zone the reservation is for, checked against counters' allow-lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneId>,
    /// A free-form customer reference, at most 128 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// A JSON number that must be whole: fractions are malformed (400), and whole numbers of any
/// size are kept so that a range check can answer 422 for them, even beyond 64 bits.
#[derive(Debug, Clone, Copy)]
enum Whole {
    /// Fits in 64 bits.
    Value(i128),
    /// Whole, but beyond 64 bits.
    Huge,
}

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        if let Some(n) = number.as_i64() {
            Ok(Self::Value(i128::from(n)))
        } else if let Some(n) = number.as_u64() {
            Ok(Self::Value(i128::from(n)))
        } else if let Some(f) = number.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0) {
            // Whole, written with an exponent or beyond 64 bits: exact enough to range-check.
            Ok(if f.abs() < 1e30 { Self::Value(f as i128) } else { Self::Huge })
        } else {
            Err(serde::de::Error::custom(format!("expected a whole number, got {number}")))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    resource: ResourceId,
    slot: Slot,
    quantity: Whole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReservationRequest {
    items: Vec<RawItem>,
    #[serde(default)]
    hold_seconds: Option<Whole>,
    #[serde(default)]
    zone: Option<ZoneId>,
    #[serde(default)]
    customer: Option<String>,
}

impl ReservationRequest {
    /// Parses and checks a reservation body.
    pub fn parse(body: &[u8]) -> Result<Self, Problem> {
        let raw: RawReservationRequest = parse_json(body)?;
        let count = raw.items.len();
        if !(1..=ITEMS_PER_RESERVATION_MAX).contains(&count) {
            return Err(invalid(format!("items: {count} given, a reservation has 1..={ITEMS_PER_RESERVATION_MAX}")));
        }
        let mut seen = HashSet::with_capacity(count);
        let mut items = Vec::with_capacity(count);
        for (index, item) in raw.items.into_iter().enumerate() {
            let quantity = in_range(item.quantity, 1, QUANTITY_MAX)
                .ok_or_else(|| invalid(format!("items[{index}].quantity must be 1..={QUANTITY_MAX}")))?;
            if !seen.insert((item.resource.clone(), item.slot.clone())) {
                return Err(invalid(format!(
                    "items[{index}]: {}@{} appears twice; items must be distinct",
                    item.resource, item.slot
                )));
            }
            items.push(Item { resource: item.resource, slot: item.slot, quantity });
        }
        let hold_seconds = match raw.hold_seconds {
            None => None,
            Some(h) => Some(
                in_range(h, 1, HOLD_SECONDS_MAX)
                    .ok_or_else(|| invalid(format!("hold_seconds must be 1..={HOLD_SECONDS_MAX}")))?,
            ),
        };
        if let Some(customer) = &raw.customer
            && customer.chars().count() > CUSTOMER_CHARS_MAX
        {
            return Err(invalid(format!("customer is longer than {CUSTOMER_CHARS_MAX} characters")));
        }
        Ok(Self { items, hold_seconds, zone: raw.zone, customer: raw.customer })
    }

    /// A digest of the request's JSON value, independent of key order and whitespace: the
    /// checked request is serialized with a fixed field order and hashed.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

/// One counter of a capacity PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterCapacity {
    /// The counter's resource.
    pub resource: ResourceId,
    /// The counter's slot.
    pub slot: Slot,
    /// The new capacity, 0..=`CAPACITY_MAX`.
    pub capacity: u64,
    /// The allow-list of zones, or `None` for no restriction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<ZoneId>>,
}

/// A checked `PUT /v1/sites/{site}/capacity` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapacityRequest {
    /// 1..=10,000 distinct counters.
    pub counters: Vec<CounterCapacity>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCounterCapacity {
    resource: ResourceId,
    slot: Slot,
    capacity: Whole,
    #[serde(default)]
    zones: Option<Vec<ZoneId>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapacityRequest {
    counters: Vec<RawCounterCapacity>,
}

impl CapacityRequest {
    /// Parses and checks a capacity body.
    pub fn parse(body: &[u8]) -> Result<Self, Problem> {
        let raw: RawCapacityRequest = parse_json(body)?;
        let count = raw.counters.len();
        if !(1..=COUNTERS_PER_PUT_MAX).contains(&count) {
            return Err(invalid(format!("counters: {count} given, a PUT has 1..={COUNTERS_PER_PUT_MAX}")));
        }
        let mut seen = HashSet::with_capacity(count);
        let mut counters = Vec::with_capacity(count);
        for (index, counter) in raw.counters.into_iter().enumerate() {
            let capacity = in_range(counter.capacity, 0, CAPACITY_MAX)
                .ok_or_else(|| invalid(format!("counters[{index}].capacity must be 0..={CAPACITY_MAX}")))?;
            if let Some(zones) = &counter.zones {
                if !(1..=ZONES_PER_COUNTER_MAX).contains(&zones.len()) {
                    return Err(invalid(format!(
                        "counters[{index}].zones must list 1..={ZONES_PER_COUNTER_MAX} zones; omit it for no restriction"
                    )));
                }
                let distinct: HashSet<&ZoneId> = zones.iter().collect();
                if distinct.len() != zones.len() {
                    return Err(invalid(format!("counters[{index}].zones lists a zone twice")));
                }
            }
            if !seen.insert((counter.resource.clone(), counter.slot.clone())) {
                return Err(invalid(format!("counters[{index}]: {}@{} appears twice", counter.resource, counter.slot)));
            }
            counters.push(CounterCapacity {
                resource: counter.resource,
                slot: counter.slot,
                capacity,
                zones: counter.zones,
            });
        }
        Ok(Self { counters })
    }
}

/// The query of `GET /v1/sites/{site}/availability`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityQuery {
    /// Only this resource.
    pub resource: Option<ResourceId>,
    /// Slots at or after this one.
    pub from: Option<Slot>,
    /// Slots before this one.
    pub to: Option<Slot>,
}

impl AvailabilityQuery {
    /// Parses a raw query string (without `?`).
    pub fn parse(query: Option<&str>) -> Result<Self, Problem> {
        serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| Problem::new(ProblemKind::MalformedRequest, format!("query: {e}")))
    }

    /// Whether a counter falls inside this query.
    pub fn matches(&self, resource: &ResourceId, slot: &Slot) -> bool {
        self.resource.as_ref().is_none_or(|r| r == resource)
            && self.from.as_ref().is_none_or(|f| slot >= f)
            && self.to.as_ref().is_none_or(|t| slot < t)
    }
}

/// A counter as stored: `remaining = max(0, capacity - used)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The counter's resource.
    pub resource: ResourceId,
    /// The counter's slot.
    pub slot: Slot,
    /// Units that exist.
    pub capacity: u64,
    /// Units held or confirmed.
    pub used: u64,
    /// Units that can still be reserved.
    pub remaining: u64,
    /// The allow-list of zones, if the counter has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<ZoneId>>,
}

/// `GET /v1/sites/{site}/availability` and the `PUT .../capacity` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// The site.
    pub site: SiteId,
    /// The id of the site's latest event (`0-0` for a site never changed).
    pub version: StreamId,
    /// Counters sorted by (resource, slot).
    pub counters: Vec<Counter>,
}

/// The lifecycle of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Accepted with a hold; expires at `expires_at` unless confirmed.
    Held,
    /// Accepted for good (until cancelled).
    Confirmed,
    /// Cancelled; its capacity was released.
    Cancelled,
    /// The hold ran out; its capacity was released.
    Expired,
}

impl ReservationStatus {
    /// The status's name in JSON and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Parses the name used in JSON and Redis.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Held, Self::Confirmed, Self::Cancelled, Self::Expired].into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the reservation still counts in `used`.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Held | Self::Confirmed)
    }
}

/// A reservation as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Unguessable id (UUIDv4).
    pub id: ReservationId,
    /// The site.
    pub site: SiteId,
    /// Where it is in its lifecycle.
    pub status: ReservationStatus,
    /// What it reserves.
    pub items: Vec<Item>,
    /// The zone it was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneId>,
    /// The client's customer reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// When it was accepted (RFC 3339, UTC, by the store's clock).
    pub created_at: String,
    /// When its hold ends, for reservations made with `hold_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// One short item of an `insufficient-capacity` refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    /// The counter's resource.
    pub resource: ResourceId,
    /// The counter's slot.
    pub slot: Slot,
    /// The quantity asked for.
    pub requested: u64,
    /// What the counter had left.
    pub remaining: u64,
}

/// The domain event types written to a site's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A capacity PUT.
    CapacityChanged,
    /// A reservation was accepted.
    ReservationPlaced,
    /// A held reservation was confirmed.
    ReservationConfirmed,
    /// A reservation was cancelled.
    ReservationCancelled,
    /// A hold ran out.
    ReservationExpired,
    /// A counter's remaining reached 0.
    CounterFull,
    /// A counter's remaining went from 0 to above 0.
    CounterReopened,
    /// A counter's used crossed the almost-full threshold.
    CounterAlmostFull,
}

impl EventType {
    /// Every type, in the contract's order.
    pub const ALL: [Self; 8] = [
        Self::CapacityChanged,
        Self::ReservationPlaced,
        Self::ReservationConfirmed,
        Self::ReservationCancelled,
        Self::ReservationExpired,
        Self::CounterFull,
        Self::CounterReopened,
        Self::CounterAlmostFull,
    ];

    /// The type's name in the stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CapacityChanged => "capacity_changed",
            Self::ReservationPlaced => "reservation_placed",
            Self::ReservationConfirmed => "reservation_confirmed",
            Self::ReservationCancelled => "reservation_cancelled",
            Self::ReservationExpired => "reservation_expired",
            Self::CounterFull => "counter_full",
            Self::CounterReopened => "counter_reopened",
            Self::CounterAlmostFull => "counter_almost_full",
        }
    }

    /// Parses a type name from the stream.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A counter as an event carries it: as it stands after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounter {
    /// The counter's resource.
    pub resource: ResourceId,
    /// The counter's slot.
    pub slot: Slot,
    /// Capacity after the change.
    pub capacity: u64,
    /// Used after the change.
    pub used: u64,
    /// The allow-list of zones, in `capacity_changed` events only (absent there: no restriction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<ZoneId>>,
}

/// The `data` of every event: the counters it changed, and the reservation for
/// `reservation_*` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The counters the change touched, after the change.
    pub counters: Vec<EventCounter>,
    /// The reservation, for `reservation_*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
}

fn in_range(value: Whole, min: u64, max: u64) -> Option<u64> {
    match value {
        Whole::Value(n) => u64::try_from(n).ok().filter(|v| (min..=max).contains(v)),
        Whole::Huge => None,
    }
}

fn invalid(detail: String) -> Problem {
    Problem::new(ProblemKind::ValidationFailed, detail)
}

/// Parses JSON into `T`; any failure is `malformed-request` naming where it failed.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| Problem::new(ProblemKind::MalformedRequest, describe_json_error(&e)))?;
    deserializer.end().map_err(|e| Problem::new(ProblemKind::MalformedRequest, format!("body: {e}")))?;
    Ok(value)
}

fn describe_json_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    if path == "." { format!("body: {}", error.inner()) } else { format!("{path}: {}", error.inner()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(result: Result<ReservationRequest, Problem>) -> &'static str {
        result.err().and_then(|p| p.kind()).map(|k| k.slug()).unwrap_or("ok")
    }

    #[test]
    fn reservation_bodies_are_checked() {
        let ok = br#"{"items":[{"resource":"vans","slot":"2026-12-01T10:00Z","quantity":2}],"hold_seconds":60}"#;
        assert_eq!(slug(ReservationRequest::parse(ok)), "ok");
        let cases: &[(&[u8], &str)] = &[
            (b"", "malformed-request"),
            (b"nope", "malformed-request"),
            (b"{}", "malformed-request"),
            (br#"{"items":[],"extra":1}"#, "malformed-request"),
            (br#"{"items":[]}"#, "validation-failed"),
            (br#"{"items":[{"resource":"Vans","slot":"s","quantity":1}]}"#, "malformed-request"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1.5}]}"#, "malformed-request"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":0}]}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":-1}]}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1000001}]}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":100000000000000000000}]}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1e3}]}"#, "ok"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1e300}]}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":"1"}]}"#, "malformed-request"),
            (
                br#"{"items":[{"resource":"v","slot":"s","quantity":1},{"resource":"v","slot":"s","quantity":1}]}"#,
                "validation-failed",
            ),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1}],"hold_seconds":0}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1}],"hold_seconds":86401}"#, "validation-failed"),
            (br#"{"items":[{"resource":"v","slot":"s","quantity":1}]} trailing"#, "malformed-request"),
        ];
        for (body, expected) in cases {
            assert_eq!(slug(ReservationRequest::parse(body)), *expected, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace() {
        let a = ReservationRequest::parse(br#"{"items":[{"resource":"v","slot":"s","quantity":1}],"zone":"z"}"#);
        let b =
            ReservationRequest::parse(br#"{ "zone" : "z", "items" : [ {"quantity":1, "slot":"s","resource":"v"} ] }"#);
        let c = ReservationRequest::parse(br#"{"items":[{"resource":"v","slot":"s","quantity":2}],"zone":"z"}"#);
        let (a, b, c) = (a.map(|r| r.fingerprint()), b.map(|r| r.fingerprint()), c.map(|r| r.fingerprint()));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn availability_queries_are_checked() {
        assert!(AvailabilityQuery::parse(None).is_ok());
        assert!(AvailabilityQuery::parse(Some("resource=vans&from=2026-12-01&to=2026-12-02")).is_ok());
        assert!(AvailabilityQuery::parse(Some("resource=Vans")).is_err());
        assert!(AvailabilityQuery::parse(Some("colour=red")).is_err());
        assert!(AvailabilityQuery::parse(Some("from=a%20b")).is_err());
    }
}
