//! RFC 9457 problem details: the one error body of the contract, with its slugs. The edge and
//! the coordinator build the same bodies from here, so a client cannot tell who refused.

use serde::{Deserialize, Serialize};

use crate::ids::ReservationId;
use crate::wire::Shortage;

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Every kind of error of the contract. Each has one status and one slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// 400: not JSON, wrong types, unknown fields, ids that do not match their pattern.
    MalformedRequest,
    /// 401: credentials missing or invalid.
    Unauthorized,
    /// 403: valid credentials that may not do this.
    Forbidden,
    /// 404: unknown reservation or route.
    NotFound,
    /// 405: the route exists, the method does not (an extension of the contract).
    MethodNotAllowed,
    /// 409: some item lacks capacity.
    InsufficientCapacity,
    /// 409: confirm of an expired or cancelled reservation.
    ReservationNotHeld,
    /// 413: body too large.
    PayloadTooLarge,
    /// 415: body not `application/json`.
    UnsupportedMediaType,
    /// 422: numbers out of range, counts, duplicates.
    ValidationFailed,
    /// 422: a counter's zone allow-list refuses the reservation's zone.
    ZoneNotAllowed,
    /// 422: an idempotency key reused with another body.
    IdempotencyKeyReused,
    /// 429: too many requests; with `Retry-After`.
    RateLimited,
    /// 500: a bug; never expected, logged with its cause.
    Internal,
    /// 503: the store is down or too slow; with `Retry-After`.
    Unavailable,
}

impl ProblemKind {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::InsufficientCapacity | Self::ReservationNotHeld => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::ValidationFailed | Self::ZoneNotAllowed | Self::IdempotencyKeyReused => 422,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// The slug that ends the problem `type`.
    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::InsufficientCapacity => "insufficient-capacity",
            Self::ReservationNotHeld => "reservation-not-held",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::ValidationFailed => "validation-failed",
            Self::ZoneNotAllowed => "zone-not-allowed",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::RateLimited => "rate-limited",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }

    /// A short human title, the same for every instance of the kind.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "The request is malformed",
            Self::Unauthorized => "Credentials are missing or invalid",
            Self::Forbidden => "These credentials may not do this",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed on this path",
            Self::InsufficientCapacity => "Not enough capacity",
            Self::ReservationNotHeld => "The reservation is not held",
            Self::PayloadTooLarge => "The request body is too large",
            Self::UnsupportedMediaType => "The request body must be application/json",
            Self::ValidationFailed => "The request is not valid",
            Self::ZoneNotAllowed => "The zone is not allowed for this capacity",
            Self::IdempotencyKeyReused => "The Idempotency-Key was used with another request",
            Self::RateLimited => "Too many requests",
            Self::Internal => "Internal error",
            Self::Unavailable => "The service is unavailable; retry later",
        }
    }

    /// The problem `type` URI: a relative reference ending in the slug.
    pub fn type_uri(self) -> String {
        format!("/problems/{}", self.slug())
    }
}

/// The problem+json body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI reference ending in the slug.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The kind's title.
    pub title: String,
    /// The HTTP status, repeated in the body.
    pub status: u16,
    /// What exactly was wrong, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `insufficient-capacity`: every short item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortages: Option<Vec<Shortage>>,
    /// For `unavailable` with an unknown outcome: the id the reservation has if it exists
    /// (also in the `Allot-Reservation-Id` header), to look it up or retry with the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Box<ReservationId>>,
}

impl Problem {
    /// A problem of `kind` with a detail for people.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            shortages: None,
            reservation_id: None,
        }
    }

    /// An `insufficient-capacity` problem naming every short item.
    pub fn insufficient(shortages: Vec<Shortage>) -> Self {
        let named: Vec<String> = shortages
            .iter()
            .map(|s| format!("{}@{}: requested {}, remaining {}", s.resource, s.slot, s.requested, s.remaining))
            .collect();
        let mut problem = Self::new(ProblemKind::InsufficientCapacity, named.join("; "));
        problem.shortages = Some(shortages);
        problem
    }

    /// The kind whose slug ends `type`, if any.
    pub fn kind(&self) -> Option<ProblemKind> {
        ALL_KINDS.iter().copied().find(|k| self.type_uri.ends_with(k.slug()))
    }
}

/// Every kind, for lookups and tests.
pub const ALL_KINDS: [ProblemKind; 15] = [
    ProblemKind::MalformedRequest,
    ProblemKind::Unauthorized,
    ProblemKind::Forbidden,
    ProblemKind::NotFound,
    ProblemKind::MethodNotAllowed,
    ProblemKind::InsufficientCapacity,
    ProblemKind::ReservationNotHeld,
    ProblemKind::PayloadTooLarge,
    ProblemKind::UnsupportedMediaType,
    ProblemKind::ValidationFailed,
    ProblemKind::ZoneNotAllowed,
    ProblemKind::IdempotencyKeyReused,
    ProblemKind::RateLimited,
    ProblemKind::Internal,
    ProblemKind::Unavailable,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_slug() {
        for kind in ALL_KINDS {
            let problem = Problem::new(kind, "x");
            assert_eq!(problem.kind(), Some(kind));
            assert!(problem.type_uri.ends_with(kind.slug()));
            assert_eq!(problem.status, kind.status());
        }
    }
}
