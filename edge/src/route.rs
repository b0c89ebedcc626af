//! Which endpoint a request is for. Plain Rust, so it is tested natively; the worker only maps
//! the result to handlers.

use allot_shared::{Problem, ProblemKind, ReservationId, SiteId};

/// An endpoint the edge serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/sites/{site}/availability`, served from the site's live view (or the cache).
    Availability(SiteId),
    /// `GET /v1/sites/{site}/availability/stream`, browsers' SSE from the site's live view.
    AvailabilityStream(SiteId),
    /// `POST /v1/sites/{site}/reservations`, checked, maybe shielded, then forwarded.
    Reserve(SiteId),
    /// `GET /v1/sites/{site}/reservations/{id}`, forwarded.
    ReadReservation(SiteId, ReservationId),
    /// `POST /v1/sites/{site}/reservations/{id}/confirm`, forwarded.
    Confirm(SiteId, ReservationId),
    /// `DELETE /v1/sites/{site}/reservations/{id}`, forwarded.
    Cancel(SiteId, ReservationId),
    /// `GET /healthz`: the edge itself is up.
    Healthz,
    /// `GET /` or `GET /s/{site}`: the booking page (the script reads the site from the path).
    BookingPage,
    /// `GET /assets/...`: the booking page's script or style sheet.
    PageAsset(crate::pages::PageFile),
}

fn malformed(error: impl std::fmt::Display) -> Problem {
    Problem::new(ProblemKind::MalformedRequest, error.to_string())
}

fn not_found(path: &str) -> Problem {
    Problem::new(ProblemKind::NotFound, format!("no route for {path}"))
}

fn method_not_allowed(method: &str, path: &str) -> Problem {
    Problem::new(ProblemKind::MethodNotAllowed, format!("{method} is not allowed on {path}"))
}

fn percent_decoded(segment: &str) -> Result<String, Problem> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = segment.get(at + 1..at + 3).ok_or_else(|| malformed("bad percent-encoding in the path"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| malformed("bad percent-encoding in the path"))?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| malformed("the path is not UTF-8"))
}

fn page(method: &str, path: &str, route: Route) -> Result<Route, Problem> {
    if method == "GET" || method == "HEAD" { Ok(route) } else { Err(method_not_allowed(method, path)) }
}

/// Maps a method and path to a route. Admin endpoints (capacity) are not served at the edge
/// and answer 404 like any unknown path.
pub fn route(method: &str, path: &str) -> Result<Route, Problem> {
    if path == "/healthz" {
        return if method == "GET" || method == "HEAD" {
            Ok(Route::Healthz)
        } else {
            Err(method_not_allowed(method, path))
        };
    }
    if let Some(file) = crate::pages::asset(path) {
        return page(method, path, Route::PageAsset(file));
    }
    if path == "/" {
        return page(method, path, Route::BookingPage);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let site = |raw: &str| -> Result<SiteId, Problem> { SiteId::parse(&percent_decoded(raw)?).map_err(malformed) };
    let id = |raw: &str| -> Result<ReservationId, Problem> {
        ReservationId::parse(&percent_decoded(raw)?).map_err(malformed)
    };
    match segments.as_slice() {
        ["s", s] | ["s", s, ""] => {
            site(s)?;
            page(method, path, Route::BookingPage)
        }
        ["v1", "sites", s, "availability"] => match method {
            "GET" | "HEAD" => Ok(Route::Availability(site(s)?)),
            _ => Err(method_not_allowed(method, path)),
        },
        ["v1", "sites", s, "availability", "stream"] => match method {
            "GET" => Ok(Route::AvailabilityStream(site(s)?)),
            _ => Err(method_not_allowed(method, path)),
        },
        ["v1", "sites", s, "reservations"] => match method {
            "POST" => Ok(Route::Reserve(site(s)?)),
            _ => Err(method_not_allowed(method, path)),
        },
        ["v1", "sites", s, "reservations", r] => match method {
            "GET" | "HEAD" => Ok(Route::ReadReservation(site(s)?, id(r)?)),
            "DELETE" => Ok(Route::Cancel(site(s)?, id(r)?)),
            _ => Err(method_not_allowed(method, path)),
        },
        ["v1", "sites", s, "reservations", r, "confirm"] => match method {
            "POST" => Ok(Route::Confirm(site(s)?, id(r)?)),
            _ => Err(method_not_allowed(method, path)),
        },
        _ => Err(not_found(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f9619ff-8b86-4011-b42d-00c04fc964ff";

    fn slug(result: Result<Route, Problem>) -> &'static str {
        match result {
            Ok(_) => "ok",
            Err(problem) => problem.kind().map_or("?", ProblemKind::slug),
        }
    }

    #[test]
    fn public_endpoints_route_and_admin_ones_do_not() {
        assert_eq!(slug(route("GET", "/v1/sites/hub-1/availability")), "ok");
        assert_eq!(slug(route("GET", "/v1/sites/hub-1/availability/stream")), "ok");
        assert_eq!(slug(route("POST", "/v1/sites/hub-1/reservations")), "ok");
        assert_eq!(slug(route("GET", &format!("/v1/sites/hub-1/reservations/{ID}"))), "ok");
        assert_eq!(slug(route("DELETE", &format!("/v1/sites/hub-1/reservations/{ID}"))), "ok");
        assert_eq!(slug(route("POST", &format!("/v1/sites/hub-1/reservations/{ID}/confirm"))), "ok");
        assert_eq!(slug(route("PUT", "/v1/sites/hub-1/capacity")), "not-found");
        assert_eq!(slug(route("GET", "/metrics")), "not-found");
        assert_eq!(slug(route("PUT", "/v1/sites/hub-1/availability")), "method-not-allowed");
    }

    #[test]
    fn the_booking_page_is_served_at_the_root_and_per_site() {
        assert_eq!(route("GET", "/"), Ok(Route::BookingPage));
        assert_eq!(route("GET", "/s/hub-1"), Ok(Route::BookingPage));
        assert_eq!(route("GET", "/s/hub-1/"), Ok(Route::BookingPage));
        assert!(matches!(route("GET", "/assets/booking.js"), Ok(Route::PageAsset(_))));
        assert_eq!(slug(route("GET", "/s/Not%20A%20Site")), "malformed-request");
        assert_eq!(slug(route("POST", "/")), "method-not-allowed");
        assert_eq!(slug(route("GET", "/assets/missing.js")), "not-found");
    }

    #[test]
    fn ids_in_the_path_are_checked() {
        assert_eq!(slug(route("GET", "/v1/sites/Hub%201/availability")), "malformed-request");
        assert_eq!(slug(route("GET", "/v1/sites/hub/reservations/not-a-uuid")), "malformed-request");
        assert_eq!(slug(route("GET", "/v1/sites/hub%zz/availability")), "malformed-request");
        assert_eq!(
            route("GET", "/v1/sites/hub%2D1/availability"),
            Ok(Route::Availability(SiteId::parse("hub-1").expect("id")))
        );
    }
}
