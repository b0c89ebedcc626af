//! Test fixtures: a real redis-server per test on a free port (killed on drop), and the real
//! coordinator router served in-process on a loopback socket, or the real `allot` binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use allot_core::http::AppState;
use allot_core::http::auth::Auth;
use allot_core::shutdown::{self, ShutdownTrigger};
use allot_core::store::{Store, StoreSettings};
use allot_shared::SiteId;
use serde_json::{Value, json};

/// How long a test waits for a process to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

pub use allot_fixtures::free_port;
use allot_fixtures::{Persistence, RedisServer};

/// A private redis-server (the fixtures' plain one), killed when dropped.
pub struct TestRedis(RedisServer);

impl TestRedis {
    /// A redis-server without persistence.
    pub fn start() -> Self {
        Self(RedisServer::start(Persistence::None))
    }

    /// A redis-server whose AOF is fsynced on every write, so a SIGKILL loses nothing that
    /// was acknowledged (the embedded default is everysec; see ARCHITECTURE.md).
    pub fn start_durable() -> Self {
        Self(RedisServer::start(Persistence::Always))
    }
}

impl std::ops::Deref for TestRedis {
    type Target = RedisServer;
    fn deref(&self) -> &RedisServer {
        &self.0
    }
}

impl std::ops::DerefMut for TestRedis {
    fn deref_mut(&mut self) -> &mut RedisServer {
        &mut self.0
    }
}

/// The in-process coordinators' largest reservation batch: `ALLOT_TEST_RESERVE_BATCH_MAX`, or
/// 64, so every concurrency test exercises the coalescing path (the binary, with its default
/// of 1, is what the process tests run); the suite passes with either.
fn settings_batch_max() -> usize {
    std::env::var("ALLOT_TEST_RESERVE_BATCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// The coordinator router served in-process on a loopback port.
pub struct TestCoordinator {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// The store, for audits and direct calls.
    pub store: Store,
    trigger: ShutdownTrigger,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestCoordinator {
    /// A dev-mode coordinator (no credentials) on `redis`.
    pub async fn start(redis: &TestRedis) -> Self {
        Self::start_with(redis, Auth::new(None, None), StoreSettings::default()).await
    }

    /// A coordinator with the given credentials and settings.
    pub async fn start_with(redis: &TestRedis, auth: Auth, settings: StoreSettings) -> Self {
        let target = allot_core::store::connection::RedisTarget::Standalone { url: redis.url() };
        Self::start_on(&target, auth, settings, Default::default()).await
    }

    /// A dev-mode coordinator on any Redis target (standalone or Sentinel), acknowledging
    /// changes as `acks` says, following failovers as `allot serve` does.
    pub async fn start_ha(
        target: &allot_core::store::connection::RedisTarget,
        acks: allot_core::store::ack::AckSettings,
    ) -> Self {
        Self::start_on(target, Auth::new(None, None), StoreSettings::default(), acks).await
    }

    async fn start_on(
        target: &allot_core::store::connection::RedisTarget,
        auth: Auth,
        settings: StoreSettings,
        acks: allot_core::store::ack::AckSettings,
    ) -> Self {
        let (trigger, shutdown) = shutdown::channel();
        let store = Store::open(target, settings).expect("store").acknowledge_with(acks, shutdown.clone());
        store.connector().spawn_follower(shutdown.clone());
        store.load_functions().await.expect("functions load");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let events = allot_core::events::EventHub::new(store.connector().clone(), shutdown.clone());
        let state = AppState {
            store: store.clone(),
            auth,
            metrics: allot_core::metrics::handle(),
            events,
            activity: Default::default(),
            reservations: allot_core::coalesce::Coalescer::start(store.clone(), settings_batch_max()),
        };
        let server = tokio::spawn(allot_core::server::run(listener, state, shutdown));
        Self { base: format!("http://{address}"), store, trigger, server: Some(server) }
    }

    /// Fires the shutdown signal; the returned handle resolves when the server has stopped
    /// (after its in-flight requests).
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<std::io::Result<()>> {
        self.trigger.fire();
        self.server.take().expect("the server runs until shut down once")
    }

    /// Asserts the invariant: every counter's `used` equals the sum of its live reservations.
    pub async fn assert_consistent(&self, site: &str) {
        let audit = self.store.audit(&site_id(site)).await.expect("audit");
        assert!(audit.mismatches.is_empty(), "used differs from live reservations: {:?}", audit.mismatches);
    }
}

impl Drop for TestCoordinator {
    fn drop(&mut self) {
        self.trigger.fire();
    }
}

/// A checked site id.
pub fn site_id(site: &str) -> SiteId {
    SiteId::parse(site).expect("test site id")
}

/// An HTTP client for tests (no connection pool limits beyond the default).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// A response read into status, headers and JSON body (Null when empty).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// JSON body, or Null.
    pub body: Value,
}

impl Answer {
    /// The problem slug, when the body is a problem.
    pub fn slug(&self) -> &str {
        self.body["type"].as_str().and_then(|t| t.rsplit('/').next()).unwrap_or("")
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request and reads the answer.
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    Answer { status, headers, body }
}

/// A small API client over a coordinator's base URL.
#[derive(Clone)]
pub struct Api {
    /// Base URL.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Bearer token to send, if any.
    pub token: Option<String>,
}

impl Api {
    /// A client for `base` without credentials (dev mode).
    pub fn new(base: &str) -> Self {
        Self { base: base.to_owned(), http: client(), token: None }
    }

    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// PUT capacity for counters given as (resource, slot, capacity).
    pub async fn set_capacity(&self, site: &str, counters: &[(&str, &str, u64)]) -> Answer {
        let counters: Vec<Value> =
            counters.iter().map(|(r, s, c)| json!({"resource": r, "slot": s, "capacity": c})).collect();
        self.put_capacity(site, &json!({ "counters": counters })).await
    }

    /// PUT capacity with a raw JSON body.
    pub async fn put_capacity(&self, site: &str, body: &Value) -> Answer {
        send(self.with_auth(self.http.put(format!("{}/v1/sites/{site}/capacity", self.base)).json(body))).await
    }

    /// GET availability with a raw query string.
    pub async fn availability(&self, site: &str, query: &str) -> Answer {
        send(self.with_auth(self.http.get(format!("{}/v1/sites/{site}/availability{query}", self.base)))).await
    }

    /// `used` of one counter, from availability; panics if the read fails or the counter is unknown.
    pub async fn used(&self, site: &str, resource: &str, slot: &str) -> u64 {
        let answer = self.availability(site, "").await;
        assert_eq!(answer.status, 200, "availability of {site}: {:?}", answer.body);
        answer.body["counters"]
            .as_array()
            .and_then(|counters| {
                counters
                    .iter()
                    .find(|c| c["resource"] == resource && c["slot"] == slot)
                    .and_then(|c| c["used"].as_u64())
            })
            .unwrap_or_else(|| panic!("{site} has no counter {resource}@{slot}"))
    }

    /// POST a reservation with an optional idempotency key.
    pub async fn reserve(&self, site: &str, body: &Value, key: Option<&str>) -> Answer {
        let mut request = self.http.post(format!("{}/v1/sites/{site}/reservations", self.base)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        send(self.with_auth(request)).await
    }

    /// GET a reservation.
    pub async fn reservation(&self, site: &str, id: &str) -> Answer {
        send(self.with_auth(self.http.get(format!("{}/v1/sites/{site}/reservations/{id}", self.base)))).await
    }

    /// POST confirm.
    pub async fn confirm(&self, site: &str, id: &str) -> Answer {
        send(self.with_auth(self.http.post(format!("{}/v1/sites/{site}/reservations/{id}/confirm", self.base)))).await
    }

    /// DELETE a reservation.
    pub async fn cancel(&self, site: &str, id: &str) -> Answer {
        send(self.with_auth(self.http.delete(format!("{}/v1/sites/{site}/reservations/{id}", self.base)))).await
    }
}

/// A one-item reservation body.
pub fn one_item(resource: &str, slot: &str, quantity: u64) -> Value {
    json!({"items": [{"resource": resource, "slot": slot, "quantity": quantity}]})
}

/// The built `allot` binary (cargo xtask test builds it before the tests).
pub fn allot_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/it-<hash> -> target/<profile>/allot
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let binary = dir.join("allot");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p allot-core --bin allot` first (cargo xtask test does)",
        binary.display()
    );
    binary
}

/// Reads a site's event stream straight from Redis: (id, type, data).
pub fn events(redis: &TestRedis, site: &str) -> Vec<(String, String, Value)> {
    events_at(&redis.url(), site)
}

/// Reads a site's event stream straight from the Redis at `url`: (id, type, data).
pub fn events_at(url: &str, site: &str) -> Vec<(String, String, Value)> {
    let mut connection = redis::Client::open(url).expect("url").get_connection().expect("redis connection");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(allot_core::store::keys::events(&site_id(site)))
        .arg("-")
        .arg("+")
        .query::<redis::streams::StreamRangeReply>(&mut connection)
        .map(|reply| {
            reply
                .ids
                .into_iter()
                .map(|entry| {
                    let fields = entry
                        .map
                        .iter()
                        .map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap_or_default()))
                        .collect();
                    (entry.id, fields)
                })
                .collect()
        })
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(id, fields)| {
            let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
            let data = serde_json::from_str(&get("data")).unwrap_or(Value::Null);
            (id, get("type"), data)
        })
        .collect()
}
