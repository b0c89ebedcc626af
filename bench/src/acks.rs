//! `--only acks`: one-item reservations over HTTP with acknowledgements after 0, 1 and 2
//! replicas, with group commit (`--ack-batch-max 64`) and without (1: one WAIT per call), with
//! the default 4 lanes and (once) 2, on a
//! primary with two replicas and three Sentinels started from the shipped `docs/redis/`
//! configuration. Each run is audited like every other: used equals the live reservations,
//! which number the acknowledged ones.

use std::path::Path;

use allot_core::store::Store;
use allot_core::store::connection::RedisTarget;
use allot_fixtures::coordinator::Output;
use allot_fixtures::{CoordinatorProcess, HaStack};
use anyhow::bail;

use crate::load::{self, Bounds, Measured};
use crate::{ADMIN, SECRET, reserve_over_http, site, workload};

/// The runs: name, `--ack-replicas`, `--ack-batch-max`, `--ack-lanes`.
pub const RUNS: [(&str, u32, u16, u8); 6] = [
    ("acks 0", 0, 64, 4),
    ("acks 1 group-commit", 1, 64, 4),
    ("acks 1 group-commit 2 lanes", 1, 64, 2),
    ("acks 1 per-call", 1, 1, 4),
    ("acks 2 group-commit", 2, 64, 4),
    ("acks 2 per-call", 2, 1, 4),
];
/// Capacity PUTs tried before a run gives up: a write right after a heavy run may find the
/// replicas slow to acknowledge, and is then a 503, as for any client.
const SETUP_ATTEMPTS: usize = 20;
/// `--ack-timeout-ms` of every run (the default).
const ACK_TIMEOUT_MS: &str = "1000";
/// Room for every attempt.
const CAPACITY: u64 = 1_000_000_000;

/// Runs [`RUNS`] against the `allot` binary and returns what each measured.
pub async fn measure(allot: &Path, http: &reqwest::Client, bounds: Bounds) -> anyhow::Result<Vec<Measured>> {
    eprintln!("starting a primary, two replicas and three Sentinels for the acknowledgement runs ...");
    let stack = HaStack::start(false).await;
    if let Some(pid) = stack.primary.pid() {
        load::watch_cpu("redis-primary", pid);
    }
    let store = Store::open(&RedisTarget::Standalone { url: stack.primary.url() }, Default::default())?;
    let sentinels = stack.sentinel_addresses().join(",");
    let mut results = Vec::new();
    for (n, (name, replicas, batch_max, lanes)) in RUNS.into_iter().enumerate() {
        let args: Vec<String> = [
            "--redis-sentinels",
            &sentinels,
            "--ack-replicas",
            &replicas.to_string(),
            "--ack-batch-max",
            &batch_max.to_string(),
            "--ack-timeout-ms",
            ACK_TIMEOUT_MS,
            "--ack-lanes",
            &lanes.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // The previous run may have left the replicas behind: start each run caught up.
        caught_up(&stack).await?;
        let env = [("ALLOT_ADMIN_TOKEN", ADMIN), ("ALLOT_EDGE_SECRET", SECRET), ("RUST_LOG", "warn")];
        let mut coordinator = CoordinatorProcess::start(allot, None, &args, &env, Output::Discard);
        coordinator.ready().await;
        if let Some(pid) = coordinator.pid() {
            load::watch_cpu("allot-acks", pid);
        }
        let site_name = format!("bench-acks-{n}");
        let capacity = workload::one_counter_capacity(CAPACITY);
        let url = format!("{}/v1/sites/{site_name}/capacity", coordinator.base);
        for attempt in 1..=SETUP_ATTEMPTS {
            let response = http.put(&url).bearer_auth(ADMIN).json(&capacity).send().await?;
            let status = response.status();
            if status == 200 {
                break;
            }
            let body = response.text().await.unwrap_or_default();
            if status != 503 || attempt == SETUP_ATTEMPTS {
                bail!("setting capacity of {site_name}: {status} {body}");
            }
            eprintln!("  setting capacity of {site_name}: {status}, again in 250 ms ({body})");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let measured =
            reserve_over_http(http, name, bounds, &coordinator.base, &site_name, Some(ADMIN), "acks", |_| {
                workload::one_item_body()
            })
            .await;
        load::unwatch_cpu("allot-acks");
        coordinator.stop();
        let audit = store.audit(&site(&site_name)).await?;
        if !audit.mismatches.is_empty() {
            bail!("{name}: used differs from live reservations: {:?}", audit.mismatches);
        }
        let live = audit.live_reservations;
        if live < measured.ok || live > measured.ok + measured.errors {
            bail!("{name}: {live} live reservations, {} acknowledged ({} errors)", measured.ok, measured.errors);
        }
        results.push(measured);
    }
    load::unwatch_cpu("redis-primary");
    eprintln!("correctness (acks): every run stored exactly what it acknowledged");
    Ok(results)
}

/// How long the replicas may take to catch up with the primary between runs.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every replica has acknowledged the primary's whole replication stream, and
/// has every node rewrite its AOF first: otherwise the rewrite that the previous run's writes
/// trigger (AOF growth past 100 %) forks in the middle of the next run, which then pays for it.
async fn caught_up(stack: &HaStack) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + CATCH_UP_TIMEOUT;
    for node in std::iter::once(&stack.primary).chain(&stack.replicas) {
        rewrite_aof(&mut node.connection()?, deadline).await?;
    }
    loop {
        let mut connection = stack.primary.connection()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut connection)?;
        let field = |line: &str, key: &str| -> Option<u64> {
            line.split(',').find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))?.trim().parse().ok()
        };
        let master: Option<u64> =
            info.lines().find_map(|l| l.strip_prefix("master_repl_offset:")).and_then(|v| v.trim().parse().ok());
        let replicas: Vec<u64> =
            info.lines().filter(|l| l.starts_with("slave")).filter_map(|l| field(l, "offset")).collect();
        if let Some(master) = master
            && replicas.len() == stack.replicas.len()
            && replicas.iter().all(|offset| *offset >= master)
        {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the replicas did not catch up with the primary within {} s", CATCH_UP_TIMEOUT.as_secs());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Has the node behind `connection` rewrite its AOF now and waits until it is done (before
/// `deadline`), so the rewrite does not fork in the middle of the next measurement.
pub async fn rewrite_aof(connection: &mut redis::Connection, deadline: std::time::Instant) -> anyhow::Result<()> {
    // Refused while one already runs: then that one is waited for.
    let _: redis::RedisResult<redis::Value> = redis::cmd("BGREWRITEAOF").query(connection);
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query(connection)?;
        if !["aof_rewrite_in_progress:1", "aof_rewrite_scheduled:1"].iter().any(|f| info.contains(f)) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("redis did not finish rewriting its AOF in time");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
