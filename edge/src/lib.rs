//! The Allot edge worker. Today it holds the checks the edge will run before forwarding a
//! request (the same `allot-shared` code as the coordinator, compiled to WebAssembly); the
//! Worker itself (routing, cache, signing, forwarding) is a later step.

use allot_shared::{Problem, ProblemKind, ReservationRequest, SiteId};

/// Checks a reservation attempt exactly as the coordinator would, so a malformed one can be
/// refused at the edge with the same problem body, without a round trip.
pub fn check_reservation(site: &str, body: &[u8]) -> Result<(SiteId, ReservationRequest), Problem> {
    let site = SiteId::parse(site).map_err(|e| Problem::new(ProblemKind::MalformedRequest, e.to_string()))?;
    let request = ReservationRequest::parse(body)?;
    Ok((site, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_refuses_what_the_coordinator_refuses() {
        let body = br#"{"items":[{"resource":"vans","slot":"2026-12-01T10:00Z","quantity":1}]}"#;
        assert!(check_reservation("hub-1", body).is_ok());
        let refused = check_reservation("Hub 1", body).err().and_then(|p| p.kind());
        assert_eq!(refused, Some(ProblemKind::MalformedRequest));
        let refused = check_reservation("hub-1", br#"{"items":[]}"#).err().and_then(|p| p.kind());
        assert_eq!(refused, Some(ProblemKind::ValidationFailed));
    }
}
