//! `allot-bench`: measures Allot on this machine against baselines measured in the same run,
//! and checks correctness afterwards. Every process it measures it starts itself on loopback,
//! and every run is bounded in time and request count. `cargo xtask bench` builds and runs it.

mod baselines;
mod load;
mod procs;
mod propagation;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use allot_core::store::{ReserveOutcome, Store};
use allot_shared::{AvailabilityQuery, ReservationId, ReservationRequest, SiteId};
use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

use crate::load::{Bounds, Ended, Measured, closed_loop};

/// Bench admin token and edge secret (the processes are private to this run).
const ADMIN: &str = "bench-admin-token";
const SECRET: &str = "bench-edge-secret";
/// Counters in the availability site: a delivery hub's day of slots for several resources.
const AVAILABILITY_COUNTERS: usize = 48;
/// Requests per scenario at most, whatever the duration.
const REQUESTS_MAX: u64 = 1_000_000;

/// Allot's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "allot-bench", about)]
struct Cli {
    /// Workspace root (for edge/build and node_modules).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The `allot` binary to measure (a release build).
    #[arg(long, default_value = "target/release/allot")]
    allot: PathBuf,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    seconds: u64,
    /// Concurrent clients per scenario.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/edge.json")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bounds = Bounds {
        concurrency: usize::try_from(cli.concurrency)?,
        duration: Duration::from_secs(cli.seconds),
        requests_max: REQUESTS_MAX,
    };
    eprintln!("starting redis-server, allot serve and the edge (workerd) on loopback ...");
    let redis = procs::Redis::start().await?;
    let coordinator = procs::Coordinator::start(&cli.allot, &redis.url, ADMIN, SECRET).await?;
    let edge = procs::Edge::start(&cli.root, &[&coordinator.base], SECRET).await?;
    let store = Store::connect(&redis.url, Default::default())?;
    store.load_scripts().await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    setup(&http, &coordinator.base).await?;

    let mut results = Vec::new();
    // Availability: the raw script, the coordinator over HTTP, the edge from its cache.
    {
        let (store, site) = (store.clone(), site("bench-read"));
        results.push(
            closed_loop("availability raw-script", bounds, move |_| {
                let (store, site) = (store.clone(), site.clone());
                async move {
                    match store.availability(&site, &AvailabilityQuery::default()).await {
                        Ok(_) => Ended::Ok,
                        Err(_) => Ended::Error,
                    }
                }
            })
            .await,
        );
    }
    for (name, base, token) in [
        ("availability coordinator", coordinator.base.clone(), Some(ADMIN)),
        ("availability edge", edge.base.clone(), None),
    ] {
        let (http, url) = (http.clone(), format!("{base}/v1/sites/bench-read/availability"));
        results.push(
            closed_loop(name, bounds, move |_| {
                let request = with_token(http.get(&url), token);
                async move { ended(request.send().await) }
            })
            .await,
        );
    }
    // The local runtime's own ceiling: a route that does nothing (wrangler dev's proxy, workerd).
    {
        let (http, url) = (http.clone(), format!("{}/healthz", edge.base));
        results.push(
            closed_loop("edge healthz (runtime)", bounds, move |_| {
                let request = http.get(&url);
                async move { ended(request.send().await) }
            })
            .await,
        );
    }
    // Reservations: one item each of a counter with room for all of them.
    {
        let (store, site) = (store.clone(), site("bench-reserve-raw"));
        let request = Arc::new(one_item_request()?);
        results.push(
            closed_loop("reserve raw-script", bounds, move |_| {
                let (store, site, request) = (store.clone(), site.clone(), Arc::clone(&request));
                async move {
                    let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
                    match store.reserve(&site, &request, None, &id).await {
                        Ok(ReserveOutcome::Placed(_)) => Ended::Ok,
                        Ok(_) => Ended::Refused,
                        Err(_) => Ended::Error,
                    }
                }
            })
            .await,
        );
    }
    {
        // The optimistic WATCH/MULTI/EXEC baseline on one counter with room for every attempt.
        let watch = baselines::WatchMulti::new(&redis.url, bounds.concurrency, 1_000_000_000).await?;
        let measured = {
            let watch = watch.clone();
            closed_loop("reserve watch-multi", bounds, move |sequence| {
                let watch = watch.clone();
                async move { watch.reserve(sequence).await }
            })
            .await
        };
        let (capacity, used, events) = watch.totals().await?;
        if used != measured.ok || events != measured.ok || used > capacity {
            bail!("watch-multi: used {used}, events {events}, acknowledged {} (capacity {capacity})", measured.ok);
        }
        results.push(measured);
    }
    for (name, base, site_name, token) in [
        ("reserve coordinator", coordinator.base.clone(), "bench-reserve-direct", Some(ADMIN)),
        ("reserve edge", edge.base.clone(), "bench-reserve-edge", None),
    ] {
        let (http, url) = (http.clone(), format!("{base}/v1/sites/{site_name}/reservations"));
        results.push(
            closed_loop(name, bounds, move |sequence| {
                let request = with_token(http.post(&url), token)
                    .header("idempotency-key", format!("bench-{sequence}"))
                    .json(&json!({"items": [{"resource": "vans", "slot": "2026-12-01T10:00Z", "quantity": 1}]}));
                async move { ended(request.send().await) }
            })
            .await,
        );
    }

    check(&store, &results).await?;
    let propagated = propagation::measure(&http, &coordinator.base, &edge.base, ADMIN, propagation::CHANGES).await?;
    let wasm = wasm_size(&cli.root)?;
    report(&results, wasm, &cli)?;
    propagated.print();
    drop(edge);
    drop(coordinator);
    drop(redis);
    Ok(())
}

fn site(name: &str) -> SiteId {
    SiteId::parse(name).expect("bench site names are valid")
}

fn one_item_request() -> anyhow::Result<ReservationRequest> {
    let body = json!({"items": [{"resource": "vans", "slot": "2026-12-01T10:00Z", "quantity": 1}]});
    ReservationRequest::parse(body.to_string().as_bytes()).map_err(|p| anyhow::anyhow!("{p:?}"))
}

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

fn ended(answer: Result<reqwest::Response, reqwest::Error>) -> Ended {
    match answer.map(|r| r.status().as_u16()) {
        Ok(200 | 201 | 304) => Ended::Ok,
        Ok(409) => Ended::Refused,
        _ => Ended::Error,
    }
}

/// Sets capacity: a day of 2-hour slots for four resources to read, and one large counter per
/// reservation scenario.
async fn setup(http: &reqwest::Client, coordinator: &str) -> anyhow::Result<()> {
    let resources = ["vans", "drivers", "pickers", "bikes"];
    let read: Vec<_> = (0..AVAILABILITY_COUNTERS)
        .map(|i| {
            let resource = resources[i % resources.len()];
            let slot = format!("2026-12-01T{:02}:00Z", (i / resources.len()) * 2 % 24);
            json!({"resource": resource, "slot": slot, "capacity": 40})
        })
        .collect();
    let mut puts = vec![("bench-read", json!({ "counters": read }))];
    for site in ["bench-reserve-raw", "bench-reserve-direct", "bench-reserve-edge"] {
        let counters =
            json!({"counters": [{"resource": "vans", "slot": "2026-12-01T10:00Z", "capacity": 1_000_000_000}]});
        puts.push((site, counters));
    }
    for (site, body) in puts {
        let response =
            http.put(format!("{coordinator}/v1/sites/{site}/capacity")).bearer_auth(ADMIN).json(&body).send().await?;
        if response.status() != 200 {
            bail!("setting capacity of {site}: {}", response.status());
        }
    }
    Ok(())
}

/// After the run: every counter's used equals its live reservations, and each reservation
/// scenario's counter holds exactly the reservations it was told were made.
async fn check(store: &Store, results: &[Measured]) -> anyhow::Result<()> {
    for (site_name, scenario) in [
        ("bench-reserve-raw", "reserve raw-script"),
        ("bench-reserve-direct", "reserve coordinator"),
        ("bench-reserve-edge", "reserve edge"),
    ] {
        let site = site(site_name);
        let audit = store.audit(&site).await?;
        if !audit.mismatches.is_empty() {
            bail!("{site_name}: used differs from live reservations: {:?}", audit.mismatches);
        }
        let accepted = results.iter().find(|r| r.name == scenario).map_or(0, |r| r.ok);
        if audit.live_reservations != accepted {
            bail!("{site_name}: {} live reservations, but {accepted} were acknowledged", audit.live_reservations);
        }
    }
    eprintln!("correctness: every counter's used equals its live reservations; acknowledged = stored");
    Ok(())
}

fn wasm_size(root: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let wasm = root.join("edge/build/index_bg.wasm");
    let raw = std::fs::metadata(&wasm).with_context(|| format!("{}", wasm.display()))?.len();
    let gzip = std::process::Command::new("gzip").args(["-9", "-c"]).arg(&wasm).output()?.stdout.len() as u64;
    Ok((raw, gzip))
}

fn report(results: &[Measured], (wasm_raw, wasm_gzip): (u64, u64), cli: &Cli) -> anyhow::Result<()> {
    let rate = |name: &str| results.iter().find(|r| r.name == name).map_or(0.0, |r| r.per_second);
    println!();
    println!("| scenario | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | ok | refused | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let ms = |micros: u64| micros as f64 / 1000.0;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} |",
            r.name,
            r.per_second,
            ms(r.p50_micros),
            ms(r.p99_micros),
            ms(r.p999_micros),
            ms(r.max_micros),
            r.ok,
            r.refused,
            r.errors
        );
    }
    let ratios = [
        ("availability coordinator/raw-script", rate("availability coordinator") / rate("availability raw-script")),
        ("availability edge/coordinator", rate("availability edge") / rate("availability coordinator")),
        ("availability edge/edge healthz", rate("availability edge") / rate("edge healthz (runtime)")),
        ("reserve coordinator/raw-script", rate("reserve coordinator") / rate("reserve raw-script")),
        ("reserve watch-multi/raw-script", rate("reserve watch-multi") / rate("reserve raw-script")),
        ("reserve edge/coordinator", rate("reserve edge") / rate("reserve coordinator")),
    ];
    println!();
    for (name, ratio) in &ratios {
        println!("{name} {ratio:.2}");
    }
    println!();
    println!("edge wasm: {} KiB raw, {} KiB gzip", wasm_raw / 1024, wasm_gzip / 1024);
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let document = json!({
        "concurrency": cli.concurrency,
        "seconds_per_scenario": cli.seconds,
        "results": results,
        "ratios": ratios.iter().map(|(n, r)| json!({"name": n, "ratio": r})).collect::<Vec<_>>(),
        "wasm_bytes": wasm_raw,
        "wasm_gzip_bytes": wasm_gzip,
    });
    std::fs::write(&cli.out, serde_json::to_vec_pretty(&document)?)?;
    eprintln!("results written to {}", cli.out.display());
    Ok(())
}
