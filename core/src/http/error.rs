//! The one error type of the HTTP surface. Every failure becomes an RFC 9457 problem+json body
//! with a slug of the contract; causes are logged, never sent.

use allot_shared::{PROBLEM_CONTENT_TYPE, Problem, ProblemKind, Shortage};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::store::StoreError;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl ApiError {
    /// A problem of `kind` with a detail for people.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self(Problem::new(kind, detail))
    }

    /// 400 `malformed-request`.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::MalformedRequest, detail)
    }

    /// 409 `insufficient-capacity` naming every short item.
    pub fn insufficient(shortages: Vec<Shortage>) -> Self {
        Self(Problem::insufficient(shortages))
    }

    /// 503 `unavailable` for a change whose outcome is unknown, naming the reservation id it
    /// has if it exists, so the client can look it up or retry with the same key.
    pub fn unknown_outcome(reservation: Option<allot_shared::ReservationId>, why: &str) -> Self {
        let detail = match &reservation {
            Some(id) => format!(
                "the outcome is unknown: {why}. Reservation {id} may or may not exist: retry with the same \
                 Idempotency-Key (it finds it or makes exactly one), or GET it"
            ),
            None => format!("the outcome is unknown: {why}. Retry the same request: it is safe to repeat"),
        };
        let mut problem = Problem::new(ProblemKind::Unavailable, detail);
        problem.reservation_id = reservation.map(Box::new);
        Self(problem)
    }

    /// The problem's kind.
    pub fn kind(&self) -> ProblemKind {
        self.0.kind().unwrap_or(ProblemKind::Internal)
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Unavailable(cause) => {
                metrics::counter!("allot_redis_errors_total", "kind" => "unavailable").increment(1);
                tracing::warn!(error = %cause, "store unavailable");
                Self::new(ProblemKind::Unavailable, "the store is unavailable; retry after the Retry-After delay")
            }
            StoreError::Corrupt(cause) => {
                metrics::counter!("allot_redis_errors_total", "kind" => "unexpected").increment(1);
                tracing::error!(error = %cause, "unexpected store reply");
                Self::new(ProblemKind::Internal, "internal error")
            }
            StoreError::NotAcknowledged(reservation) => {
                metrics::counter!("allot_unacknowledged_total").increment(1);
                Self::unknown_outcome(reservation.clone(), "it could not be confirmed on enough replicas in time")
            }
            StoreError::Config(cause) => {
                metrics::counter!("allot_redis_errors_total", "kind" => "configuration").increment(1);
                tracing::error!(error = %cause, "store configuration");
                Self::new(ProblemKind::Internal, "internal error")
            }
        }
    }
}

/// Renders a problem as a response.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    if matches!(problem.kind(), Some(ProblemKind::Unavailable | ProblemKind::RateLimited)) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    if let Some(id) = &problem.reservation_id
        && let Ok(value) = HeaderValue::from_str(id.as_str())
    {
        headers.insert("allot-reservation-id", value);
    }
    if problem.kind() == Some(ProblemKind::Unauthorized) {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"allot\""));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(&self.0)
    }
}
