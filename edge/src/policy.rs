//! The edge's decisions, as plain functions: its configuration and limits, how fresh a cached
//! view is, when a reservation may be refused without asking the coordinator, and how
//! forwarding retries. No Workers API here, so all of it is tested natively.

use allot_shared::{Availability, AvailabilityQuery, ReservationRequest, Shortage};

/// Coordinators one edge may be configured with.
pub const COORDINATORS_MAX: usize = 8;
/// Default time a cached availability view is served before it is fetched again.
pub const CACHE_TTL_MS_DEFAULT: u64 = 1_000;
/// Longest allowed cache TTL: availability must stay close to the truth.
pub const CACHE_TTL_MS_MAX: u64 = 10_000;
/// Default age below which a cached `remaining` of 0 refuses a reservation at the edge.
pub const SHIELD_AGE_MS_DEFAULT: u64 = 1_000;
/// Default time an isolate reuses the live view it last got from the site's Durable Object
/// before asking again: bounds the extra staleness of a read, and saves a call per read under load.
pub const VIEW_MEMO_MS_DEFAULT: u64 = 20;
/// Longest allowed view memo.
pub const VIEW_MEMO_MS_MAX: u64 = 1_000;
/// Default time a live view stays servable after its event stream broke; after this the edge
/// falls back to short-TTL fetches (and says so).
pub const STREAM_DOWN_MS_DEFAULT: u64 = 2_000;
/// Longest allowed stream-down bound.
pub const STREAM_DOWN_MS_MAX: u64 = 60_000;
/// Attempts of one forwarded request, across coordinators, by default.
pub const FORWARD_ATTEMPTS_DEFAULT: u32 = 3;
/// Most attempts one forwarded request may be configured with.
pub const FORWARD_ATTEMPTS_MAX: u32 = 8;
/// Time one attempt may take before it is abandoned and the next coordinator is tried.
pub const ATTEMPT_TIMEOUT_MS_DEFAULT: u64 = 2_000;
/// Time all attempts of one request may take together.
pub const FORWARD_BUDGET_MS_DEFAULT: u64 = 6_000;

/// The edge's settings, from the Worker's vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Coordinator base URLs, without a trailing slash.
    pub coordinators: Vec<String>,
    /// How long a cached view is served.
    pub cache_ttl_ms: u64,
    /// How young a cached view must be to refuse a reservation at the edge (0 turns it off).
    pub shield_age_ms: u64,
    /// How long an isolate reuses a live view from the site's Durable Object (0: ask every time).
    pub view_memo_ms: u64,
    /// How long a live view is served after its stream broke.
    pub stream_down_ms: u64,
    /// Attempts per forwarded request.
    pub forward_attempts: u32,
    /// Time per attempt.
    pub attempt_timeout_ms: u64,
    /// Time for all attempts.
    pub forward_budget_ms: u64,
}

/// A setting that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn number(name: &str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ConfigError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ConfigError(format!("{name} must be a whole number up to {max}, not {text:?}"))),
    }
}

impl EdgeConfig {
    /// Reads the settings; `get` returns a var's value if it is set.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let list = get("ALLOT_COORDINATORS").unwrap_or_default();
        let coordinators: Vec<String> = list
            .split(',')
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        if coordinators.is_empty() || coordinators.len() > COORDINATORS_MAX {
            return Err(ConfigError(format!(
                "ALLOT_COORDINATORS must list 1..={COORDINATORS_MAX} comma-separated URLs, got {list:?}"
            )));
        }
        if let Some(bad) = coordinators.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(ConfigError(format!("coordinator URL {bad:?} must start with http:// or https://")));
        }
        let attempts = number(
            "ALLOT_FORWARD_ATTEMPTS",
            get("ALLOT_FORWARD_ATTEMPTS").as_deref(),
            u64::from(FORWARD_ATTEMPTS_DEFAULT),
            u64::from(FORWARD_ATTEMPTS_MAX),
        )?;
        Ok(Self {
            coordinators,
            cache_ttl_ms: number(
                "ALLOT_CACHE_TTL_MS",
                get("ALLOT_CACHE_TTL_MS").as_deref(),
                CACHE_TTL_MS_DEFAULT,
                CACHE_TTL_MS_MAX,
            )?,
            shield_age_ms: number(
                "ALLOT_SHIELD_AGE_MS",
                get("ALLOT_SHIELD_AGE_MS").as_deref(),
                SHIELD_AGE_MS_DEFAULT,
                CACHE_TTL_MS_MAX,
            )?,
            stream_down_ms: number(
                "ALLOT_STREAM_DOWN_MS",
                get("ALLOT_STREAM_DOWN_MS").as_deref(),
                STREAM_DOWN_MS_DEFAULT,
                STREAM_DOWN_MS_MAX,
            )?,
            view_memo_ms: number(
                "ALLOT_VIEW_MEMO_MS",
                get("ALLOT_VIEW_MEMO_MS").as_deref(),
                VIEW_MEMO_MS_DEFAULT,
                VIEW_MEMO_MS_MAX,
            )?,
            forward_attempts: u32::try_from(attempts.max(1)).unwrap_or(FORWARD_ATTEMPTS_DEFAULT),
            attempt_timeout_ms: number(
                "ALLOT_ATTEMPT_TIMEOUT_MS",
                get("ALLOT_ATTEMPT_TIMEOUT_MS").as_deref(),
                ATTEMPT_TIMEOUT_MS_DEFAULT,
                30_000,
            )?,
            forward_budget_ms: number(
                "ALLOT_FORWARD_BUDGET_MS",
                get("ALLOT_FORWARD_BUDGET_MS").as_deref(),
                FORWARD_BUDGET_MS_DEFAULT,
                60_000,
            )?,
        })
    }

    /// The coordinators to try for one request, in order: starting at `start` (a per-request
    /// random number spreads load) and going round, at most `forward_attempts` long.
    pub fn attempt_order(&self, start: usize) -> Vec<&str> {
        let count = self.coordinators.len();
        (0..self.forward_attempts as usize).map(|i| self.coordinators[(start + i) % count].as_str()).collect()
    }
}

/// Whether a live view may be served: its stream is up, or broke less than `down_bound_ms` ago.
/// After that the edge falls back to short-TTL fetches.
pub fn live_view_servable(connected: bool, down_since_ms: Option<u64>, now_ms: u64, down_bound_ms: u64) -> bool {
    connected || down_since_ms.is_some_and(|since| now_ms.saturating_sub(since) < down_bound_ms)
}

/// Whether a coordinator's answer means "try another one": it or its store is down.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// A cached view that is too old to be served as fresh (never negative if clocks disagree).
pub fn age_ms(fetched_at_ms: u64, now_ms: u64) -> u64 {
    now_ms.saturating_sub(fetched_at_ms)
}

/// The short items of `request` as the cached view sees them, if the view is young enough and
/// shows `remaining` 0 for one of the items. The view is the site's whole view, so a counter
/// missing from it has no capacity (remaining 0), as at the coordinator. A request touching a
/// counter with a zone allow-list is never refused here: the coordinator checks zones before
/// capacity. The edge never says yes on its own: this only decides an early, polite no.
pub fn shielded_shortages(
    view: &Availability,
    view_age_ms: u64,
    shield_age_ms: u64,
    request: &ReservationRequest,
) -> Option<Vec<Shortage>> {
    if view_age_ms >= shield_age_ms {
        return None;
    }
    let counter_of =
        |item: &allot_shared::Item| view.counters.iter().find(|c| c.resource == item.resource && c.slot == item.slot);
    if request.items.iter().any(|item| counter_of(item).is_some_and(|c| c.zones.is_some())) {
        return None;
    }
    let remaining_of = |item: &allot_shared::Item| counter_of(item).map_or(0, |c| c.remaining);
    if !request.items.iter().any(|item| remaining_of(item) == 0) {
        return None;
    }
    Some(
        request
            .items
            .iter()
            .filter_map(|item| {
                let remaining = remaining_of(item);
                (remaining < item.quantity).then(|| Shortage {
                    resource: item.resource.clone(),
                    slot: item.slot.clone(),
                    requested: item.quantity,
                    remaining,
                })
            })
            .collect(),
    )
}

/// The part of a site's full view that a query asks for.
pub fn filtered(view: &Availability, query: &AvailabilityQuery) -> Availability {
    Availability {
        site: view.site.clone(),
        version: view.version,
        counters: view.counters.iter().filter(|c| query.matches(&c.resource, &c.slot)).cloned().collect(),
    }
}

/// Whether an `If-None-Match` header matches an entity tag.
pub fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allot_shared::{Counter, ResourceId, SiteId, Slot};

    fn config(vars: &[(&str, &str)]) -> Result<EdgeConfig, ConfigError> {
        EdgeConfig::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    fn view(counters: &[(&str, &str, u64, u64)]) -> Availability {
        Availability {
            site: SiteId::parse("hub").expect("id"),
            version: allot_shared::StreamId::new(1, 0),
            counters: counters
                .iter()
                .map(|(r, s, capacity, used)| Counter {
                    resource: ResourceId::parse(r).expect("id"),
                    slot: Slot::parse(s).expect("slot"),
                    capacity: *capacity,
                    used: *used,
                    remaining: capacity.saturating_sub(*used),
                    zones: None,
                })
                .collect(),
        }
    }

    fn request(items: &[(&str, &str, u64)]) -> ReservationRequest {
        let items: Vec<String> =
            items.iter().map(|(r, s, q)| format!(r#"{{"resource":"{r}","slot":"{s}","quantity":{q}}}"#)).collect();
        ReservationRequest::parse(format!(r#"{{"items":[{}]}}"#, items.join(",")).as_bytes()).expect("request")
    }

    #[test]
    fn configuration_is_read_and_bounded() {
        let c = config(&[("ALLOT_COORDINATORS", "http://a:1/, http://b:2")]).expect("config");
        assert_eq!(c.coordinators, ["http://a:1", "http://b:2"]);
        assert_eq!(c.cache_ttl_ms, CACHE_TTL_MS_DEFAULT);
        assert_eq!(c.attempt_order(1), ["http://b:2", "http://a:1", "http://b:2"]);
        assert!(config(&[]).is_err());
        assert!(config(&[("ALLOT_COORDINATORS", "a:1")]).is_err());
        assert!(config(&[("ALLOT_COORDINATORS", "http://a"), ("ALLOT_CACHE_TTL_MS", "60000")]).is_err());
        assert!(config(&[("ALLOT_COORDINATORS", "http://a"), ("ALLOT_FORWARD_ATTEMPTS", "x")]).is_err());
        let many = ["http://a"; COORDINATORS_MAX + 1].join(",");
        assert!(config(&[("ALLOT_COORDINATORS", &many)]).is_err());
    }

    #[test]
    fn only_a_young_view_with_a_sold_out_item_shields() {
        let v = view(&[("vans", "s1", 5, 5), ("pickers", "s1", 5, 3)]);
        let both = request(&[("vans", "s1", 1), ("pickers", "s1", 3)]);
        let shortages = shielded_shortages(&v, 100, 1_000, &both).expect("shielded");
        assert_eq!(shortages.len(), 2, "every short item is named: {shortages:?}");
        assert_eq!(shortages[0].remaining, 0);
        assert_eq!(shortages[1].remaining, 2);
        assert_eq!(shielded_shortages(&v, 1_000, 1_000, &both), None, "too old");
        assert_eq!(shielded_shortages(&v, 0, 0, &both), None, "shielding off");
        // Short but not sold out: only the coordinator decides.
        assert_eq!(shielded_shortages(&v, 0, 1_000, &request(&[("pickers", "s1", 3)])), None);
        // Not in the site's view: no capacity, as at the coordinator.
        let unknown = shielded_shortages(&v, 0, 1_000, &request(&[("rooms", "s1", 1)])).expect("shielded");
        assert_eq!((unknown[0].requested, unknown[0].remaining), (1, 0));
        // A zone-restricted counter: the coordinator's zone check comes first.
        let mut zoned = v.clone();
        zoned.counters[0].zones = Some(vec![allot_shared::ZoneId::parse("north").expect("zone")]);
        assert_eq!(shielded_shortages(&zoned, 0, 1_000, &both), None);
    }

    #[test]
    fn a_live_view_is_served_until_its_stream_has_been_down_too_long() {
        assert!(live_view_servable(true, None, 10_000, 2_000));
        assert!(live_view_servable(false, Some(9_000), 10_000, 2_000));
        assert!(!live_view_servable(false, Some(8_000), 10_000, 2_000));
        assert!(!live_view_servable(false, None, 10_000, 2_000), "never connected: nothing to serve");
    }

    #[test]
    fn retries_only_for_a_coordinator_that_is_down() {
        for status in [502, 503, 504] {
            assert!(is_retryable_status(status));
        }
        for status in [200, 201, 400, 401, 404, 409, 422, 429, 500] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }

    #[test]
    fn views_filter_like_the_coordinator_and_etags_match() {
        let v = view(&[("vans", "2026-12-01", 1, 0), ("vans", "2026-12-02", 1, 0), ("pickers", "2026-12-01", 1, 0)]);
        let query = AvailabilityQuery::parse(Some("resource=vans&from=2026-12-02")).expect("query");
        assert_eq!(filtered(&v, &query).counters.len(), 1);
        assert!(etag_matches(Some("\"a\", \"1-0\""), "\"1-0\""));
        assert!(!etag_matches(Some("\"0-9\""), "\"1-0\""));
        assert_eq!(age_ms(10, 5), 0);
    }
}
