//! `--only acks`: one-item reservations over HTTP with acknowledgements after 0, 1 and 2
//! replicas, with group commit (`--ack-batch-max 64`) and without (1: one WAIT per call), on a
//! primary with two replicas and three Sentinels started from the shipped `docs/redis/`
//! configuration. Each run is audited like every other: used equals the live reservations,
//! which number the acknowledged ones.

use std::path::Path;

use allot_core::store::Store;
use allot_core::store::connection::RedisTarget;
use allot_fixtures::coordinator::Output;
use allot_fixtures::{CoordinatorProcess, HaStack};
use anyhow::bail;

use crate::load::{self, Bounds, Measured, closed_loop};
use crate::{ADMIN, SECRET, ended, site, workload};

/// The runs: name, `--ack-replicas`, `--ack-batch-max`.
pub const RUNS: [(&str, u32, u16); 5] = [
    ("acks 0", 0, 64),
    ("acks 1 group-commit", 1, 64),
    ("acks 1 per-call", 1, 1),
    ("acks 2 group-commit", 2, 64),
    ("acks 2 per-call", 2, 1),
];
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
    for (n, (name, replicas, batch_max)) in RUNS.into_iter().enumerate() {
        let args: Vec<String> = [
            "--redis-sentinels",
            &sentinels,
            "--ack-replicas",
            &replicas.to_string(),
            "--ack-batch-max",
            &batch_max.to_string(),
            "--ack-timeout-ms",
            ACK_TIMEOUT_MS,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let env = [("ALLOT_ADMIN_TOKEN", ADMIN), ("ALLOT_EDGE_SECRET", SECRET), ("RUST_LOG", "warn")];
        let mut coordinator = CoordinatorProcess::start(allot, None, &args, &env, Output::Discard);
        coordinator.ready().await;
        if let Some(pid) = coordinator.pid() {
            load::watch_cpu("allot-acks", pid);
        }
        let site_name = format!("bench-acks-{n}");
        let capacity = workload::one_counter_capacity(CAPACITY);
        let url = format!("{}/v1/sites/{site_name}/capacity", coordinator.base);
        let response = http.put(url).bearer_auth(ADMIN).json(&capacity).send().await?;
        if response.status() != 200 {
            bail!("setting capacity of {site_name}: {}", response.status());
        }
        let (client, url) = (http.clone(), format!("{}/v1/sites/{site_name}/reservations", coordinator.base));
        let measured = closed_loop(name, bounds, move |sequence| {
            let request = client
                .post(&url)
                .bearer_auth(ADMIN)
                .header("idempotency-key", format!("acks-{sequence}"))
                .json(&workload::one_item_body());
            async move { ended(request.send().await) }
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
