//! The processes a benchmark measures, from `allot-fixtures`, set up as the benchmarks need
//! them: a private redis-server with the embedded default's persistence (AOF, fsync every
//! second), `allot serve` with the bench's credentials, and the edge worker in workerd.

use std::path::Path;
use std::time::Duration;

use allot_fixtures::coordinator::Output;
use allot_fixtures::{CoordinatorProcess, EdgeOptions, EdgeProcess, Persistence, RedisServer};

/// How long the edge may take to answer /healthz.
const EDGE_START_TIMEOUT: Duration = Duration::from_secs(90);

/// A private redis-server (AOF, fsync every second), up and answering.
pub fn redis() -> RedisServer {
    RedisServer::start(Persistence::EverySecond)
}

/// `allot serve` on `redis_url` with the bench's credentials and `extra` flags, ready.
pub async fn coordinator(binary: &Path, redis_url: &str, extra: &[&str]) -> CoordinatorProcess {
    let mut args = vec!["--redis-url".to_owned(), redis_url.to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let env = [("ALLOT_ADMIN_TOKEN", crate::ADMIN), ("ALLOT_EDGE_SECRET", crate::SECRET)];
    let coordinator = CoordinatorProcess::start(binary, None, &args, &env, Output::Logs);
    coordinator.ready().await;
    coordinator
}

/// The prebuilt worker (edge/build) in front of `coordinators`, healthy.
pub async fn edge(root: &Path, coordinators: &[&str]) -> anyhow::Result<EdgeProcess> {
    let dir = std::env::temp_dir().join(format!("allot-bench-edge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = EdgeOptions {
        root,
        coordinators,
        secret: crate::SECRET,
        vars: &[],
        port: None,
        dir: &dir,
        scratch: true,
        to_terminal: false,
    };
    let edge = EdgeProcess::start(options).map_err(anyhow::Error::msg)?;
    edge.wait_healthy(EDGE_START_TIMEOUT).await.map_err(anyhow::Error::msg)?;
    Ok(edge)
}
