//! The hold sweeper: ends holds on time even when nobody reads. Every tick it visits the sites
//! in `allot:sites-with-holds` and runs the expire script in bounded batches. The script decides
//! what is due and checks each reservation's status, so several coordinators sweeping at once
//! never release a hold twice.
//!
//! Why the site is added to the set *after* the reserve script: the sweeper removes a site with
//! SREM and then looks at its holds again (re-adding it if any). A hold placed before that second
//! look is seen by it; a hold placed after it is followed by its own SADD, which then comes after
//! the SREM. Either way the site stays indexed. A coordinator dying between its script and its
//! SADD is covered by the periodic rescan of every site's holds key.

use std::time::Duration;

use allot_shared::SiteId;

use crate::shutdown::Shutdown;
use crate::store::{EXPIRE_BATCH_MAX, Store, StoreError};

/// Time between sweeps: capacity comes back at most this long after a hold ends.
pub const SWEEP_INTERVAL_MS: u64 = 250;
/// Time between full rescans of the keyspace for sites with holds.
pub const RESCAN_INTERVAL_MS: u64 = 60_000;
/// Batches per site per sweep: bounds one sweep when a site has very many due holds.
pub const BATCHES_PER_SITE_MAX: u32 = 16;
/// Keys asked for per SCAN step during a rescan.
const SCAN_COUNT: u32 = 1_000;

/// Runs until `shutdown` fires.
pub async fn run(store: Store, mut shutdown: Shutdown) {
    let mut sweep = tokio::time::interval(Duration::from_millis(SWEEP_INTERVAL_MS));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rescan = tokio::time::interval(Duration::from_millis(RESCAN_INTERVAL_MS));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = rescan.tick() => {
                if let Err(error) = rescan_sites(&store).await {
                    failed("rescan", None, &error);
                }
            }
            _ = sweep.tick() => {
                if let Err(error) = sweep_once(&store).await {
                    failed("sweep", None, &error);
                }
            }
        }
    }
}

fn failed(what: &'static str, site: Option<&SiteId>, error: &StoreError) {
    metrics::counter!("allot_redis_errors_total", "kind" => "sweeper").increment(1);
    tracing::warn!(%error, site = site.map(SiteId::as_str), "hold {what} failed; retrying next tick");
}

/// One pass over every site with holds. Returns how many holds it expired. A site that fails
/// is logged and skipped, so it cannot hold up the others.
pub async fn sweep_once(store: &Store) -> Result<u64, StoreError> {
    let mut total = 0;
    for site in store.sites_with_holds().await? {
        match sweep_site(store, &site).await {
            Ok(expired) => total += expired,
            Err(error) => failed("sweep", Some(&site), &error),
        }
    }
    Ok(total)
}

async fn sweep_site(store: &Store, site: &SiteId) -> Result<u64, StoreError> {
    let mut total = 0;
    let mut left = 0;
    for _ in 0..BATCHES_PER_SITE_MAX {
        let (expired, holds_left) = store.expire_due(site).await?;
        total += expired;
        left = holds_left;
        if expired > 0 {
            metrics::counter!("allot_holds_expired_total", "by" => "sweeper").increment(expired);
        }
        if expired < u64::from(EXPIRE_BATCH_MAX) {
            break;
        }
    }
    if left == 0 {
        store.forget_site_without_holds(site).await?;
    }
    Ok(total)
}

/// Finds every site with a non-empty holds set and indexes it.
async fn rescan_sites(store: &Store) -> Result<(), StoreError> {
    let mut cursor: u64 = 0;
    loop {
        let (next, sites) = store.scan_sites_with_holds(cursor, SCAN_COUNT).await?;
        for site in sites {
            store.note_site_with_holds(&site).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
