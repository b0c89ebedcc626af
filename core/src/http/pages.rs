//! The operations dashboard's static files, served at `/dashboard`. The page holds no data:
//! every call it makes carries the admin bearer the operator types in, so serving it needs no
//! credentials. A strict Content-Security-Policy forbids inline script and style, so the page
//! can never run injected code from event data.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, header};

/// The dashboard loads only its own files and talks only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const HTML: &str = include_str!("../../assets/dashboard.html");
const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

fn page_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            // Small files, and a new build must show at once: revalidate every time.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /dashboard` and its two assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(|| async { page_file("text/html; charset=utf-8", HTML) }))
        .route("/dashboard/dashboard.css", get(|| async { page_file("text/css; charset=utf-8", CSS) }))
        .route("/dashboard/dashboard.js", get(|| async { page_file("text/javascript; charset=utf-8", JS) }))
}
