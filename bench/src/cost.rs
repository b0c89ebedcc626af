//! `--only cost --allot-before <binary>`: Redis CPU per reservation of two `allot` binaries
//! (another version's scripts against this one's), measured in the same run on one Redis,
//! in alternating rounds so that the machine's drift lands on both. Each round sends one-item
//! reservations with an Idempotency-Key through one binary's coordinator over HTTP (the two in
//! ABBA order) and reads
//! Redis's CPU time (`/proc/<pid>/stat`) and `INFO commandstats` (time inside the script
//! command, per call) before and after.

use std::path::Path;

use allot_fixtures::CoordinatorProcess;
use anyhow::{Context, bail};

use crate::load::{self, Bounds, Measured};
use crate::{ADMIN, procs, reserve_over_http, workload};

/// Rounds per binary.
pub const ROUNDS: usize = 5;
/// Room for every attempt.
const CAPACITY: u64 = 1_000_000_000;

/// One round's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    /// `before` or `after`.
    pub binary: String,
    /// Reservations placed.
    pub reservations: u64,
    /// Redis process CPU per reservation, µs.
    pub redis_cpu_micros: f64,
    /// Time inside the script command (EVALSHA or FCALL) per call, µs, from INFO commandstats.
    pub script_micros: f64,
    /// Redis calls per reservation, all commands counted by INFO commandstats (the script's
    /// inner calls included).
    pub commands_per_reservation: f64,
}

/// Runs the rounds; returns them with the load results.
pub async fn measure(
    before: &Path,
    after: &Path,
    http: &reqwest::Client,
    bounds: Bounds,
) -> anyhow::Result<(Vec<Round>, Vec<Measured>)> {
    let redis = procs::redis();
    let url = redis.url();
    let pid = redis.pid().context("redis runs")?;
    let client = redis::Client::open(url.as_str())?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut coordinators: Vec<(&str, CoordinatorProcess)> = Vec::new();
    for (label, binary) in [("before", before), ("after", after)] {
        let coordinator = procs::coordinator(binary, &url, &[]).await;
        // Both binaries share this Redis: if the older one loaded a Functions library too, the
        // newer one's `FUNCTION LOAD REPLACE` would make both run the same code.
        let libraries: Vec<redis::Value> = redis::cmd("FUNCTION").arg("LIST").query_async(&mut connection).await?;
        if label == "before" && !libraries.is_empty() {
            bail!(
                "the --allot-before binary loads a Functions library: on one Redis both binaries \
                 would run the newer library; compare only with a binary from before it (EVALSHA)"
            );
        }
        let site = format!("bench-cost-{label}");
        let response = http
            .put(format!("{}/v1/sites/{site}/capacity", coordinator.base))
            .bearer_auth(ADMIN)
            .json(&workload::one_counter_capacity(CAPACITY))
            .send()
            .await?;
        if response.status() != 200 {
            bail!("setting capacity through the {label} binary: {}", response.status());
        }
        coordinators.push((label, coordinator));
    }
    load::watch_cpu("redis-cost", pid);
    let (mut rounds, mut results) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // ABBA: each binary goes first in every other round, so the data set that grows with
        // every round weighs on both alike.
        let order: Vec<&(&str, CoordinatorProcess)> =
            if round % 2 == 0 { coordinators.iter().collect() } else { coordinators.iter().rev().collect() };
        for (label, coordinator) in order {
            // The previous round's writes may have scheduled an AOF rewrite: not in this round.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            crate::acks::rewrite_aof(&mut redis.connection(), deadline).await?;
            let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut connection).await?;
            let name = format!("cost {label} round {}", round + 1);
            let (site, keys) = (format!("bench-cost-{label}"), format!("cost-{round}"));
            let measured = reserve_over_http(http, &name, bounds, &coordinator.base, &site, Some(ADMIN), &keys, |_| {
                workload::one_item_body()
            })
            .await;
            if measured.errors > 0 || measured.ok == 0 {
                bail!("{name}: {} errors, {} placed", measured.errors, measured.ok);
            }
            let stats: String = redis::cmd("INFO").arg("commandstats").query_async(&mut connection).await?;
            let (script_calls, script_usec, all_calls) = commandstats(&stats);
            rounds.push(Round {
                binary: (*label).to_owned(),
                reservations: measured.ok,
                redis_cpu_micros: measured.cpu_micros_per_request.get("redis-cost").copied().unwrap_or(f64::NAN),
                script_micros: script_usec / script_calls.max(1.0),
                commands_per_reservation: all_calls / measured.ok as f64,
            });
            results.push(measured);
        }
    }
    load::unwatch_cpu("redis-cost");
    Ok((rounds, results))
}

/// From INFO commandstats: (calls of EVALSHA and FCALL, their total µs, calls of everything).
fn commandstats(text: &str) -> (f64, f64, f64) {
    let (mut script_calls, mut script_usec, mut all_calls) = (0.0, 0.0, 0.0);
    for line in text.lines() {
        let Some((name, fields)) = line.trim().strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let field = |key: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // The coordinators' own background calls (the sweeper's SMEMBERS, readiness checks)
        // are a few per second; they are counted too, and are noise next to the load.
        all_calls += field("calls");
        if name == "evalsha" || name == "fcall" {
            script_calls += field("calls");
            script_usec += field("usec");
        }
    }
    (script_calls, script_usec, all_calls)
}

/// Prints the rounds and the medians.
pub fn print(rounds: &[Round]) {
    println!();
    println!(
        "| binary | round | reservations | Redis CPU µs/reservation | in the script µs/call | Redis commands/reservation |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (n, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
            r.binary,
            n / 2 + 1,
            r.reservations,
            r.redis_cpu_micros,
            r.script_micros,
            r.commands_per_reservation
        );
    }
    for label in ["before", "after"] {
        let median = |value: fn(&Round) -> f64| {
            let mut values: Vec<f64> = rounds.iter().filter(|r| r.binary == label).map(value).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "redis cost {label}: median {:.1} µs of Redis CPU per reservation, {:.1} µs in the script, {:.1} commands",
            median(|r| r.redis_cpu_micros),
            median(|r| r.script_micros),
            median(|r| r.commands_per_reservation)
        );
    }
}
