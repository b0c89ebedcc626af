//! Coalesces concurrent reservations of one site into one script call: the reserve path under
//! load. Each shard (sites map to shards by hash) allows [`CALLS_IN_FLIGHT_MAX`] script calls
//! at once. A request that finds a call free makes its own `reserve` call at once, from its
//! own task: no queue, no added latency. Only when every call is busy does it join the shard's
//! queue; the shard's dispatcher waits for the next free call and then takes everything queued
//! (at most [`RESERVE_BATCH_MAX`] per site and call; it never waits for more) into one
//! `reserve_batch` call per site. So batches form only when a shard's calls are all busy, and
//! grow with the backlog. Off by default (`--reserve-batch-max 1`: one `reserve` call per
//! request): where the coordinator's CPU rather than Redis is the limit, batching costs more
//! than it saves (BENCHMARKS.md).
//!
//! Each reservation is still all or nothing on its own, and each caller gets its own outcome;
//! a Redis failure fails every reservation of that call, as it would have failed each alone.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use allot_shared::{IdempotencyKey, ReservationId, ReservationRequest, SiteId};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{BatchedReservation, RESERVE_BATCH_MAX, ReserveOutcome, Store, StoreError};

/// Dispatchers; a site always maps to the same one, so its reservations stay in arrival order.
pub const SHARDS: usize = 8;
/// Script calls one shard may have in flight before requests are batched: enough to keep Redis
/// busy while replies travel, few enough that a backlog forms batches.
pub const CALLS_IN_FLIGHT_MAX: usize = 16;
/// Batch calls one dispatcher pass starts at most (it takes what is queued up to this many
/// full batches).
const DISPATCH_CALLS_MAX: usize = 4;
/// Requests queued per shard before callers wait (the HTTP timeout bounds that wait).
pub const QUEUE_MAX: usize = 4_096;

struct Pending {
    site: SiteId,
    entry: BatchedReservation,
    answer: oneshot::Sender<Result<ReserveOutcome, StoreError>>,
}

/// The coalescing reserve path. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Coalescer {
    /// Empty when coalescing is off (`batch_max` 1): every request makes its own call.
    shards: Arc<Vec<Shard>>,
    store: Store,
    /// Reservations placed through batch calls so far (for tests and curiosity).
    batched: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
struct Shard {
    queue: mpsc::Sender<Pending>,
    calls: Arc<Semaphore>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("site", &self.site).field("id", &self.entry.id).finish()
    }
}

impl Coalescer {
    /// Starts the shard dispatchers (inside a tokio runtime), unless `batch_max` is 1: then
    /// every request makes its own call and there is nothing to dispatch. `batch_max` is
    /// clamped to 1..=[`RESERVE_BATCH_MAX`].
    pub fn start(store: Store, batch_max: usize) -> Self {
        let batch_max = batch_max.clamp(1, RESERVE_BATCH_MAX);
        let batched = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let shard_count = if batch_max == 1 { 0 } else { SHARDS };
        let shards = (0..shard_count)
            .map(|_| {
                let (queue, receiver) = mpsc::channel(QUEUE_MAX);
                let calls = Arc::new(Semaphore::new(CALLS_IN_FLIGHT_MAX));
                tokio::spawn(dispatch(store.clone(), receiver, Arc::clone(&calls), batch_max, Arc::clone(&batched)));
                Shard { queue, calls }
            })
            .collect();
        Self { shards: Arc::new(shards), store, batched }
    }

    /// Requests that went through a batch call of more than one reservation, so far.
    pub fn batched(&self) -> u64 {
        self.batched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Places one reservation, possibly in one call with others of its site. Borrows like
    /// [`Store::reserve`]; the request is copied only when it has to wait for a batch.
    pub async fn reserve(
        &self,
        site: &SiteId,
        request: &ReservationRequest,
        idempotency_key: Option<&IdempotencyKey>,
        id: &ReservationId,
    ) -> Result<ReserveOutcome, StoreError> {
        if self.shards.is_empty() {
            return self.store.reserve(site, request, idempotency_key, id).await;
        }
        let shard =
            &self.shards[BuildHasherDefault::<DefaultHasher>::default().hash_one(site) as usize % self.shards.len()];
        // A free call: make it now. (Permits released while the dispatcher waits go to it
        // first, so queued requests are not overtaken.)
        if let Ok(_permit) = shard.calls.try_acquire() {
            metrics::histogram!("allot_reserve_batch_size").record(1.0);
            return self.store.reserve(site, request, idempotency_key, id).await;
        }
        let (answer, answered) = oneshot::channel();
        let entry =
            BatchedReservation { request: request.clone(), idempotency_key: idempotency_key.cloned(), id: id.clone() };
        let pending = Pending { site: site.clone(), entry, answer };
        if shard.queue.send(pending).await.is_err() {
            return Err(StoreError::Corrupt("the reservation dispatcher stopped".to_owned()));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the reservation dispatcher dropped a request".to_owned())))
    }
}

/// One shard's loop: take what is queued, group it by site, one call per site group.
async fn dispatch(
    store: Store,
    mut queue: mpsc::Receiver<Pending>,
    calls: Arc<Semaphore>,
    batch_max: usize,
    batched: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some(first) = queue.recv().await {
        // Wait for a free call first: meanwhile more requests queue and join this batch.
        let Ok(permit) = Arc::clone(&calls).acquire_owned().await else { return };
        let mut by_site: HashMap<SiteId, Vec<Pending>> = HashMap::new();
        by_site.entry(first.site.clone()).or_default().push(first);
        let mut taken = 1;
        // Bounded, so one pass stays short.
        while taken < batch_max * DISPATCH_CALLS_MAX {
            let Ok(next) = queue.try_recv() else { break };
            by_site.entry(next.site.clone()).or_default().push(next);
            taken += 1;
        }
        let mut permit = Some(permit);
        for (site, pending) in by_site {
            for chunk in chunks(pending, batch_max) {
                let permit = match permit.take() {
                    Some(permit) => permit,
                    None => match Arc::clone(&calls).acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                };
                let store = store.clone();
                let site = site.clone();
                if chunk.len() > 1 {
                    batched.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::spawn(async move {
                    call(&store, &site, chunk).await;
                    drop(permit);
                });
            }
        }
    }
}

fn chunks(mut pending: Vec<Pending>, size: usize) -> Vec<Vec<Pending>> {
    let mut chunks = Vec::with_capacity(pending.len().div_ceil(size));
    while pending.len() > size {
        let rest = pending.split_off(size);
        chunks.push(pending);
        pending = rest;
    }
    chunks.push(pending);
    chunks
}

async fn call(store: &Store, site: &SiteId, batch: Vec<Pending>) {
    metrics::histogram!("allot_reserve_batch_size").record(batch.len() as f64);
    if batch.len() == 1 {
        for pending in batch {
            let entry = &pending.entry;
            let outcome = store.reserve(site, &entry.request, entry.idempotency_key.as_ref(), &entry.id).await;
            let _ = pending.answer.send(outcome);
        }
        return;
    }
    let (entries, answers): (Vec<BatchedReservation>, Vec<_>) = batch.into_iter().map(|p| (p.entry, p.answer)).unzip();
    match store.reserve_batch(site, &entries).await {
        Ok(outcomes) => {
            for (answer, outcome) in answers.into_iter().zip(outcomes) {
                let _ = answer.send(outcome);
            }
        }
        Err(error) => {
            for answer in answers {
                let _ = answer.send(Err(error.clone()));
            }
        }
    }
}
