//! The embedded Redis: with no `--redis-url`, `allot serve` runs a private `redis-server` on a
//! free loopback port with its append-only file under the data directory, restarts it if it
//! dies, and shuts it down (flushing the AOF) when the coordinator stops.
//!
//! It never touches a Redis it did not start, except an orphan of an earlier `allot` on the same
//! data directory (found through the pidfile), which it stops before starting its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::shutdown::Shutdown;

/// How long a starting redis-server may take to answer PING (it may be loading a large AOF).
pub const REDIS_START_TIMEOUT_MS: u64 = 60_000;
/// How long a stopping redis-server may take before it is killed.
pub const REDIS_STOP_TIMEOUT_MS: u64 = 10_000;
/// First wait before restarting a redis-server that died; doubles up to the maximum.
pub const RESTART_DELAY_MIN_MS: u64 = 100;
/// Longest wait between restarts.
pub const RESTART_DELAY_MAX_MS: u64 = 5_000;

/// A supervised redis-server.
#[derive(Debug)]
pub struct EmbeddedRedis {
    /// The URL the store connects to.
    pub url: String,
    supervisor: tokio::task::JoinHandle<()>,
}

impl EmbeddedRedis {
    /// Starts redis-server with its data under `data_dir` and supervises it until `shutdown`.
    pub async fn start(data_dir: &Path, shutdown: Shutdown) -> anyhow::Result<Self> {
        check_installed().await?;
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize().with_context(|| format!("resolving {}", data_dir.display()))?;
        stop_orphan(&data_dir).await?;
        let port = free_loopback_port()?;
        let url = format!("redis://127.0.0.1:{port}/");
        let child = spawn(&data_dir, port)?;
        let child = wait_ready(child, &url).await?;
        tracing::info!(%url, data_dir = %data_dir.display(), "embedded redis-server is up");
        let supervisor = tokio::spawn(supervise(child, data_dir, port, url.clone(), shutdown));
        Ok(Self { url, supervisor })
    }

    /// Waits until the supervisor has stopped redis-server (after shutdown fired).
    pub async fn stopped(self) {
        let _ = self.supervisor.await;
    }
}

async fn check_installed() -> anyhow::Result<()> {
    match Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "redis-server is not installed: install it with `sudo apt-get install -y redis-server`, or pass --redis-url"
        ),
        Err(error) => Err(error).context("running redis-server --version"),
    }
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn pidfile(data_dir: &Path) -> PathBuf {
    data_dir.join("redis.pid")
}

fn spawn(data_dir: &Path, port: u16) -> anyhow::Result<Child> {
    let dir = data_dir.to_string_lossy().into_owned();
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--protected-mode", "yes"])
        .args(["--dir", &dir, "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
        .args(["--pidfile", &pidfile(data_dir).to_string_lossy(), "--logfile", "redis.log", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server")
}

async fn wait_ready(mut child: Child, url: &str) -> anyhow::Result<Child> {
    let client = redis::Client::open(url)?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REDIS_START_TIMEOUT_MS);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("redis-server exited during start-up ({status}); see redis.log in the data directory");
        }
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
            if pong.is_ok() {
                return Ok(child);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("redis-server did not answer within {REDIS_START_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn supervise(mut child: Child, data_dir: PathBuf, port: u16, url: String, mut shutdown: Shutdown) {
    let mut delay_ms = RESTART_DELAY_MIN_MS;
    loop {
        tokio::select! {
            _ = shutdown.wait() => {
                stop(child, &url).await;
                return;
            }
            status = child.wait() => {
                tracing::error!(?status, "embedded redis-server died; restarting it");
                metrics::counter!("allot_redis_restarts_total").increment(1);
            }
        }
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
            }
            delay_ms = (delay_ms * 2).min(RESTART_DELAY_MAX_MS);
            match spawn(&data_dir, port) {
                Ok(next) => match wait_ready(next, &url).await {
                    Ok(ready) => {
                        tracing::info!(%url, "embedded redis-server restarted");
                        child = ready;
                        delay_ms = RESTART_DELAY_MIN_MS;
                        break;
                    }
                    Err(error) => tracing::error!(%error, "restarted redis-server is not ready"),
                },
                Err(error) => tracing::error!(%error, "cannot restart redis-server"),
            }
        }
    }
}

/// Asks redis-server to shut down (it fsyncs the AOF first), then kills it if it lingers.
async fn stop(mut child: Child, url: &str) {
    if let Ok(client) = redis::Client::open(url)
        && let Ok(mut connection) = client.get_multiplexed_async_connection().await
    {
        // The server closes the connection instead of answering.
        let _: Result<(), _> = redis::cmd("SHUTDOWN").query_async(&mut connection).await;
    }
    match tokio::time::timeout(Duration::from_millis(REDIS_STOP_TIMEOUT_MS), child.wait()).await {
        Ok(_) => tracing::info!("embedded redis-server stopped"),
        Err(_) => {
            tracing::warn!("embedded redis-server did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Stops a redis-server left running on `data_dir` by an `allot` that was killed, and refuses
/// to start if a live `allot` still runs one there.
async fn stop_orphan(data_dir: &Path) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(pidfile(data_dir)) else { return Ok(()) };
    let Ok(pid) = text.trim().parse::<u32>() else { return Ok(()) };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    if comm.trim() != "redis-server" {
        return Ok(());
    }
    let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
    let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).unwrap_or("1");
    let parent_comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if parent_comm.trim() == "allot" {
        bail!(
            "data directory {} is in use by another allot (pid {parent}); stop it or use --data-dir",
            data_dir.display()
        );
    }
    tracing::warn!(pid, "stopping an orphaned redis-server left on this data directory");
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REDIS_STOP_TIMEOUT_MS);
    while proc_dir.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if proc_dir.exists() {
        bail!("orphaned redis-server (pid {pid}) on {} did not stop", data_dir.display());
    }
    Ok(())
}
