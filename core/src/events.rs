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

use allot_shared::SiteId;
use redis::Value;
use tokio::sync::{Mutex, broadcast};

use crate::shutdown::Shutdown;
use crate::store::{StoreError, events_key};

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

/// One entry of a site's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// The stream entry id (`<ms>-<seq>`), the SSE `id:`.
    pub id: String,
    /// The event type, the SSE `event:`.
    pub kind: String,
    /// The JSON `data` as written by the script.
    pub data: String,
}

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId(pub u64, pub u64);

impl EntryId {
    /// Parses `<ms>-<seq>`, or `<ms>` (sequence 0), or `0`.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// Where a site's stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition {
    /// The id of the latest entry ever added (`0-0` if none).
    pub last: EntryId,
    /// The id of the latest entry removed with XDEL (`0-0` if none).
    pub max_deleted: EntryId,
    /// The oldest retained entry's id (`0-0` if none).
    pub first: EntryId,
    /// Whether trimming has removed entries (all older than `first`).
    pub trimmed: bool,
}

impl StreamPosition {
    /// Whether a client that has seen everything up to `after` cannot simply resume: entries
    /// after it may be gone (trimmed or deleted), or it claims to be ahead of the stream (Redis
    /// lost writes it had seen, e.g. restored from an older file). `0` asks for "everything
    /// retained" and never needs to.
    pub fn lost_after(&self, after: EntryId) -> bool {
        let zero = EntryId(0, 0);
        after != zero && (after < self.max_deleted || (self.trimmed && after < self.first) || after > self.last)
    }
}

/// Reads a site's stream position with XINFO STREAM (Redis 7 reports trimmed ids).
pub async fn position(
    connection: &mut impl redis::aio::ConnectionLike,
    site: &SiteId,
) -> Result<StreamPosition, StoreError> {
    let reply: Result<Value, redis::RedisError> =
        redis::cmd("XINFO").arg("STREAM").arg(events_key(site)).query_async(connection).await;
    let zero = EntryId(0, 0);
    let value = match reply {
        Ok(value) => value,
        // No stream yet: nothing was ever written.
        Err(error) if error.code() == Some("ERR") && error.to_string().contains("no such key") => {
            return Ok(StreamPosition { last: zero, max_deleted: zero, first: zero, trimmed: false });
        }
        Err(error) => return Err(error.into()),
    };
    let fields: Vec<(String, Value)> = match value {
        Value::Map(pairs) => {
            pairs.into_iter().filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v))).collect()
        }
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => redis::from_redis_value_ref::<String>(k).ok().map(|k| (k, v.clone())),
                _ => None,
            })
            .collect(),
        other => return Err(StoreError::Corrupt(format!("XINFO STREAM: {other:?}"))),
    };
    let id_field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| redis::from_redis_value_ref::<String>(v).ok())
            .and_then(|s| EntryId::parse(&s))
            .unwrap_or(zero)
    };
    let number = |name: &str| {
        fields.iter().find(|(k, _)| k == name).and_then(|(_, v)| redis::from_redis_value_ref::<u64>(v).ok())
    };
    let trimmed = match (number("entries-added"), number("length")) {
        (Some(added), Some(length)) => added > length,
        _ => false,
    };
    Ok(StreamPosition {
        last: id_field("last-generated-id"),
        max_deleted: id_field("max-deleted-entry-id"),
        first: id_field("recorded-first-entry-id"),
        trimmed,
    })
}

/// Parses XRANGE / XREAD entries into events.
pub fn parse_entries(entries: Vec<(String, Vec<(String, String)>)>) -> Vec<StreamEvent> {
    entries
        .into_iter()
        .map(|(id, fields)| {
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
            StreamEvent { id, kind: field("type"), data: field("data") }
        })
        .collect()
}

/// Up to `count` entries after `after` (exclusive).
pub async fn history(
    connection: &mut impl redis::aio::ConnectionLike,
    site: &SiteId,
    after: EntryId,
    count: usize,
) -> Result<Vec<StreamEvent>, StoreError> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(events_key(site))
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(connection)
        .await?;
    Ok(parse_entries(entries))
}

type Feed = broadcast::Sender<Arc<StreamEvent>>;

/// The fan-out hub of one coordinator.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    client: redis::Client,
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
    /// A hub reading from `redis_url`, stopping its readers when `shutdown` fires.
    pub fn new(redis_url: &str, shutdown: Shutdown) -> Result<Self, StoreError> {
        let client = redis::Client::open(redis_url).map_err(|e| StoreError::Corrupt(format!("redis url: {e}")))?;
        Ok(Self {
            inner: Arc::new(HubInner {
                client,
                feeds: Mutex::new(HashMap::new()),
                subscribers: AtomicUsize::new(0),
                shutdown,
            }),
        })
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
        Ok(self.inner.client.get_multiplexed_async_connection_with_config(&reader_config()).await?)
    }

    /// Joins the site's live feed, starting its reader if it has none.
    pub async fn subscribe(&self, site: &SiteId) -> Result<broadcast::Receiver<Arc<StreamEvent>>, StoreError> {
        let mut feeds = self.inner.feeds.lock().await;
        if let Some(feed) = feeds.get(site) {
            return Ok(feed.subscribe());
        }
        let mut connection = self.connection().await?;
        let start = position(&mut connection, site).await?.last;
        let (feed, receiver) = broadcast::channel(FEED_BUFFER_EVENTS);
        feeds.insert(site.clone(), feed.clone());
        tokio::spawn(read_feed(Arc::clone(&self.inner), site.clone(), feed, start, connection));
        Ok(receiver)
    }
}

fn reader_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_millis(READ_BLOCK_MS + 3_000)))
        .set_connection_timeout(Some(Duration::from_millis(crate::store::REDIS_CONNECT_TIMEOUT_MS)))
}

async fn read_feed(
    hub: Arc<HubInner>,
    site: SiteId,
    feed: Feed,
    start: EntryId,
    connection: redis::aio::MultiplexedConnection,
) {
    let mut connection = Some(connection);
    let mut last = start;
    let mut shutdown = hub.shutdown.clone();
    metrics::gauge!("allot_event_feeds").increment(1.0);
    loop {
        if feed.receiver_count() == 0 {
            let mut feeds = hub.feeds.lock().await;
            if feed.receiver_count() == 0 {
                feeds.remove(&site);
                break;
            }
        }
        let mut current = match connection.take() {
            Some(current) => current,
            None => match hub.client.get_multiplexed_async_connection_with_config(&reader_config()).await {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::debug!(%error, %site, "event reader cannot connect; retrying");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(Duration::from_millis(READ_RETRY_MS)) => continue,
                    }
                }
            },
        };
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(READ_COUNT_MAX)
            .arg("BLOCK")
            .arg(READ_BLOCK_MS)
            .arg("STREAMS")
            .arg(events_key(&site))
            .arg(last.to_string());
        let read = command.query_async::<Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>>(&mut current);
        let reply = tokio::select! {
            _ = shutdown.wait() => break,
            reply = read => reply,
        };
        match reply {
            Ok(streams) => {
                for (_, entries) in streams.unwrap_or_default() {
                    for event in parse_entries(entries) {
                        if let Some(id) = EntryId::parse(&event.id) {
                            last = id;
                        }
                        // No receiver right now is fine: the loop checks before the next read.
                        let _ = feed.send(Arc::new(event));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_and_order_like_redis() {
        assert_eq!(EntryId::parse("0"), Some(EntryId(0, 0)));
        assert_eq!(EntryId::parse("1700000000000-5"), Some(EntryId(1_700_000_000_000, 5)));
        assert!(EntryId(9, 0) < EntryId(10, 0), "numeric, not lexicographic");
        assert!(EntryId(10, 1) > EntryId(10, 0));
        assert_eq!(EntryId::parse("yesterday"), None);
        assert_eq!(EntryId::parse("1-"), None);
    }

    #[test]
    fn a_resume_point_before_trimmed_entries_is_lost() {
        let position =
            StreamPosition { last: EntryId(50, 0), max_deleted: EntryId(0, 0), first: EntryId(40, 0), trimmed: true };
        assert!(position.lost_after(EntryId(10, 0)));
        assert!(!position.lost_after(EntryId(40, 0)));
        assert!(!position.lost_after(EntryId(0, 0)), "0 asks for what is retained");
        let untrimmed = StreamPosition { trimmed: false, ..position };
        assert!(!untrimmed.lost_after(EntryId(10, 0)));
        let deleted = StreamPosition { max_deleted: EntryId(45, 0), ..untrimmed };
        assert!(deleted.lost_after(EntryId(44, 0)));
        assert!(untrimmed.lost_after(EntryId(51, 0)), "ahead of the stream");
        assert!(!untrimmed.lost_after(EntryId(50, 0)));
    }
}
