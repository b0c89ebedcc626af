//! Event fan-out: one Redis reader per site, shared by every HTTP subscriber of that site.
//!
//! A site's feed starts when its first subscriber arrives and stops after its last one leaves.
//! Its reader blocks on `XREAD` (its own connection: a blocking read would stall the shared
//! multiplexed one) and broadcasts each entry into a bounded channel. A subscriber that falls
//! behind that bound is told to resync and disconnected, never silently skipped.
//!
//! Gap-free resumption: a subscriber first joins the feed, then reads the stream's history from
//! its resume point with XRANGE, then takes live entries from the feed, skipping ids it has
//! already sent. The feed's reader starts at the stream's last id as of the feed's creation,
//! which is before any of its subscribers read history, so no entry falls between the two.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use allot_shared::{SiteId, StreamId};
use tokio::sync::{Mutex, broadcast};

use crate::shutdown::Shutdown;
use crate::store::StoreError;
use crate::store::connection::Connector;
use crate::store::streams::{StreamEvent, position};

/// Concurrent SSE subscribers one coordinator serves; beyond this, 503.
pub const SUBSCRIBERS_MAX: usize = 1_024;
/// Entries a site's feed buffers for its slowest subscriber before that one must resync.
pub const FEED_BUFFER_EVENTS: usize = 1_024;
/// How long one blocking XREAD waits before the reader checks whether anyone still listens.
pub const READ_BLOCK_MS: u64 = 2_000;
/// Entries one XREAD or one history page returns at most.
pub const READ_COUNT_MAX: usize = 512;
/// Time between heartbeat comments on an idle SSE connection.
pub const HEARTBEAT_SECONDS: u64 = 15;
/// Wait before a reader reconnects to Redis after an error.
const READ_RETRY_MS: u64 = 250;

type Feed = broadcast::Sender<Arc<StreamEvent>>;

/// The fan-out hub of one coordinator.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    connector: Connector,
    feeds: Mutex<HashMap<SiteId, Feed>>,
    subscribers: AtomicUsize,
    shutdown: Shutdown,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").field("subscribers", &self.inner.subscribers.load(Ordering::Relaxed)).finish()
    }
}

/// A subscriber's place under `SUBSCRIBERS_MAX`, given back on drop.
#[derive(Debug)]
pub struct SubscriberSlot(Arc<HubInner>);

impl std::fmt::Debug for HubInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HubInner")
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("allot_event_subscribers").decrement(1.0);
    }
}

impl EventHub {
    /// A hub reading from the primary `connector` finds, stopping its readers when `shutdown`
    /// fires.
    pub fn new(connector: Connector, shutdown: Shutdown) -> Self {
        Self {
            inner: Arc::new(HubInner {
                connector,
                feeds: Mutex::new(HashMap::new()),
                subscribers: AtomicUsize::new(0),
                shutdown,
            }),
        }
    }

    /// The shutdown signal subscribers end on.
    pub fn shutdown(&self) -> Shutdown {
        self.inner.shutdown.clone()
    }

    /// A place for one more subscriber, or `None` at `SUBSCRIBERS_MAX`.
    pub fn admit(&self) -> Option<SubscriberSlot> {
        let taken = self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        let slot = SubscriberSlot(Arc::clone(&self.inner));
        metrics::gauge!("allot_event_subscribers").increment(1.0);
        if taken >= SUBSCRIBERS_MAX { None } else { Some(slot) }
    }

    /// A dedicated connection for history reads and stream positions.
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        Ok(self.inner.connector.open(Some(reader_timeout())).await?.1)
    }

    /// Joins the site's live feed, starting its reader if it has none.
    pub async fn subscribe(&self, site: &SiteId) -> Result<broadcast::Receiver<Arc<StreamEvent>>, StoreError> {
        let mut feeds = self.inner.feeds.lock().await;
        if let Some(feed) = feeds.get(site) {
            return Ok(feed.subscribe());
        }
        let (epoch, mut connection) = self.inner.connector.open(Some(reader_timeout())).await?;
        let start = position(&mut connection, site).await?.last;
        let (feed, receiver) = broadcast::channel(FEED_BUFFER_EVENTS);
        feeds.insert(site.clone(), feed.clone());
        tokio::spawn(read_feed(Arc::clone(&self.inner), site.clone(), feed, start, epoch, connection));
        Ok(receiver)
    }
}

fn reader_timeout() -> Duration {
    Duration::from_millis(READ_BLOCK_MS + 3_000)
}

/// One site's reader. It ends (and every subscriber gets `resync`) when the primary changes:
/// the new primary may lack events this feed already sent, which a failover discarded, so
/// subscribers must reload a snapshot from it rather than resume.
async fn read_feed(
    hub: Arc<HubInner>,
    site: SiteId,
    feed: Feed,
    start: StreamId,
    epoch: u64,
    connection: redis::aio::MultiplexedConnection,
) {
    let mut connection = Some(connection);
    let mut last = start;
    let mut shutdown = hub.shutdown.clone();
    let mut epochs = hub.connector.watch_epoch();
    metrics::gauge!("allot_event_feeds").increment(1.0);
    loop {
        if hub.connector.epoch() != epoch {
            tracing::info!(%site, "the primary changed: ending the site's feed so subscribers resync");
            hub.feeds.lock().await.remove(&site);
            break;
        }
        if feed.receiver_count() == 0 {
            let mut feeds = hub.feeds.lock().await;
            if feed.receiver_count() == 0 {
                feeds.remove(&site);
                break;
            }
        }
        let mut current = match connection.take() {
            Some(current) => current,
            None => match hub.connector.open(Some(reader_timeout())).await {
                Ok((_, fresh)) => fresh,
                Err(error) => {
                    tracing::debug!(%error, %site, "event reader cannot connect; retrying");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(Duration::from_millis(READ_RETRY_MS)) => continue,
                    }
                }
            },
        };
        let read = crate::store::streams::read(&mut current, &site, last, READ_COUNT_MAX, Some(READ_BLOCK_MS));
        let reply = tokio::select! {
            _ = shutdown.wait() => break,
            _ = epochs.changed() => continue,
            reply = read => reply,
        };
        match reply {
            Ok(events) => {
                for event in events {
                    last = event.id;
                    // No receiver right now is fine: the loop checks before the next read.
                    let _ = feed.send(Arc::new(event));
                }
                connection = Some(current);
            }
            Err(error) => {
                tracing::debug!(%error, %site, "event reader failed; reconnecting");
                metrics::counter!("allot_redis_errors_total", "kind" => "event_reader").increment(1);
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_millis(READ_RETRY_MS)) => {}
                }
            }
        }
    }
    metrics::gauge!("allot_event_feeds").decrement(1.0);
}
