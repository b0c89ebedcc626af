//! Per-site counts of reservations placed and refused, per second, over the last minute, as
//! this coordinator process saw them: the dashboard's rate chart. Refusals are not domain events
//! (a refused attempt changes nothing), so the stream cannot give them; counting here keeps the
//! refusal path free of Redis writes. With several coordinators each one reports its own share,
//! and attempts the edge refuses itself never reach any of them.
//!
//! Bounded: at most [`SITES_TRACKED_MAX`] sites, each with [`WINDOW_SECONDS`] buckets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use allot_shared::SiteId;
use serde::Serialize;

/// Seconds of history kept per site: enough for a one-minute chart.
pub const WINDOW_SECONDS: u64 = 60;
/// Sites tracked at once. Past this, the site idle the longest is forgotten, so a scan over
/// many site ids cannot grow memory without bound.
pub const SITES_TRACKED_MAX: usize = 4_096;

/// One second's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Second {
    /// Unix time, seconds.
    pub at: u64,
    /// Reservations placed (201).
    pub placed: u64,
    /// Attempts refused for capacity or zone (409, 422 zone-not-allowed).
    pub refused: u64,
}

/// What one attempt came to, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A new reservation.
    Placed,
    /// Refused: no capacity, or a zone the counters do not allow.
    Refused,
}

#[derive(Debug, Default)]
struct Window {
    /// Ring of buckets indexed by `at % WINDOW_SECONDS`; a bucket whose `at` is older than the
    /// window is stale and reads as empty.
    buckets: Vec<Second>,
    last_at: u64,
}

impl Window {
    fn record(&mut self, at: u64, attempt: Attempt) {
        if self.buckets.is_empty() {
            self.buckets = vec![Second::default(); WINDOW_SECONDS as usize];
        }
        let bucket = &mut self.buckets[(at % WINDOW_SECONDS) as usize];
        if bucket.at != at {
            *bucket = Second { at, ..Second::default() };
        }
        match attempt {
            Attempt::Placed => bucket.placed += 1,
            Attempt::Refused => bucket.refused += 1,
        }
        self.last_at = self.last_at.max(at);
    }

    fn seconds(&self, now: u64) -> Vec<Second> {
        let oldest = now.saturating_sub(WINDOW_SECONDS - 1);
        let mut seconds: Vec<Second> = self
            .buckets
            .iter()
            .filter(|b| b.at >= oldest && b.at <= now && (b.placed + b.refused) > 0)
            .copied()
            .collect();
        seconds.sort_by_key(|b| b.at);
        seconds
    }
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    sites: Arc<Mutex<HashMap<SiteId, Window>>>,
}

impl Activity {
    /// Counts one attempt at `at` (unix seconds).
    pub fn record(&self, site: &SiteId, at: u64, attempt: Attempt) {
        let Ok(mut sites) = self.sites.lock() else { return };
        if !sites.contains_key(site)
            && sites.len() >= SITES_TRACKED_MAX
            && let Some(idle) = sites.iter().min_by_key(|(_, w)| w.last_at).map(|(s, _)| s.clone())
        {
            sites.remove(&idle);
        }
        sites.entry(site.clone()).or_default().record(at, attempt);
    }

    /// The site's seconds with any activity in the window ending at `now`, oldest first.
    pub fn seconds(&self, site: &SiteId, now: u64) -> Vec<Second> {
        let Ok(sites) = self.sites.lock() else { return Vec::new() };
        sites.get(site).map(|w| w.seconds(now)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str) -> SiteId {
        SiteId::parse(name).expect("site id")
    }

    #[test]
    fn counts_per_second_and_forgets_what_left_the_window() {
        let activity = Activity::default();
        let hub = site("hub");
        activity.record(&hub, 1_000, Attempt::Placed);
        activity.record(&hub, 1_000, Attempt::Refused);
        activity.record(&hub, 1_000, Attempt::Refused);
        activity.record(&hub, 1_002, Attempt::Placed);
        assert_eq!(
            activity.seconds(&hub, 1_002),
            vec![Second { at: 1_000, placed: 1, refused: 2 }, Second { at: 1_002, placed: 1, refused: 0 }]
        );
        // 1_000 + 60 reuses 1_000's bucket: the old counts must not leak into the new second.
        activity.record(&hub, 1_060, Attempt::Refused);
        assert_eq!(
            activity.seconds(&hub, 1_060),
            vec![Second { at: 1_002, placed: 1, refused: 0 }, Second { at: 1_060, placed: 0, refused: 1 }]
        );
        assert_eq!(activity.seconds(&hub, 1_200), vec![]);
        assert_eq!(activity.seconds(&site("other"), 1_060), vec![]);
    }

    #[test]
    fn tracks_a_bounded_number_of_sites() {
        let activity = Activity::default();
        for n in 0..SITES_TRACKED_MAX {
            activity.record(&site(&format!("s{n}")), 10 + n as u64, Attempt::Placed);
        }
        activity.record(&site("newcomer"), 100_000, Attempt::Placed);
        assert_eq!(activity.sites.lock().expect("lock").len(), SITES_TRACKED_MAX);
        assert!(activity.seconds(&site("s0"), 10).is_empty(), "the longest idle site is forgotten");
        assert_eq!(activity.seconds(&site("newcomer"), 100_000).len(), 1);
    }
}
