//! One middleware for what every response shares: request metrics by route and status, and
//! problem+json for the errors that layers below the handlers produce as bare statuses (405 from
//! routing, 503 from the timeout layer, 500 from the panic catcher).

use std::time::Instant;

use allot_shared::{PROBLEM_CONTENT_TYPE, Problem, ProblemKind};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::header;

use super::error::problem_response;

/// Records metrics and gives bare error statuses a problem body.
pub async fn problems_and_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let mut response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    if status.as_u16() >= 400 && !is_problem {
        let kind = match status.as_u16() {
            404 => ProblemKind::NotFound,
            405 => ProblemKind::MethodNotAllowed,
            413 => ProblemKind::PayloadTooLarge,
            415 => ProblemKind::UnsupportedMediaType,
            503 | 504 | 408 => ProblemKind::Unavailable,
            500..=599 => ProblemKind::Internal,
            _ => ProblemKind::MalformedRequest,
        };
        let allow = response.headers().get(header::ALLOW).cloned();
        response = problem_response(&Problem::new(kind, format!("{}", status)));
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("allot_http_requests_total", &labels).increment(1);
    metrics::histogram!("allot_http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}
