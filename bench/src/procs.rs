//! The processes a benchmark measures, started on loopback and stopped on drop: a private
//! redis-server, `allot serve`, and the edge worker in workerd through the pinned wrangler.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a process may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("allot-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

async fn wait_ok(url: &str, what: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(response) = http.get(url).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer 200 at {url} within {} s", START_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM to a process (or, with a negative id, a process group) and waits for `child`.
fn terminate(child: &mut Child, target: &str) {
    let _ = Command::new("kill").args(["-TERM", "--", target]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-KILL", "--", target]).status();
    let _ = child.wait();
}

/// A private redis-server with the embedded default's persistence (AOF, fsync every second).
#[derive(Debug)]
pub struct Redis {
    child: Child,
    dir: PathBuf,
    /// `redis://127.0.0.1:port/`.
    pub url: String,
}

impl Redis {
    /// Starts it and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = scratch_dir("redis")?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--dir", &dir.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install -y redis-server)")?;
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis_client(&url)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while client.ping().await.is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not answer");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { child, dir, url })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn redis_client(url: &str) -> anyhow::Result<allot_core::store::Store> {
    Ok(allot_core::store::Store::connect(url, Default::default())?)
}

impl Drop for Redis {
    fn drop(&mut self) {
        let id = self.child.id().to_string();
        terminate(&mut self.child, &id);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `allot serve` on a given Redis, with admin and edge credentials.
#[derive(Debug)]
pub struct Coordinator {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl Coordinator {
    /// Starts the binary with `extra` flags and waits for /readyz.
    pub async fn start(
        binary: &Path,
        redis_url: &str,
        admin_token: &str,
        edge_secret: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--redis-url", redis_url])
            .args(extra)
            .env("ALLOT_ADMIN_TOKEN", admin_token)
            .env("ALLOT_EDGE_SECRET", edge_secret)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        wait_ok(&format!("{base}/readyz"), "allot serve").await?;
        Ok(Self { child, base })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let id = self.child.id().to_string();
        terminate(&mut self.child, &id);
    }
}

/// The edge worker in workerd, through `wrangler dev`, in its own process group.
#[derive(Debug)]
pub struct Edge {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl Edge {
    /// Starts the prebuilt worker (edge/build) in front of `coordinators`.
    pub async fn start(root: &Path, coordinators: &[&str], edge_secret: &str) -> anyhow::Result<Self> {
        let shim = root.join("edge/build/worker/shim.mjs");
        if !shim.is_file() {
            bail!("{} is missing: run `cargo xtask edge-build`", shim.display());
        }
        let port = free_port()?;
        let dir = scratch_dir("edge")?;
        let config = allot_edge::local::wrangler_config(&shim, coordinators, edge_secret, &[]);
        std::fs::write(dir.join("wrangler.toml"), config)?;
        let log = std::fs::File::create(dir.join("wrangler.log"))?;
        let child = Command::new(root.join("node_modules/.bin/wrangler"))
            .args(["dev", "--config", &dir.join("wrangler.toml").to_string_lossy(), "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--inspector-port", &free_port()?.to_string()])
            .args(["--persist-to", &dir.join("state").to_string_lossy(), "--log-level", "warn"])
            .current_dir(&dir)
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting wrangler dev (npm ci)")?;
        let base = format!("http://127.0.0.1:{port}");
        let edge = Self { child, dir, base };
        wait_ok(&format!("{}/healthz", edge.base), "the edge").await?;
        Ok(edge)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        terminate(&mut self.child, &group);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
