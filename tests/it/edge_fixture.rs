//! Fixtures for the edge tests: the real `allot` binary as a coordinator process (so it can be
//! killed by pid), and the real edge worker in workerd, started through the pinned wrangler with
//! a generated config that points at the prebuilt worker (`cargo xtask edge-build`).

use std::os::unix::process::CommandExt;
use std::sync::{Arc, OnceLock};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

async fn wait_healthy(url: &str, timeout: Duration, what: &str) {
    let http = crate::common::client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not become ready at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An `allot serve` process on a shared Redis.
pub struct CoordinatorProcess {
    child: Option<Child>,
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
        let child = Command::new(allot_binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--redis-url", &redis.url()])
            .env("ALLOT_ADMIN_TOKEN", ADMIN)
            .env("ALLOT_EDGE_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("allot starts");
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&format!("{base}/readyz"), crate::common::START_TIMEOUT, "allot").await;
        Self { child: Some(child), base }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
    }

    /// An admin client for it.
    pub fn admin(&self) -> Api {
        Api { token: Some(ADMIN.to_owned()), ..Api::new(&self.base) }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The edge worker in workerd, through `wrangler dev`, in its own process group.
pub struct TestEdge {
    _permit: Option<OwnedSemaphorePermit>,
    child: Child,
    dir: PathBuf,
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
        let root = workspace();
        let shim = root.join("edge/build/worker/shim.mjs");
        assert!(shim.is_file(), "{} is missing: run `cargo xtask edge-build` (cargo xtask test does)", shim.display());
        let wrangler = root.join("node_modules/.bin/wrangler");
        assert!(wrangler.is_file(), "wrangler is missing: run `npm ci` (cargo xtask test does)");
        let port = free_port();
        let inspector = free_port();
        let dir = std::env::temp_dir().join(format!("allot-test-edge-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("edge dir");
        let config = allot_edge::local::wrangler_config(&shim, coordinators, SECRET, vars);
        let config_path = dir.join("wrangler.toml");
        std::fs::write(&config_path, config).expect("edge config");
        let log = std::fs::File::create(dir.join("wrangler.log")).expect("log");
        let child = Command::new(wrangler)
            .args(["dev", "--config", &config_path.to_string_lossy(), "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--inspector-port", &inspector.to_string()])
            .args(["--persist-to", &dir.join("state").to_string_lossy(), "--log-level", "warn"])
            .current_dir(&dir)
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("wrangler starts");
        let edge = Self { _permit: permit, child, dir, base: format!("http://127.0.0.1:{port}") };
        wait_healthy(&format!("{}/healthz", edge.base), EDGE_START_TIMEOUT, "the edge (see wrangler.log)").await;
        edge
    }

    /// A client for it (no credentials: the edge needs none).
    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        // wrangler and the workerd it started share a process group: stop them together.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
