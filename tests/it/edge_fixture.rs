//! Fixtures for the edge tests: the real `allot` binary as a coordinator process (so it can be
//! killed by pid), and the real edge worker in workerd, both from `allot-fixtures`, with the
//! test credentials and helpers.

use std::sync::{Arc, OnceLock};

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use allot_fixtures::coordinator::Output;
use allot_fixtures::{EdgeOptions, EdgeProcess};

use crate::common::{Api, TestRedis, allot_binary, free_port};

/// The admin token the test coordinators use.
pub const ADMIN: &str = "edge-tests-admin-token";
/// The edge secret shared by test coordinators and edges.
pub const SECRET: &str = "edge-tests-secret";
/// workerd can take a while to start on a busy machine.
const EDGE_START_TIMEOUT: Duration = Duration::from_secs(180);
/// Edges (wrangler + workerd) running at once across the test binary: more than this on two
/// cores only makes every one of them slow to start.
const EDGES_AT_ONCE: usize = 3;

fn edge_permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(PERMITS.get_or_init(|| Arc::new(Semaphore::new(EDGES_AT_ONCE))))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// An `allot serve` process on a shared Redis.
pub struct CoordinatorProcess {
    process: allot_fixtures::CoordinatorProcess,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl CoordinatorProcess {
    /// Starts `allot serve` against `redis`, with the test credentials.
    pub async fn start(redis: &TestRedis) -> Self {
        Self::start_on(redis, free_port()).await
    }

    /// Starts `allot serve` on a given port (to restart one where edges expect it).
    pub async fn start_on(redis: &TestRedis, port: u16) -> Self {
        let args = ["--redis-url".to_owned(), redis.url()];
        let env = [("ALLOT_ADMIN_TOKEN", ADMIN), ("ALLOT_EDGE_SECRET", SECRET), ("RUST_LOG", "warn")];
        let process =
            allot_fixtures::CoordinatorProcess::start(&allot_binary(), Some(port), &args, &env, Output::Discard);
        process.ready().await;
        let base = process.base.clone();
        Self { process, base }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// An admin client for it.
    pub fn admin(&self) -> Api {
        Api { token: Some(ADMIN.to_owned()), ..Api::new(&self.base) }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Sum of `allot_http_requests_total` for /v1 routes: how many API requests reached it.
    pub async fn api_requests(&self) -> u64 {
        self.requests_matching(|labels| labels.contains("route=\"/v1/")).await
    }

    /// How many reservation attempts reached it (the edge's live views also make GET requests).
    pub async fn reservation_posts(&self) -> u64 {
        self.requests_matching(|labels| {
            labels.contains("route=\"/v1/sites/{site}/reservations\"") && labels.contains("method=\"POST\"")
        })
        .await
    }

    async fn requests_matching(&self, matches: impl Fn(&str) -> bool) -> u64 {
        let text = crate::common::client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with("allot_http_requests_total{") && matches(l))
            .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()))
            .map(|n| n as u64)
            .sum()
    }
}

/// The edge worker in workerd (the fixtures' edge), holding one of the [`EDGES_AT_ONCE`] places.
pub struct TestEdge {
    // Declared first, dropped first: the edge stops before its place is given back.
    _edge: EdgeProcess,
    _permit: Option<OwnedSemaphorePermit>,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl TestEdge {
    /// Starts an edge in front of `coordinators` (base URLs), with optional extra vars.
    pub async fn start(coordinators: &[&str], vars: &[(&str, &str)]) -> Self {
        let permit = edge_permits().acquire_owned().await.expect("permits are never closed");
        Self::start_with_permit(coordinators, vars, Some(permit)).await
    }

    /// Starts two edges, taking both places at once (so two such tests cannot wait on each other).
    pub async fn start_two(
        coordinators: &[&str],
        first_vars: &[(&str, &str)],
        second_vars: &[(&str, &str)],
    ) -> (Self, Self) {
        let mut permits = edge_permits().acquire_many_owned(2).await.expect("permits are never closed");
        let second_permit = permits.split(1);
        let first = Self::start_with_permit(coordinators, first_vars, Some(permits)).await;
        let second = Self::start_with_permit(coordinators, second_vars, second_permit).await;
        (first, second)
    }

    async fn start_with_permit(
        coordinators: &[&str],
        vars: &[(&str, &str)],
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("allot-test-edge-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = workspace();
        let options = EdgeOptions {
            root: &root,
            coordinators,
            secret: SECRET,
            vars,
            port: Some(port),
            dir: &dir,
            scratch: true,
            to_terminal: false,
        };
        let edge = EdgeProcess::start(options).unwrap_or_else(|error| panic!("{error} (cargo xtask test builds it)"));
        edge.wait_healthy(EDGE_START_TIMEOUT).await.unwrap_or_else(|error| panic!("{error}"));
        let base = edge.base.clone();
        Self { _edge: edge, _permit: permit, base }
    }

    /// A client for it (no credentials: the edge needs none).
    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }
}
