//! Every connection Allot opens to Redis: where the primary is (a fixed address, or the one the
//! Sentinels name, verified with `ROLE`), the shared multiplexed connection the functions run
//! on, and the dedicated connections of blocking stream reads and acknowledged writes.
//!
//! A failover changes the primary under us, and redis-rs does not follow it (REDIS-HA.md), so
//! this module does: a connection that fails in a way that says "this is not (or no longer)
//! the primary" is dropped, and the next use resolves the primary again. Each resolution that
//! names another primary than the last one bumps the *epoch*; whoever cached a connection or
//! a position read from the old primary (the event feeds) watches the epoch and starts over.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};
use tokio::sync::watch;

use super::StoreError;
use crate::shutdown::Shutdown;

/// How long one Redis command may take before the request fails with 503.
pub const REDIS_RESPONSE_TIMEOUT_MS: u64 = 2_000;
/// How long connecting to Redis may take.
pub const REDIS_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// After a failed attempt to connect, requests fail at once for this long instead of each
/// trying again (fail fast while Redis is down; a failover is followed within this).
pub const RECONNECT_PAUSE_MS: u64 = 100;
/// How long one Sentinel may take to name the primary, and the named primary to answer ROLE.
pub const SENTINEL_TIMEOUT_MS: u64 = 500;
/// Sentinels one coordinator may be given.
pub const SENTINELS_MAX: usize = 16;
/// How often the primary is resolved again even when nothing failed, so a demotion that sent
/// no `+switch-master` (or one we missed) is still followed.
pub const PRIMARY_CHECK_INTERVAL_MS: u64 = 1_000;

/// Where the Redis primary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis at a fixed URL (`redis://host:port/db`).
    Standalone {
        /// Its URL.
        url: String,
    },
    /// The primary that Sentinel names for `master`.
    Sentinel {
        /// Sentinel addresses, `host:port`.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master: String,
    },
}

/// Resolves the primary and opens connections to it. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<ConnectorInner>,
}

struct ConnectorInner {
    source: Source,
    /// The address the last resolution named (`host:port`).
    primary: Mutex<Option<String>>,
    /// Bumped whenever a resolution names another primary than the previous one (while
    /// `primary` is locked, so an address and its epoch always go together).
    epoch: watch::Sender<u64>,
}

enum Source {
    Standalone(redis::Client),
    Sentinel { sentinels: Vec<redis::Client>, master: String },
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("primary", &self.primary()).field("epoch", &self.epoch()).finish()
    }
}

fn config_error(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("{what}: {error}"))
}

fn client_config(response_timeout: Option<Duration>) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_response_timeout(response_timeout)
        .set_connection_timeout(Some(Duration::from_millis(REDIS_CONNECT_TIMEOUT_MS)))
}

/// Whether `error` means the connection it came on should not be used again: it is broken, or
/// the server on it is not (or no longer) a writable primary.
pub fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "NOREPLICAS" | "UNBLOCKED" | "LOADING"))
}

impl Connector {
    /// A connector for `target`. Connects lazily, so the coordinator starts (and answers 503)
    /// while Redis is still down.
    pub fn new(target: &RedisTarget) -> Result<Self, StoreError> {
        let source = match target {
            RedisTarget::Standalone { url } => {
                Source::Standalone(redis::Client::open(url.as_str()).map_err(|e| config_error("redis url", e))?)
            }
            RedisTarget::Sentinel { sentinels, master } => {
                if sentinels.is_empty() || sentinels.len() > SENTINELS_MAX {
                    return Err(StoreError::Config(format!("give 1..={SENTINELS_MAX} sentinels")));
                }
                if master.is_empty() {
                    return Err(StoreError::Config("the sentinel master name is empty".into()));
                }
                let sentinels = sentinels
                    .iter()
                    .map(|address| {
                        redis::Client::open(format!("redis://{address}/"))
                            .map_err(|e| config_error(&format!("sentinel {address}"), e))
                    })
                    .collect::<Result<_, _>>()?;
                Source::Sentinel { sentinels, master: master.clone() }
            }
        };
        let primary = match &source {
            Source::Standalone(client) => Some(address_of(client)),
            Source::Sentinel { .. } => None,
        };
        Ok(Self {
            inner: Arc::new(ConnectorInner { source, primary: Mutex::new(primary), epoch: watch::Sender::new(0) }),
        })
    }

    /// Whether the primary is found through Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.inner.source, Source::Sentinel { .. })
    }

    /// The primary's address as last resolved (`host:port`), if any resolution succeeded.
    pub fn primary(&self) -> Option<String> {
        self.inner.primary.lock().map(|p| p.clone()).unwrap_or(None)
    }

    /// The current epoch: it changes whenever the primary does.
    pub fn epoch(&self) -> u64 {
        *self.inner.epoch.borrow()
    }

    /// Watches the epoch.
    pub fn watch_epoch(&self) -> watch::Receiver<u64> {
        self.inner.epoch.subscribe()
    }

    /// A client for the primary as it stands now, with the epoch of that primary.
    async fn primary_client(&self) -> Result<(u64, redis::Client), StoreError> {
        match &self.inner.source {
            Source::Standalone(client) => Ok((self.epoch(), client.clone())),
            Source::Sentinel { sentinels, master } => {
                let (address, client) = resolve(sentinels, master).await?;
                Ok((self.note_primary(&address), client))
            }
        }
    }

    /// Records the primary a resolution named; returns its epoch, bumped if it moved.
    fn note_primary(&self, address: &str) -> u64 {
        let Ok(mut primary) = self.inner.primary.lock() else { return self.epoch() };
        if let Some(old) = primary.as_deref().filter(|old| *old != address) {
            self.inner.epoch.send_modify(|epoch| *epoch += 1);
            metrics::counter!("allot_redis_failovers_followed_total").increment(1);
            metrics::gauge!("allot_redis_primary", "address" => old.to_owned()).set(0.0);
            tracing::warn!(
                primary = address,
                previous = old,
                "the Redis primary changed; reconnecting everything to it"
            );
        }
        // 1 on the address now followed, 0 on the ones followed before.
        metrics::gauge!("allot_redis_primary", "address" => address.to_owned()).set(1.0);
        *primary = Some(address.to_owned());
        let epoch = self.epoch();
        metrics::gauge!("allot_redis_primary_epoch").set(epoch as f64);
        epoch
    }

    /// Resolves the primary again now (after a failure that suggests a failover, or on a
    /// `+switch-master`); bumps the epoch if it moved. Standalone: nothing to do.
    pub async fn recheck(&self) -> Result<(), StoreError> {
        if self.is_sentinel() {
            self.primary_client().await?;
        }
        Ok(())
    }

    /// A new multiplexed connection to the primary, with the epoch it was opened in.
    /// `response_timeout` bounds each command on it (`None` for blocking reads that bound
    /// themselves).
    pub async fn open(&self, response_timeout: Option<Duration>) -> Result<(u64, MultiplexedConnection), StoreError> {
        // The epoch of the primary this connection goes to, not the epoch at the end: another
        // resolution may have moved on meanwhile, and then this connection is already stale.
        let (epoch, client) = self.primary_client().await?;
        let connection = client.get_multiplexed_async_connection_with_config(&client_config(response_timeout)).await?;
        Ok((epoch, connection))
    }

    /// Follows the Sentinels until `shutdown`: re-resolves on every `+switch-master` they
    /// publish for our master and every [`PRIMARY_CHECK_INTERVAL_MS`]. Standalone: returns.
    pub fn spawn_follower(&self, shutdown: Shutdown) {
        let Source::Sentinel { sentinels, master } = &self.inner.source else { return };
        for sentinel in sentinels {
            tokio::spawn(listen_switch_master(self.clone(), sentinel.clone(), master.clone(), shutdown.clone()));
        }
        let connector = self.clone();
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(PRIMARY_CHECK_INTERVAL_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => {
                        if let Err(error) = connector.recheck().await {
                            tracing::debug!(%error, "periodic primary check failed");
                        }
                    }
                }
            }
        });
    }
}

fn address_of(client: &redis::Client) -> String {
    match &client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => format!("{other:?}"),
    }
}

/// Asks every Sentinel at once which address is the master's, then takes the address most of
/// them name that answers `ROLE` as master. (redis-rs's own resolver asks in order without a
/// timeout, so one frozen Sentinel would stall every reconnection.)
async fn resolve(sentinels: &[redis::Client], master: &str) -> Result<(String, redis::Client), StoreError> {
    let timeout = Duration::from_millis(SENTINEL_TIMEOUT_MS);
    let asks = sentinels.iter().map(|sentinel| async move {
        let ask = async {
            let mut connection =
                sentinel.get_multiplexed_async_connection_with_config(&client_config(Some(timeout))).await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async::<Option<(String, u16)>>(&mut connection)
                .await
        };
        tokio::time::timeout(timeout, ask).await.ok().and_then(Result::ok).flatten()
    });
    let named: Vec<(String, u16)> = futures_util::future::join_all(asks).await.into_iter().flatten().collect();
    let mut votes: Vec<((String, u16), usize)> = Vec::new();
    for address in named {
        match votes.iter_mut().find(|(a, _)| *a == address) {
            Some((_, count)) => *count += 1,
            None => votes.push((address, 1)),
        }
    }
    if votes.is_empty() {
        return Err(StoreError::Unavailable(format!("no sentinel names a primary for {master:?}")));
    }
    votes.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for ((host, port), _) in votes {
        let address = format!("{host}:{port}");
        let client = redis::Client::open(format!("redis://{address}/")).map_err(|e| config_error("primary", e))?;
        let role = async {
            let mut connection =
                client.get_multiplexed_async_connection_with_config(&client_config(Some(timeout))).await?;
            redis::cmd("ROLE").query_async::<Value>(&mut connection).await
        };
        if let Ok(Ok(Value::Array(parts))) = tokio::time::timeout(timeout, role).await
            && matches!(parts.first(), Some(Value::BulkString(role)) if role == b"master")
        {
            return Ok((address, client));
        }
    }
    Err(StoreError::Unavailable(format!("no address the sentinels name for {master:?} answers as primary")))
}

/// One Sentinel's `+switch-master` messages for `master`, until shutdown; reconnects with a
/// pause when the Sentinel goes away.
async fn listen_switch_master(connector: Connector, sentinel: redis::Client, master: String, mut shutdown: Shutdown) {
    loop {
        let listened = async {
            let mut pubsub = sentinel.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                // "<master name> <old ip> <old port> <new ip> <new port>"
                let payload: String = message.get_payload().unwrap_or_default();
                if payload.split_whitespace().next() == Some(master.as_str()) {
                    tracing::info!(%payload, "sentinel announced a new primary");
                    if let Err(error) = connector.recheck().await {
                        tracing::warn!(%error, "could not resolve the new primary yet");
                    }
                }
            }
            Ok::<(), RedisError>(())
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            result = listened => {
                if let Err(error) = result {
                    tracing::debug!(%error, "sentinel subscription failed; retrying");
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_millis(PRIMARY_CHECK_INTERVAL_MS)) => {}
        }
    }
}

/// The shared multiplexed connection to the primary that functions and short commands run on.
/// It opens itself on first use, and drops itself after an error that breaks it or says the
/// server is no longer the primary, so the next use follows a failover. Cheap to clone.
#[derive(Clone)]
pub struct SharedConnection {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    connector: Connector,
    /// The open connection: (its generation, the epoch it was opened in, the connection).
    current: RwLock<Option<(u64, u64, MultiplexedConnection)>>,
    /// Held while (re)connecting, with the time of the last failed attempt.
    opening: tokio::sync::Mutex<Option<Instant>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConnection").field("connector", &self.inner.connector).finish_non_exhaustive()
    }
}

/// A connection taken from [`SharedConnection`], with the generation to report failures by.
#[derive(Debug)]
struct Lease {
    generation: u64,
    connection: MultiplexedConnection,
}

impl SharedConnection {
    /// The shared connection of `connector` (not opened yet).
    pub fn new(connector: Connector) -> Self {
        Self {
            inner: Arc::new(SharedInner {
                connector,
                current: RwLock::new(None),
                opening: tokio::sync::Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// The connector it opens through.
    pub fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    fn cached(&self) -> Option<Lease> {
        let epoch = self.inner.connector.epoch();
        let current = self.inner.current.read().ok()?;
        match &*current {
            Some((generation, opened_in, connection)) if *opened_in == epoch => {
                Some(Lease { generation: *generation, connection: connection.clone() })
            }
            _ => None,
        }
    }

    /// The open connection, opening one if there is none (one opener at a time; while Redis
    /// is unreachable, callers fail fast for [`RECONNECT_PAUSE_MS`] after each attempt).
    async fn get(&self) -> Result<Lease, StoreError> {
        if let Some(lease) = self.cached() {
            return Ok(lease);
        }
        let mut opening = self.inner.opening.lock().await;
        if let Some(lease) = self.cached() {
            return Ok(lease);
        }
        if let Some(failed_at) = *opening
            && failed_at.elapsed() < Duration::from_millis(RECONNECT_PAUSE_MS)
        {
            return Err(StoreError::Unavailable("redis is unreachable; retrying shortly".into()));
        }
        match self.inner.connector.open(Some(Duration::from_millis(REDIS_RESPONSE_TIMEOUT_MS))).await {
            Ok((epoch, connection)) => {
                *opening = None;
                let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
                if let Ok(mut current) = self.inner.current.write() {
                    *current = Some((generation, epoch, connection.clone()));
                }
                Ok(Lease { generation, connection })
            }
            Err(error) => {
                *opening = Some(Instant::now());
                Err(error)
            }
        }
    }

    /// Reports that `error` came on `lease`: drops the connection if the error breaks it, so
    /// the next [`SharedConnection::get`] resolves the primary and opens a new one.
    fn failed(&self, lease: &Lease, error: &RedisError) {
        if !breaks_connection(error) {
            return;
        }
        if let Ok(mut current) = self.inner.current.write()
            && current.as_ref().is_some_and(|(generation, _, _)| *generation == lease.generation)
        {
            *current = None;
        }
    }

    /// Runs one command on the shared connection.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut lease = self.get().await?;
        match command.query_async(&mut lease.connection).await {
            Ok(value) => Ok(value),
            Err(error) => {
                self.failed(&lease, &error);
                Err(error.into())
            }
        }
    }
}
