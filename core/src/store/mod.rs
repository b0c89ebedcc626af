//! The store: every read and state change of Allot, each as ONE Redis script call, so a
//! counter is checked and changed, and its event appended, in one atomic step.
//!
//! Rust never reads a counter and then writes it in a second round trip. This module knows the
//! key layout (all of a site's keys share the hash tag `{site}`) and turns script replies into
//! typed values; it knows nothing of HTTP.

pub mod ack;
pub mod connection;
pub mod functions;
pub mod keys;
mod reply;
pub mod streams;

use allot_shared::{
    Availability, AvailabilityQuery, CapacityRequest, Counter, IdempotencyKey, Item, Reservation, ReservationId,
    ReservationRequest, ReservationStatus, ResourceId, Shortage, SiteId, Slot, ZoneId,
};
use serde::{Deserialize, Serialize};

use self::connection::{Connector, RedisTarget, SharedConnection};
use self::functions::{Function, Library};
use self::keys::{counter_field, split_counter_field};
use self::reply::Reply;

/// Due holds one script call expires at most: bounds the time Redis spends in one call.
pub const EXPIRE_BATCH_MAX: u32 = 256;
/// How long an audit may take. It reads every live reservation of the site in one call, so it
/// runs on a connection of its own with this bound: on the shared connection, its 2 s response
/// bound would cut a large audit. (Redis runs one script at a time: while a long audit runs,
/// every other request waits behind it, and those on the shared connection still time out
/// after 2 s. Audit large sites off-peak.)
pub const AUDIT_TIMEOUT_MS: u64 = 120_000;

/// What the store can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis is down, slow, loading, read-only, fenced or otherwise unable to answer now:
    /// retry later. Nothing was applied, or (when a reply was lost) an idempotent retry finds it.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something this code does not expect: a bug, never user input.
    #[error("unexpected store reply: {0}")]
    Corrupt(String),
    /// The coordinator was configured with something it cannot use (a bad URL, no Sentinel).
    #[error("store configuration: {0}")]
    Config(String),
    /// The change was made on the primary but not confirmed on enough replicas in time (or
    /// the connection broke before the answer): it may or may not survive a failover. For a
    /// reservation, the id it has if it exists.
    #[error("the change could not be confirmed on enough replicas; its outcome is unknown")]
    NotAcknowledged(Option<ReservationId>),
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        use redis::{ErrorKind, ServerErrorKind};
        // Whatever breaks a connection (I/O, timeouts, READONLY, MASTERDOWN, NOREPLICAS,
        // UNBLOCKED, LOADING), plus errors that pass with time on a connection that still works.
        let transient = connection::breaks_connection(&error)
            || matches!(error.kind(), ErrorKind::Server(ServerErrorKind::TryAgain | ServerErrorKind::ClusterDown))
            || error.kind() == ErrorKind::AuthenticationFailed
            // Server errors redis-rs has no kind for: out of memory, a long script running,
            // persistence failing, authentication missing.
            || matches!(error.code(), Some("OOM" | "BUSY" | "MISCONF" | "NOAUTH"));
        if transient { Self::Unavailable(error.to_string()) } else { Self::Corrupt(error.to_string()) }
    }
}

/// Tunables of the store, each with a default in `config`.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `counter_almost_full` fires when used crosses this percentage of capacity (1..=100).
    pub almost_full_percent: u8,
    /// Approximate bound on each site's event stream length (`XADD MAXLEN ~`).
    pub events_retained_max: u64,
    /// How long cancelled and expired reservations stay readable.
    pub finished_retention_seconds: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { almost_full_percent: 90, events_retained_max: 100_000, finished_retention_seconds: 7 * 86_400 }
    }
}

/// The result of a reservation attempt that reached the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Accepted now.
    Placed(Reservation),
    /// The same key and body were accepted before: the reservation as it stands now.
    Replayed(Reservation),
    /// The key was used before with another body.
    KeyReused,
    /// These counters' allow-lists refuse the zone.
    ZoneNotAllowed(Vec<(ResourceId, Slot)>),
    /// Not enough capacity; every short item.
    Insufficient(Vec<Shortage>),
}

/// The result of a confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Confirmed now or before.
    Confirmed(Reservation),
    /// Expired or cancelled: cannot be confirmed.
    NotHeld(Reservation),
    /// No such reservation.
    NotFound,
}

/// The result of an audit: counters whose `used` differs from their live reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Counters checked.
    pub counters: u64,
    /// Live (held or confirmed) reservations summed.
    pub live_reservations: u64,
    /// (counter, stored used, recomputed used) for every difference; empty when consistent.
    pub mismatches: Vec<(String, i64, i64)>,
}

/// The Allot store on one Redis (or one Redis Cluster slot per site).
#[derive(Clone)]
pub struct Store {
    connection: SharedConnection,
    /// The acknowledged write path, when writes wait for replicas.
    acked: Option<self::ack::AckedWriter>,
    library: std::sync::Arc<Library>,
    settings: StoreSettings,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("settings", &self.settings).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct DocPrefix<'a> {
    id: &'a ReservationId,
    site: &'a SiteId,
    items: &'a [Item],
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: &'a Option<ZoneId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: &'a Option<String>,
}

#[derive(Deserialize)]
struct StoredDoc {
    id: ReservationId,
    site: SiteId,
    items: Vec<Item>,
    #[serde(default)]
    zone: Option<ZoneId>,
    #[serde(default)]
    customer: Option<String>,
    created_at: String,
    #[serde(default)]
    expires_at: Option<String>,
}

fn parse_zones(csv: &str) -> Result<Option<Vec<ZoneId>>, StoreError> {
    if csv.is_empty() {
        return Ok(None);
    }
    csv.split(',')
        .filter(|z| !z.is_empty())
        .map(|z| ZoneId::parse(z).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn reservation_from(status: &str, doc: &str) -> Result<Reservation, StoreError> {
    let status = ReservationStatus::parse(status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?;
    let doc: StoredDoc = serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("reservation doc: {e}")))?;
    Ok(Reservation {
        id: doc.id,
        site: doc.site,
        status,
        items: doc.items,
        zone: doc.zone,
        customer: doc.customer,
        created_at: doc.created_at,
        expires_at: doc.expires_at,
    })
}

impl Store {
    /// A store on the standalone Redis at `redis_url`.
    pub fn connect(redis_url: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        Self::open(&RedisTarget::Standalone { url: redis_url.to_owned() }, settings)
    }

    /// A store on `target`. Connects lazily and reconnects by itself (following failovers),
    /// so the coordinator starts (and answers 503) while Redis is still down.
    pub fn open(target: &RedisTarget, settings: StoreSettings) -> Result<Self, StoreError> {
        Ok(Self {
            connection: SharedConnection::new(Connector::new(target)?),
            acked: None,
            library: std::sync::Arc::new(Library::new()),
            settings,
        })
    }

    /// From now on, acknowledge every state change only once `settings.replicas` replicas
    /// have it (no change with 0 replicas). Starts the lanes, which stop with `shutdown`.
    pub fn acknowledge_with(mut self, settings: self::ack::AckSettings, shutdown: crate::shutdown::Shutdown) -> Self {
        if settings.replicas > 0 {
            self.acked = Some(self::ack::AckedWriter::start(self.connector().clone(), settings, shutdown));
        }
        self
    }

    /// Replicas a state change must reach before it is acknowledged.
    pub fn ack_replicas(&self) -> u32 {
        self.acked.as_ref().map_or(0, |acked| acked.settings().replicas)
    }

    /// The store's settings.
    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// The connector: where the primary is, and new connections to it.
    pub fn connector(&self) -> &Connector {
        self.connection.connector()
    }

    /// Pings Redis.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.connection.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// The version of the Functions library this build runs.
    pub fn library_version(&self) -> &str {
        &self.library.version
    }

    /// Loads the Functions library into Redis (`FUNCTION LOAD REPLACE`: idempotent).
    pub async fn load_functions(&self) -> Result<(), StoreError> {
        let _: String =
            self.connection.query(redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(&self.library.code)).await?;
        tracing::info!(version = %self.library.version, "loaded the Functions library");
        Ok(())
    }

    /// The version of the library Redis holds, if any.
    pub async fn loaded_version(&self) -> Result<Option<String>, StoreError> {
        match self.connection.query::<String>(redis::cmd("FCALL").arg(functions::VERSION_FUNCTION).arg(0)).await {
            Ok(version) => Ok(Some(version)),
            Err(StoreError::Corrupt(message)) if is_missing_function(&message) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether the primary answers, holds this build's library (loading it if it is missing
    /// or another version: a Redis restarted without its data, a fresh replica promoted), and
    /// has as many replicas online as acknowledgements wait for.
    pub async fn ready(&self) -> Result<(), StoreError> {
        match self.loaded_version().await? {
            Some(version) if version == self.library.version => {}
            _ => self.load_functions().await?,
        }
        let wanted = self.ack_replicas();
        if wanted > 0 {
            let info: String = self.connection.query(redis::cmd("INFO").arg("replication")).await?;
            let (role, online) = replication_state(&info);
            if role != "master" {
                return Err(StoreError::Unavailable(format!("the server at the primary's address is a {role}")));
            }
            if online < wanted {
                return Err(StoreError::Unavailable(format!(
                    "the primary has {online} replicas online; acknowledgements wait for {wanted}"
                )));
            }
        }
        Ok(())
    }

    /// `FCALL <function> 1 <site's stream> <shared arguments>`; the caller adds its own.
    fn call(&self, function: Function, site: &SiteId) -> redis::Cmd {
        let mut command = redis::cmd("FCALL");
        command
            .arg(function.name())
            .arg(1)
            .arg(keys::events(site))
            .arg(keys::site_prefix(site))
            .arg(self.settings.almost_full_percent)
            .arg(self.settings.events_retained_max)
            .arg(self.settings.finished_retention_seconds);
        command
    }

    /// Runs `attempt`; if Redis lacks the library (it lost its data), loads it and runs
    /// `attempt` once more.
    async fn with_library<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match attempt().await {
            Err(StoreError::Corrupt(message)) if is_missing_function(&message) => {
                tracing::warn!("redis lacks the Functions library; loading it");
                self.load_functions().await?;
                attempt().await
            }
            other => other,
        }
    }

    /// Runs one function call on the shared connection.
    async fn invoke(&self, command: &redis::Cmd) -> Result<Reply, StoreError> {
        Reply::new(self.with_library(|| self.connection.query(command)).await?)
    }

    /// Runs a state change: with acknowledgements on, on a lane with a WAIT after it. Returns
    /// the reply and whether the replicas confirmed it (always true without acknowledgements).
    async fn write(&self, command: redis::Cmd) -> Result<(Reply, bool), StoreError> {
        let Some(acked) = &self.acked else {
            return Ok((self.run(&command).await?, true));
        };
        let (values, acknowledged) = self.with_library(|| acked.call(command.clone())).await?;
        let reply = Reply::new(values)?;
        count_expired(&reply)?;
        Ok((reply, acknowledged))
    }

    async fn run(&self, command: &redis::Cmd) -> Result<Reply, StoreError> {
        let reply = self.invoke(command).await?;
        count_expired(&reply)?;
        Ok(reply)
    }

    /// Sets capacity absolutely for the named counters; answers them as now stored.
    pub async fn set_capacity(&self, site: &SiteId, request: &CapacityRequest) -> Result<CapacityOutcome, StoreError> {
        let mut call = self.call(Function::SetCapacity, site);
        call.arg(allot_shared::limits::COUNTERS_PER_SITE_MAX).arg(EXPIRE_BATCH_MAX);
        for counter in &request.counters {
            let zones = match &counter.zones {
                None => String::new(),
                Some(zones) => {
                    let names: Vec<&str> = zones.iter().map(ZoneId::as_str).collect();
                    format!(",{},", names.join(","))
                }
            };
            call.arg(counter_field(&counter.resource, &counter.slot)).arg(counter.capacity).arg(zones);
        }
        let (reply, acknowledged) = self.write(call).await?;
        match reply.tag()? {
            "ok" => {}
            "toomany" => {
                return Ok(CapacityOutcome::TooManyCounters {
                    existing: reply.int(2)?.unsigned_abs(),
                    new: reply.int(3)?.unsigned_abs(),
                });
            }
            other => return Err(StoreError::Corrupt(format!("set_capacity tag {other}"))),
        }
        let version = reply.stream_id(2)?;
        let useds = reply.ints(3)?;
        if useds.len() != request.counters.len() {
            return Err(StoreError::Corrupt("set_capacity: used count".into()));
        }
        let mut counters: Vec<Counter> = request
            .counters
            .iter()
            .zip(useds)
            .map(|(c, used)| {
                let used = u64::try_from(used).map_err(|_| StoreError::Corrupt(format!("negative used {used}")))?;
                Ok(Counter {
                    resource: c.resource.clone(),
                    slot: c.slot.clone(),
                    capacity: c.capacity,
                    used,
                    remaining: c.capacity.saturating_sub(used),
                    zones: c.zones.clone(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        counters.sort_by(|a, b| (&a.resource, &a.slot).cmp(&(&b.resource, &b.slot)));
        if !acknowledged {
            return Err(StoreError::NotAcknowledged(None));
        }
        Ok(CapacityOutcome::Set(Availability { site: site.clone(), version, counters }))
    }

    /// The site's counters matching `query`, with the version they stand at.
    pub async fn availability(&self, site: &SiteId, query: &AvailabilityQuery) -> Result<Availability, StoreError> {
        let mut call = self.call(Function::Availability, site);
        call.arg(query.resource.as_ref().map_or("", |r| r.as_str()))
            .arg(query.from.as_ref().map_or("", |s| s.as_str()))
            .arg(query.to.as_ref().map_or("", |s| s.as_str()))
            .arg(EXPIRE_BATCH_MAX);
        let reply = self.run(&call).await?;
        let version = reply.stream_id(2)?;
        let mut counters = Vec::with_capacity(reply.len().saturating_sub(3) / 4);
        let mut next = 3;
        while next + 4 <= reply.len() {
            let at = next;
            next += 4;
            let (resource, slot) = split_counter_field(&reply.string(at)?)?;
            if !query.matches(&resource, &slot) {
                continue;
            }
            let capacity = reply.parsed_u64(at + 1)?;
            let used = reply.parsed_u64(at + 2)?;
            let zones = parse_zones(&reply.string(at + 3)?)?;
            counters.push(Counter { resource, slot, capacity, used, remaining: capacity.saturating_sub(used), zones });
        }
        Ok(Availability { site: site.clone(), version, counters })
    }

    /// Places a reservation (or replays the one placed with the same key and body).
    pub async fn reserve(
        &self,
        site: &SiteId,
        request: &ReservationRequest,
        idempotency_key: Option<&IdempotencyKey>,
        id: &ReservationId,
    ) -> Result<ReserveOutcome, StoreError> {
        let mut call = self.call(Function::Reserve, site);
        call.arg(id.as_str())
            .arg(idempotency_key.map_or("", |k| k.as_str()))
            .arg(request.fingerprint())
            .arg(request.hold_seconds.unwrap_or(0))
            .arg(request.zone.as_ref().map_or("", |z| z.as_str()))
            .arg(reservation_doc(site, request, id)?)
            .arg(allot_shared::limits::IDEMPOTENCY_TTL_SECONDS)
            .arg(EXPIRE_BATCH_MAX);
        for item in &request.items {
            call.arg(counter_field(&item.resource, &item.slot)).arg(item.quantity);
        }
        let (reply, acknowledged) = self.write(call).await?;
        let outcome = reserve_outcome(reply.tag()?, || reply.string(2), || reply.string(3))?;
        acknowledged_outcome(outcome, acknowledged)
    }

    /// Places several reservations of one site in one script call, each all or nothing on its
    /// own and in the given order, exactly as the same calls of [`Store::reserve`] one after
    /// the other would. At most [`RESERVE_BATCH_MAX`] at once.
    pub async fn reserve_batch(
        &self,
        site: &SiteId,
        batch: &[BatchedReservation],
    ) -> Result<Vec<Result<ReserveOutcome, StoreError>>, StoreError> {
        assert!(batch.len() <= RESERVE_BATCH_MAX, "the caller bounds the batch");
        let mut call = self.call(Function::ReserveBatch, site);
        call.arg(EXPIRE_BATCH_MAX).arg(allot_shared::limits::IDEMPOTENCY_TTL_SECONDS).arg(batch.len());
        for entry in batch {
            let request = &entry.request;
            call.arg(entry.id.as_str())
                .arg(entry.idempotency_key.as_ref().map_or("", |k| k.as_str()))
                .arg(request.fingerprint())
                .arg(request.hold_seconds.unwrap_or(0))
                .arg(request.zone.as_ref().map_or("", |z| z.as_str()))
                .arg(reservation_doc(site, request, &entry.id)?)
                .arg(request.items.len());
            for item in &request.items {
                call.arg(counter_field(&item.resource, &item.slot)).arg(item.quantity);
            }
        }
        let (reply, acknowledged) = self.write(call).await?;
        if reply.tag()? != "batch" || reply.len() != 2 + 3 * batch.len() {
            return Err(StoreError::Corrupt(format!("batch reply of {} values for {}", reply.len(), batch.len())));
        }
        (0..batch.len())
            .map(|n| {
                let at = 2 + 3 * n;
                let outcome = reserve_outcome(&reply.string(at)?, || reply.string(at + 1), || reply.string(at + 2))?;
                Ok(acknowledged_outcome(outcome, acknowledged))
            })
            .collect()
    }

    /// Confirms a held reservation.
    pub async fn confirm(&self, site: &SiteId, id: &ReservationId) -> Result<ConfirmOutcome, StoreError> {
        let mut call = self.call(Function::Confirm, site);
        call.arg(id.as_str());
        let (reply, acknowledged) = self.write(call).await?;
        Ok(match reply.tag()? {
            "notfound" => ConfirmOutcome::NotFound,
            "ok" if !acknowledged => return Err(StoreError::NotAcknowledged(Some(id.clone()))),
            "ok" => ConfirmOutcome::Confirmed(reservation_from(&reply.string(2)?, &reply.string(3)?)?),
            "notheld" => ConfirmOutcome::NotHeld(reservation_from(&reply.string(2)?, &reply.string(3)?)?),
            other => return Err(StoreError::Corrupt(format!("confirm tag {other}"))),
        })
    }

    /// Cancels a reservation (idempotent); `None` if unknown.
    pub async fn cancel(&self, site: &SiteId, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        self.reservation_function(Function::Cancel, site, id).await
    }

    /// Reads a reservation; `None` if unknown.
    pub async fn reservation(&self, site: &SiteId, id: &ReservationId) -> Result<Option<Reservation>, StoreError> {
        self.reservation_function(Function::ReadReservation, site, id).await
    }

    async fn reservation_function(
        &self,
        function: Function,
        site: &SiteId,
        id: &ReservationId,
    ) -> Result<Option<Reservation>, StoreError> {
        let mut call = self.call(function, site);
        call.arg(id.as_str());
        // A read is not an acknowledgement; a cancel is.
        let (reply, acknowledged) =
            if function == Function::Cancel { self.write(call).await? } else { (self.run(&call).await?, true) };
        match reply.tag()? {
            "notfound" => Ok(None),
            "ok" if !acknowledged => Err(StoreError::NotAcknowledged(Some(id.clone()))),
            "ok" => Ok(Some(reservation_from(&reply.string(2)?, &reply.string(3)?)?)),
            other => Err(StoreError::Corrupt(format!("reservation tag {other}"))),
        }
    }

    /// Expires up to `EXPIRE_BATCH_MAX` due holds of `site`. Returns (expired, holds left).
    pub async fn expire_due(&self, site: &SiteId) -> Result<(u64, u64), StoreError> {
        let mut call = self.call(Function::Expire, site);
        call.arg(EXPIRE_BATCH_MAX);
        let reply = self.invoke(&call).await?;
        Ok((reply.int(1)?.unsigned_abs(), reply.int(2)?.unsigned_abs()))
    }

    /// Recomputes every counter's `used` from the site's live reservations.
    pub async fn audit(&self, site: &SiteId) -> Result<Audit, StoreError> {
        let call = self.call(Function::Audit, site);
        let timeout = std::time::Duration::from_millis(AUDIT_TIMEOUT_MS);
        let (_, connection) = self.connector().open(Some(timeout)).await?;
        let reply = Reply::new(
            self.with_library(|| {
                let (call, mut connection) = (&call, connection.clone());
                async move { call.query_async(&mut connection).await.map_err(StoreError::from) }
            })
            .await?,
        )?;
        let mut mismatches = Vec::new();
        let mut index = 4;
        while index + 3 <= reply.len() {
            mismatches.push((reply.string(index)?, reply.int(index + 1)?, reply.int(index + 2)?));
            index += 3;
        }
        Ok(Audit {
            counters: reply.int(2)?.unsigned_abs(),
            live_reservations: reply.int(3)?.unsigned_abs(),
            mismatches,
        })
    }

    /// Records that `site` has holds, so the sweeper visits it. Called after a hold is placed
    /// (see `sweeper` for why after, not before).
    pub async fn note_site_with_holds(&self, site: &SiteId) -> Result<(), StoreError> {
        let _: i64 = self.connection.query(redis::cmd("SADD").arg(keys::SITES_WITH_HOLDS).arg(site.as_str())).await?;
        Ok(())
    }

    /// The sites the sweeper visits.
    pub async fn sites_with_holds(&self) -> Result<Vec<SiteId>, StoreError> {
        let names: Vec<String> = self.connection.query(redis::cmd("SMEMBERS").arg(keys::SITES_WITH_HOLDS)).await?;
        Ok(names.iter().filter_map(|n| SiteId::parse(n).ok()).collect())
    }

    /// Drops `site` from the sweeper's set once it has no holds, then looks again and puts it
    /// back if a hold arrived meanwhile.
    pub async fn forget_site_without_holds(&self, site: &SiteId) -> Result<(), StoreError> {
        let _: i64 = self.connection.query(redis::cmd("SREM").arg(keys::SITES_WITH_HOLDS).arg(site.as_str())).await?;
        let holds: i64 = self.connection.query(redis::cmd("ZCARD").arg(keys::holds(site))).await?;
        if holds > 0 {
            self.note_site_with_holds(site).await?;
        }
        Ok(())
    }

    /// One step of a SCAN over every site's holds index: (next cursor, the sites found).
    pub async fn scan_sites_with_holds(&self, cursor: u64, count: u32) -> Result<(u64, Vec<SiteId>), StoreError> {
        let (next, found): (u64, Vec<String>) = self
            .connection
            .query(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(keys::HOLDS_PATTERN).arg("COUNT").arg(count))
            .await?;
        Ok((next, found.iter().filter_map(|key| keys::site_of_holds_key(key)).collect()))
    }
}

/// Counts the holds a call expired on its way (value 1 of every reply).
fn count_expired(reply: &Reply) -> Result<(), StoreError> {
    let expired = reply.int(1)?;
    if expired > 0 {
        metrics::counter!("allot_holds_expired_total", "by" => "request").increment(expired.unsigned_abs());
    }
    Ok(())
}

/// The role and the replicas online, from `INFO replication`.
fn replication_state(info: &str) -> (String, u32) {
    let mut role = String::from("unknown");
    let mut online = 0;
    for line in info.lines() {
        if let Some(value) = line.strip_prefix("role:") {
            role = value.trim().to_owned();
        } else if line.starts_with("slave") && line.contains("state=online") {
            online += 1;
        }
    }
    (role, online)
}

/// Whether a Redis error message says the library (or one of its functions) is not loaded.
fn is_missing_function(message: &str) -> bool {
    message.contains("Function not found") || message.contains("function not found")
}

/// The result of a capacity PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacityOutcome {
    /// Stored; the named counters as they now stand.
    Set(Availability),
    /// The site would hold more than `COUNTERS_PER_SITE_MAX` counters; nothing was changed.
    TooManyCounters {
        /// Counters the site has.
        existing: u64,
        /// Counters the request would add.
        new: u64,
    },
}

/// Reservations one script call may place: bounds the script's run time (Redis serves nothing
/// else meanwhile) and its argument count (64 × (7 + 2 × 32) values at most).
pub const RESERVE_BATCH_MAX: usize = 64;

/// One reservation of a batch.
#[derive(Debug, Clone)]
pub struct BatchedReservation {
    /// The checked request.
    pub request: ReservationRequest,
    /// Its idempotency key, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The id it gets if placed.
    pub id: ReservationId,
}

/// The stored document of a reservation without status and timestamps (the script adds them).
fn reservation_doc(site: &SiteId, request: &ReservationRequest, id: &ReservationId) -> Result<String, StoreError> {
    serde_json::to_string(&DocPrefix {
        id,
        site,
        items: &request.items,
        zone: &request.zone,
        customer: &request.customer,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A placed or replayed reservation that the replicas did not confirm is an unknown outcome;
/// a refusal changed nothing and stands.
fn acknowledged_outcome(outcome: ReserveOutcome, acknowledged: bool) -> Result<ReserveOutcome, StoreError> {
    match outcome {
        ReserveOutcome::Placed(reservation) | ReserveOutcome::Replayed(reservation) if !acknowledged => {
            Err(StoreError::NotAcknowledged(Some(reservation.id)))
        }
        outcome => Ok(outcome),
    }
}

/// A reserve script's answer for one reservation: its tag and up to two values.
fn reserve_outcome(
    tag: &str,
    first: impl Fn() -> Result<String, StoreError>,
    second: impl Fn() -> Result<String, StoreError>,
) -> Result<ReserveOutcome, StoreError> {
    Ok(match tag {
        "placed" => ReserveOutcome::Placed(reservation_from(&first()?, &second()?)?),
        "replay" => ReserveOutcome::Replayed(reservation_from(&first()?, &second()?)?),
        "reused" => ReserveOutcome::KeyReused,
        "zone" => {
            #[derive(Deserialize)]
            struct Refused {
                resource: ResourceId,
                slot: Slot,
            }
            let refused: Vec<Refused> =
                serde_json::from_str(&first()?).map_err(|e| StoreError::Corrupt(format!("zone refusal: {e}")))?;
            ReserveOutcome::ZoneNotAllowed(refused.into_iter().map(|r| (r.resource, r.slot)).collect())
        }
        "short" => ReserveOutcome::Insufficient(
            serde_json::from_str(&first()?).map_err(|e| StoreError::Corrupt(format!("shortages: {e}")))?,
        ),
        other => return Err(StoreError::Corrupt(format!("reserve tag {other}"))),
    })
}
