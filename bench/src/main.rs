//! `allot-bench`: measures Allot on this machine against baselines measured in the same run,
//! and checks correctness afterwards. Every process it measures it starts itself on loopback
//! (redis-server, `allot serve`, the edge in workerd, PostgreSQL), and every run is bounded in
//! time and request count. `cargo xtask bench` builds and runs it.

mod acks;
mod baselines;
mod cost;
mod load;
mod plot;
mod postgres;
mod procs;
mod propagation;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allot_core::store::{ReserveOutcome, Store};
use allot_shared::{AvailabilityQuery, ReservationId, ReservationRequest, SiteId};
use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

use crate::load::{Bounds, Ended, Measured, closed_loop, open_loop};
use crate::workload::{HOT_CAPACITY, HOT_EDGE_CAPACITY, MULTI_ITEMS, Pick, Spread};

/// Bench admin token and edge secret (the processes are private to this run).
pub(crate) const ADMIN: &str = "bench-admin-token";
pub(crate) const SECRET: &str = "bench-edge-secret";
/// Counters in the availability site: a delivery hub's day of slots for several resources.
const AVAILABILITY_COUNTERS: usize = 48;
/// Requests per scenario at most, whatever the duration.
const REQUESTS_MAX: u64 = 1_000_000;
/// Capacity of counters meant never to sell out during a run.
const ROOMY_CAPACITY: u64 = 1_000_000_000;
/// Hold length in the `holds` scenario; the run waits this long plus a sweep before auditing.
const HOLD_SECONDS: u64 = 2;
/// One in this many `mixed` requests is a reservation, the rest availability reads (95 / 5).
const MIXED_RESERVE_EVERY: u64 = 20;
/// The offered loads of the open-loop sweep, as fractions of the closed-loop rate of the same
/// path measured earlier in the run.
const SWEEP_FRACTIONS: [f64; 5] = [0.25, 0.5, 0.75, 1.0, 1.25];
/// Pause before each series of the sweep.
const SWEEP_PAUSE: Duration = Duration::from_secs(3);

/// CPU per request below this (µs) is not shown in the tables (an idle process).
const CPU_SHOWN_MIN_MICROS: f64 = 0.2;

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
    /// Another `allot` binary (an earlier version) to compare Redis CPU per reservation with,
    /// in the `cost` section (which runs only when this is given).
    #[arg(long)]
    allot_before: Option<PathBuf>,
    /// Seconds per scenario (closed loop).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    seconds: u64,
    /// Seconds per step of the open-loop sweep.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    sweep_seconds: u64,
    /// Concurrent clients per closed-loop scenario.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// Where to write the plots (SVG).
    #[arg(long, default_value = "target/bench")]
    plots: PathBuf,
    /// Run only these sections (comma-separated), for profiling one load: read, one, hot,
    /// spread, holds, mixed, sweep (needs spread), propagation, acks (acknowledgements after 0,
    /// 1 and 2 replicas, on its own primary with replicas and Sentinels), cost (Redis CPU per
    /// reservation against --allot-before). Default: all.
    #[arg(long, value_delimiter = ',', value_parser = ["read", "one", "hot", "spread", "holds", "mixed", "sweep", "propagation", "acks", "cost"])]
    only: Vec<String>,
    /// Run nothing: redraw the plots from a results file this tool wrote.
    #[arg(long, value_name = "RESULTS_JSON")]
    replot: Option<PathBuf>,
}

/// The processes and clients every scenario uses.
struct Bench {
    store: Store,
    http: reqwest::Client,
    coordinator: String,
    /// A coordinator with coalescing off (`--reserve-batch-max 1`).
    single: String,
    edge: String,
    bounds: Bounds,
    results: Vec<Measured>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(results) = &cli.replot {
        let document: Value = serde_json::from_slice(&std::fs::read(results)?)?;
        let sweep: Vec<Measured> = serde_json::from_value(document["sweep"].clone()).context("the sweep results")?;
        draw_sweep(&cli.plots, &sweep)?;
        eprintln!("plots written to {}/sweep-*.svg", cli.plots.display());
        return Ok(());
    }
    // The edge runs with another working directory: make the paths absolute.
    cli.root = std::fs::canonicalize(&cli.root).with_context(|| format!("{}", cli.root.display()))?;
    let started = std::time::Instant::now();
    let bounds = Bounds {
        concurrency: usize::try_from(cli.concurrency)?,
        duration: Duration::from_secs(cli.seconds),
        requests_max: REQUESTS_MAX,
    };
    eprintln!("starting redis-server, allot serve, the edge (workerd) and PostgreSQL on loopback ...");
    let redis = procs::redis();
    let redis_url = redis.url();
    // Coalescing on, and the same binary with it off (one script call per reservation, the
    // default).
    let coordinator = procs::coordinator(&cli.allot, &redis_url, &["--reserve-batch-max", "64"]).await;
    let single = procs::coordinator(&cli.allot, &redis_url, &["--reserve-batch-max", "1"]).await;
    let edge = procs::edge(&cli.root, &[&coordinator.base]).await?;
    // Every run reports these processes' CPU time per request.
    for (label, pid) in [("redis", redis.pid()), ("allot", coordinator.pid()), ("allot-unbatched", single.pid())] {
        if let Some(pid) = pid {
            load::watch_cpu(label, pid);
        }
    }
    load::watch_cpu("bench", std::process::id());
    let pg = postgres::Postgres::start().await?;
    let store = Store::connect(&redis_url, Default::default())?;
    store.load_functions().await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let mut bench = Bench {
        store,
        http,
        coordinator: coordinator.base.clone(),
        single: single.base.clone(),
        edge: edge.base.clone(),
        bounds,
        results: vec![],
    };

    let runs = |section: &str| cli.only.is_empty() || cli.only.iter().any(|s| s == section);
    if runs("read") {
        bench.read().await?;
    }
    if runs("one") {
        bench.one_counter(&redis_url, &pg).await?;
    }
    if runs("hot") {
        settle(&redis_url, "hot").await?;
        bench.hot().await?;
    }
    if runs("spread") {
        settle(&redis_url, "spread").await?;
        bench.spread(&pg).await?;
    }
    drop(pg);
    if runs("holds") {
        settle(&redis_url, "holds").await?;
        bench.holds().await?;
    }
    if runs("mixed") {
        bench.mixed().await?;
    }
    let mut sweep = Vec::new();
    if runs("sweep") && runs("spread") {
        settle(&redis_url, "the sweep").await?;
        sweep = bench.sweep(Duration::from_secs(cli.sweep_seconds)).await?;
        draw_sweep(&cli.plots, &sweep)?;
        eprintln!("plots written to {}/sweep-*.svg", cli.plots.display());
    }
    if runs("spread") {
        bench.check_spread_sites().await?;
    }
    let propagated = if runs("propagation") {
        Some(propagation::measure(&bench.http, &coordinator.base, &edge.base, ADMIN, propagation::CHANGES).await?)
    } else {
        None
    };
    if runs("acks") {
        for measured in acks::measure(&cli.allot, &bench.http, bench.bounds).await? {
            bench.push(measured);
        }
    }
    let mut cost_rounds = Vec::new();
    if runs("cost") {
        match &cli.allot_before {
            Some(before) => {
                let (rounds, measured) = cost::measure(before, &cli.allot, &bench.http, bench.bounds).await?;
                for m in measured {
                    bench.push(m);
                }
                cost_rounds = rounds;
            }
            None if !cli.only.is_empty() => bail!("--only cost needs --allot-before <binary>"),
            None => {}
        }
    }
    let wasm = wasm_size(&cli.root)?;
    report(&bench.results, &sweep, wasm, &cli, &cost_rounds)?;
    if let Some(propagated) = propagated {
        propagated.print();
    }
    eprintln!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
    drop(edge);
    drop(single);
    drop(coordinator);
    drop(redis);
    Ok(())
}

/// What a run's clients were told, as the audit needs it.
#[derive(Debug, Clone, Copy, Default)]
struct Outcomes {
    /// Acknowledged (placed).
    ok: u64,
    /// Refused.
    refused: u64,
    /// Ended in an error: may or may not have been placed.
    errors: u64,
}

impl Outcomes {
    fn of(measured: &Measured) -> Self {
        Self { ok: measured.ok, refused: measured.refused, errors: measured.errors }
    }

    fn add(&mut self, measured: &Measured) {
        self.ok += measured.ok;
        self.refused += measured.refused;
        self.errors += measured.errors;
    }
}

/// Longest wait for Redis to finish rewriting its append-only file.
const AOF_REWRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Rewrites Redis's AOF now and waits for it to finish. Millions of writes make Redis rewrite
/// its AOF by itself (a fork and a full copy), and on two cores a rewrite that lands inside one
/// scenario's window would slow that path alone; rewriting between sections keeps the
/// comparison fair. The cost is real in production too: it is why Redis should have cores to
/// spare.
async fn settle(redis_url: &str, before: &str) -> anyhow::Result<()> {
    let mut connection = redis::Client::open(redis_url)?.get_multiplexed_async_connection().await?;
    let started = std::time::Instant::now();
    // Fails while an automatic rewrite runs: then just wait for that one.
    let _: Result<String, _> = redis::cmd("BGREWRITEAOF").query_async(&mut connection).await;
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query_async(&mut connection).await?;
        let busy =
            info.lines().any(|l| l.trim() == "aof_rewrite_in_progress:1" || l.trim() == "aof_rewrite_scheduled:1");
        if !busy {
            break;
        }
        if started.elapsed() > AOF_REWRITE_TIMEOUT {
            bail!("redis did not finish rewriting its AOF within {} s", AOF_REWRITE_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("redis: AOF rewritten in {:.1} s before {before}", started.elapsed().as_secs_f64());
    Ok(())
}

/// The sweep's two plots: accepted/s and p99 against offered load, one line per path.
fn draw_sweep(dir: &std::path::Path, sweep: &[Measured]) -> anyhow::Result<()> {
    let series = |label: &'static str, prefix: &str| plot::Series {
        label,
        // "sweep coordinator 1234/s", not "sweep coordinator unbatched ...".
        runs: sweep
            .iter()
            .filter(|m| m.name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())))
            .collect(),
    };
    plot::sweep(
        dir,
        "Reservations, spread over 10,000 counters",
        &[
            series("raw-script (no HTTP)", "sweep raw-script "),
            series("coordinator over HTTP, coalescing", "sweep coordinator "),
            series("coordinator over HTTP, one call each", "sweep coordinator unbatched "),
        ],
    )
}

pub(crate) fn site(name: &str) -> SiteId {
    SiteId::parse(name).expect("bench site names are valid")
}

fn parsed(body: &Value) -> ReservationRequest {
    ReservationRequest::parse(body.to_string().as_bytes()).expect("bench bodies are valid")
}

fn with_token(request: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Closed-loop reservations of `body(sequence)` on `site_name` at `base`, each with its own
/// Idempotency-Key `<key_prefix>-<sequence>`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn reserve_over_http(
    http: &reqwest::Client,
    name: &str,
    bounds: Bounds,
    base: &str,
    site_name: &str,
    token: Option<&'static str>,
    key_prefix: &str,
    body: impl Fn(u64) -> Value + Send + Sync + 'static,
) -> Measured {
    let (http, url) = (http.clone(), format!("{base}/v1/sites/{site_name}/reservations"));
    let key_prefix = key_prefix.to_owned();
    closed_loop(name, bounds, move |sequence| {
        let request = with_token(http.post(&url), token)
            .header("idempotency-key", format!("{key_prefix}-{sequence}"))
            .json(&body(sequence));
        async move { ended(request.send().await) }
    })
    .await
}

pub(crate) fn ended(answer: Result<reqwest::Response, reqwest::Error>) -> Ended {
    match answer.map(|r| r.status().as_u16()) {
        Ok(200 | 201 | 304) => Ended::Ok,
        Ok(409) => Ended::Refused,
        _ => Ended::Error,
    }
}

async fn raw_reserve(store: &Store, site: &SiteId, request: &ReservationRequest) -> Ended {
    let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
    match store.reserve(site, request, None, &id).await {
        Ok(ReserveOutcome::Placed(_)) => Ended::Ok,
        Ok(_) => Ended::Refused,
        Err(_) => Ended::Error,
    }
}

impl Bench {
    async fn put_capacity(&self, site: &str, body: &Value) -> anyhow::Result<()> {
        let url = format!("{}/v1/sites/{site}/capacity", self.coordinator);
        let response = self.http.put(url).bearer_auth(ADMIN).json(body).send().await?;
        if response.status() != 200 {
            bail!("setting capacity of {site}: {}", response.status());
        }
        Ok(())
    }

    fn push(&mut self, measured: Measured) -> &Measured {
        self.results.push(measured);
        self.results.last().expect("just pushed")
    }

    fn rate(&self, name: &str) -> f64 {
        self.results.iter().find(|r| r.name == name).map_or(0.0, |r| r.per_second)
    }

    /// HTTP reservations of `body(sequence)` against `base`.
    async fn http_reserve(
        &mut self,
        name: &str,
        base: &str,
        site_name: &str,
        token: Option<&'static str>,
        body: impl Fn(u64) -> Value + Send + Sync + 'static,
    ) -> Measured {
        let measured = reserve_over_http(&self.http, name, self.bounds, base, site_name, token, "bench", body).await;
        self.push(measured).clone()
    }

    /// `read`: availability through the raw script, the coordinator and the edge.
    async fn read(&mut self) -> anyhow::Result<()> {
        let resources = ["vans", "drivers", "pickers", "bikes"];
        let counters: Vec<_> = (0..AVAILABILITY_COUNTERS)
            .map(|i| {
                let resource = resources[i % resources.len()];
                let slot = format!("2026-12-01T{:02}:00Z", (i / resources.len()) * 2 % 24);
                json!({"resource": resource, "slot": slot, "capacity": 40})
            })
            .collect();
        self.put_capacity("bench-read", &json!({ "counters": counters })).await?;
        let (store, site) = (self.store.clone(), site("bench-read"));
        let measured = closed_loop("read raw-script", self.bounds, move |_| {
            let (store, site) = (store.clone(), site.clone());
            async move {
                match store.availability(&site, &AvailabilityQuery::default()).await {
                    Ok(_) => Ended::Ok,
                    Err(_) => Ended::Error,
                }
            }
        })
        .await;
        self.push(measured);
        for (name, base, token) in
            [("read coordinator", self.coordinator.clone(), Some(ADMIN)), ("read edge", self.edge.clone(), None)]
        {
            let (http, url) = (self.http.clone(), format!("{base}/v1/sites/bench-read/availability"));
            let measured = closed_loop(name, self.bounds, move |_| {
                let request = with_token(http.get(&url), token);
                async move { ended(request.send().await) }
            })
            .await;
            self.push(measured);
        }
        // The local runtime's own ceiling: a route that does nothing (wrangler dev's proxy, workerd).
        let (http, url) = (self.http.clone(), format!("{}/healthz", self.edge));
        let measured = closed_loop("edge healthz (runtime)", self.bounds, move |_| {
            let request = http.get(&url);
            async move { ended(request.send().await) }
        })
        .await;
        self.push(measured);
        Ok(())
    }

    /// One counter with room for every attempt: the same reservation through every path and
    /// every baseline.
    async fn one_counter(&mut self, redis_url: &str, pg: &postgres::Postgres) -> anyhow::Result<()> {
        for name in ["bench-one-raw", "bench-one-direct", "bench-one-single", "bench-one-edge"] {
            self.put_capacity(name, &workload::one_counter_capacity(ROOMY_CAPACITY)).await?;
        }
        let (store, site_id) = (self.store.clone(), site("bench-one-raw"));
        let request = Arc::new(parsed(&workload::one_item_body()));
        let measured = closed_loop("one-counter raw-script", self.bounds, move |_| {
            let (store, site_id, request) = (store.clone(), site_id.clone(), Arc::clone(&request));
            async move { raw_reserve(&store, &site_id, &request).await }
        })
        .await;
        let measured = self.push(measured).clone();
        self.audit("bench-one-raw", Outcomes::of(&measured), None).await?;

        let minimal = baselines::MinimalScript::new(redis_url, ROOMY_CAPACITY).await?;
        let measured = {
            let minimal = minimal.clone();
            closed_loop("one-counter minimal-script", self.bounds, move |sequence| {
                let minimal = minimal.clone();
                async move { minimal.reserve(sequence).await }
            })
            .await
        };
        let (capacity, used, events) = minimal.totals().await?;
        if used != measured.ok || events != measured.ok || used > capacity {
            bail!("minimal-script: used {used}, events {events}, acknowledged {} (capacity {capacity})", measured.ok);
        }
        self.push(measured);

        let watch = baselines::WatchMulti::new(redis_url, self.bounds.concurrency, ROOMY_CAPACITY).await?;
        let measured = {
            let watch = watch.clone();
            closed_loop("one-counter watch-multi", self.bounds, move |sequence| {
                let watch = watch.clone();
                async move { watch.reserve(sequence).await }
            })
            .await
        };
        let (capacity, used, events) = watch.totals().await?;
        if used != measured.ok || events != measured.ok || used > capacity {
            bail!("watch-multi: used {used}, events {events}, acknowledged {} (capacity {capacity})", measured.ok);
        }
        self.push(measured);

        for (name, variant, synchronous) in [
            ("one-counter postgres update-returning sync", postgres::Variant::UpdateReturning, true),
            ("one-counter postgres update-returning async", postgres::Variant::UpdateReturning, false),
            ("one-counter postgres for-update sync", postgres::Variant::ForUpdate, true),
            ("one-counter postgres for-update async", postgres::Variant::ForUpdate, false),
        ] {
            self.postgres(pg, name, variant, synchronous, 1, ROOMY_CAPACITY, None).await?;
        }

        for (name, base, site_name, token) in [
            ("one-counter coordinator", self.coordinator.clone(), "bench-one-direct", Some(ADMIN)),
            ("one-counter coordinator unbatched", self.single.clone(), "bench-one-single", Some(ADMIN)),
            ("one-counter edge", self.edge.clone(), "bench-one-edge", None),
        ] {
            let measured = self.http_reserve(name, &base, site_name, token, |_| workload::one_item_body()).await;
            self.audit(site_name, Outcomes::of(&measured), None).await?;
        }
        eprintln!("correctness (one counter): every path and baseline stored exactly what it acknowledged");
        Ok(())
    }

    /// One PostgreSQL baseline run on `counters` counters, checked afterwards: no counter over
    /// capacity, each counter's used equal to its reservations, one event per reservation,
    /// reservations = acknowledged. `spread` picks each request's counter (else counter 1).
    #[allow(clippy::too_many_arguments)]
    async fn postgres(
        &mut self,
        pg: &postgres::Postgres,
        name: &str,
        variant: postgres::Variant,
        synchronous: bool,
        counters: usize,
        capacity: u64,
        spread: Option<Spread>,
    ) -> anyhow::Result<()> {
        let baseline =
            postgres::Baseline::new(pg, variant, synchronous, self.bounds.concurrency, counters, capacity).await?;
        let measured = {
            let (baseline, spread) = (baseline.clone(), spread.map(Arc::new));
            closed_loop(name, self.bounds, move |sequence| {
                let counter = spread.as_ref().map_or(1, |s| s.counter(sequence) as i64 + 1);
                let baseline = baseline.clone();
                async move { baseline.reserve(counter).await }
            })
            .await
        };
        let (over, mismatched, used, reservations, events) = baseline.totals().await?;
        if over > 0 || mismatched > 0 || used != measured.ok || reservations != measured.ok || events != measured.ok {
            bail!(
                "{name}: {over} counters over capacity, {mismatched} with used != reservations, used {used}, \
                 reservations {reservations}, events {events}, acknowledged {}",
                measured.ok
            );
        }
        self.push(measured);
        Ok(())
    }

    /// `hot`: a flash crowd on one small counter, far above its capacity.
    async fn hot(&mut self) -> anyhow::Result<()> {
        {
            let site_name = "bench-hot-raw";
            self.put_capacity(site_name, &workload::one_counter_capacity(HOT_CAPACITY)).await?;
            let (store, site_id) = (self.store.clone(), site(site_name));
            let request = Arc::new(parsed(&workload::one_item_body()));
            let measured = closed_loop("hot raw-script", self.bounds, move |_| {
                let (store, site_id, request) = (store.clone(), site_id.clone(), Arc::clone(&request));
                async move { raw_reserve(&store, &site_id, &request).await }
            })
            .await;
            let measured = self.push(measured).clone();
            self.audit(site_name, Outcomes::of(&measured), Some(HOT_CAPACITY)).await?;
        }
        for (name, base, site_name, token, capacity) in [
            ("hot coordinator", self.coordinator.clone(), "bench-hot-direct", Some(ADMIN), HOT_CAPACITY),
            ("hot edge", self.edge.clone(), "bench-hot-edge", None, HOT_EDGE_CAPACITY),
        ] {
            self.put_capacity(site_name, &workload::one_counter_capacity(capacity)).await?;
            // The edge refuses key-less attempts itself once its view shows the counter sold out.
            let keyed = token.is_some();
            let (http, url) = (self.http.clone(), format!("{base}/v1/sites/{site_name}/reservations"));
            let measured = closed_loop(name, self.bounds, move |sequence| {
                let mut request = with_token(http.post(&url), token).json(&workload::one_item_body());
                if keyed {
                    request = request.header("idempotency-key", format!("hot-{sequence}"));
                }
                async move { ended(request.send().await) }
            })
            .await;
            let measured = self.push(measured).clone();
            self.audit(site_name, Outcomes::of(&measured), Some(capacity)).await?;
        }
        eprintln!("correctness (hot): each counter sold exactly its capacity once refusals began");
        Ok(())
    }

    /// `spread` (uniform and Zipf) and `multi` (3 items): 10,000 counters per site.
    async fn spread(&mut self, pg: &postgres::Postgres) -> anyhow::Result<()> {
        for name in [
            "bench-spread-raw",
            "bench-spread-raw-coalesced",
            "bench-spread-direct",
            "bench-spread-single",
            "bench-zipf-direct",
            "bench-multi-raw",
            "bench-multi-direct",
        ] {
            self.put_capacity(name, &workload::spread_capacity()).await?;
        }
        for (name, site_name, spread) in [
            ("spread raw-script", "bench-spread-raw", Spread::new(Pick::Uniform, 1, 1)),
            ("multi raw-script", "bench-multi-raw", Spread::new(Pick::Uniform, MULTI_ITEMS, 3)),
        ] {
            let (store, site_id, spread) = (self.store.clone(), site(site_name), Arc::new(spread));
            let measured = closed_loop(name, self.bounds, move |sequence| {
                let (store, site_id, request) = (store.clone(), site_id.clone(), spread.request(sequence));
                async move { raw_reserve(&store, &site_id, &request).await }
            })
            .await;
            let measured = self.push(measured).clone();
            self.audit(site_name, Outcomes::of(&measured), None).await?;
        }
        // The coordinator's coalescing path without HTTP: concurrent reservations of the site
        // share script calls. Against raw-script (one call per reservation), this is the gain
        // coalescing brings to the store itself.
        {
            let site_name = "bench-spread-raw-coalesced";
            let coalescer = allot_core::coalesce::Coalescer::start(self.store.clone(), 64);
            let (site_id, spread) = (site(site_name), Arc::new(Spread::new(Pick::Uniform, 1, 1)));
            let measured = closed_loop("spread raw-coalesced", self.bounds, move |sequence| {
                let (coalescer, site_id, request) = (coalescer.clone(), site_id.clone(), spread.request(sequence));
                async move {
                    let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
                    match coalescer.reserve(&site_id, &request, None, &id).await {
                        Ok(ReserveOutcome::Placed(_)) => Ended::Ok,
                        Ok(_) => Ended::Refused,
                        Err(_) => Ended::Error,
                    }
                }
            })
            .await;
            let measured = self.push(measured).clone();
            self.audit(site_name, Outcomes::of(&measured), None).await?;
        }
        let (coordinator, single) = (self.coordinator.clone(), self.single.clone());
        for (name, base, site_name, spread) in [
            ("spread coordinator", &coordinator, "bench-spread-direct", Spread::new(Pick::Uniform, 1, 1)),
            ("spread coordinator unbatched", &single, "bench-spread-single", Spread::new(Pick::Uniform, 1, 1)),
            ("spread-zipf coordinator", &coordinator, "bench-zipf-direct", Spread::new(Pick::Zipf, 1, 2)),
            ("multi coordinator", &coordinator, "bench-multi-direct", Spread::new(Pick::Uniform, MULTI_ITEMS, 3)),
        ] {
            let measured = self.http_reserve(name, base, site_name, Some(ADMIN), move |s| spread.body(s)).await;
            self.audit(site_name, Outcomes::of(&measured), None).await?;
        }
        for (name, synchronous) in
            [("spread postgres update-returning sync", true), ("spread postgres update-returning async", false)]
        {
            let spread = Some(Spread::new(Pick::Uniform, 1, 1));
            let variant = postgres::Variant::UpdateReturning;
            self.postgres(pg, name, variant, synchronous, workload::SPREAD_COUNTERS, workload::SPREAD_CAPACITY, spread)
                .await?;
        }
        eprintln!("correctness (spread, multi): used equals live reservations on all 10,000 counters");
        Ok(())
    }

    /// `holds`: reserve with a hold, then confirm a third, cancel a third and let a third expire.
    async fn holds(&mut self) -> anyhow::Result<()> {
        let site_name = "bench-holds";
        self.put_capacity(site_name, &workload::spread_capacity()).await?;
        let spread = Arc::new(Spread::new(Pick::Uniform, 1, 4));
        let confirmed = Arc::new(AtomicU64::new(0));
        let (http, base) = (self.http.clone(), format!("{}/v1/sites/{site_name}/reservations", self.coordinator));
        let measured = {
            let confirmed = Arc::clone(&confirmed);
            closed_loop("holds coordinator", self.bounds, move |sequence| {
                let mut body = spread.body(sequence);
                body["hold_seconds"] = json!(HOLD_SECONDS);
                let (http, base, confirmed) = (http.clone(), base.clone(), Arc::clone(&confirmed));
                async move {
                    let placed = http.post(&base).bearer_auth(ADMIN).json(&body).send().await;
                    let Ok(placed) = placed else { return Ended::Error };
                    if placed.status() == 409 {
                        return Ended::Refused;
                    }
                    let Ok(reservation) = placed.json::<Value>().await else { return Ended::Error };
                    let Some(id) = reservation["id"].as_str() else { return Ended::Error };
                    let next = match sequence % 3 {
                        0 => http.post(format!("{base}/{id}/confirm")),
                        1 => http.delete(format!("{base}/{id}")),
                        _ => return Ended::Ok,
                    };
                    match next.bearer_auth(ADMIN).send().await.map(|r| r.status().as_u16()) {
                        Ok(200) => {
                            if sequence % 3 == 0 {
                                confirmed.fetch_add(1, Ordering::Relaxed);
                            }
                            Ended::Ok
                        }
                        _ => Ended::Error,
                    }
                }
            })
            .await
        };
        let measured = self.push(measured).clone();
        // Wait out the last holds and one sweep, then only the confirmed ones may be live.
        tokio::time::sleep(Duration::from_millis(HOLD_SECONDS * 1000 + 1_000)).await;
        self.store.expire_due(&site(site_name)).await?;
        let audit = self.store.audit(&site(site_name)).await?;
        let confirmed = confirmed.load(Ordering::Relaxed);
        if !audit.mismatches.is_empty() || audit.live_reservations != confirmed || measured.errors > 0 {
            bail!(
                "holds: {} live after expiry, {confirmed} confirmed, {} errors, mismatches {:?}",
                audit.live_reservations,
                measured.errors,
                audit.mismatches
            );
        }
        eprintln!("correctness (holds): after expiry exactly the {confirmed} confirmed reservations are live");
        Ok(())
    }

    /// `mixed`: 95 % availability reads, 5 % reservations, direct and through the edge.
    async fn mixed(&mut self) -> anyhow::Result<()> {
        for (name, base, site_name, token) in [
            ("mixed coordinator", self.coordinator.clone(), "bench-mixed-direct", Some(ADMIN)),
            ("mixed edge", self.edge.clone(), "bench-mixed-edge", None),
        ] {
            self.put_capacity(site_name, &workload::one_counter_capacity(ROOMY_CAPACITY)).await?;
            let placed = Arc::new(AtomicU64::new(0));
            let (http, url) = (self.http.clone(), format!("{base}/v1/sites/{site_name}"));
            let measured = {
                let placed = Arc::clone(&placed);
                closed_loop(name, self.bounds, move |sequence| {
                    let request = if sequence % MIXED_RESERVE_EVERY == 0 {
                        with_token(http.post(format!("{url}/reservations")), token)
                            .header("idempotency-key", format!("mixed-{sequence}"))
                            .json(&workload::one_item_body())
                    } else {
                        with_token(http.get(format!("{url}/availability")), token)
                    };
                    let placed = Arc::clone(&placed);
                    async move {
                        let answer = request.send().await;
                        if let Ok(response) = &answer
                            && response.status() == 201
                        {
                            placed.fetch_add(1, Ordering::Relaxed);
                        }
                        ended(answer)
                    }
                })
                .await
            };
            let measured = self.push(measured).clone();
            // Reads are not reservations: only the 201s count as acknowledged.
            let reservations = Outcomes { ok: placed.load(Ordering::Relaxed), ..Outcomes::of(&measured) };
            self.audit(site_name, reservations, None).await?;
        }
        Ok(())
    }

    /// Open loop at the same offered loads for every path: fractions of the raw script's
    /// closed-loop rate in the spread scenario. Raw script, coordinator (coalescing) and
    /// coordinator unbatched, each on its own fresh site. Then the coordinator at half of its own
    /// saturating (closed-loop) rate, the latency goal.
    async fn sweep(&mut self, step: Duration) -> anyhow::Result<Vec<Measured>> {
        let mut runs = Vec::new();
        let bounds = Bounds { duration: step, ..self.bounds };
        let ceiling = self.rate("spread raw-script");
        let half = vec![0.5 * self.rate("spread coordinator") / ceiling.max(1.0)];
        for (label, site_name, base, fractions) in [
            ("raw-script", "bench-sweep-raw", None, SWEEP_FRACTIONS.to_vec()),
            ("coordinator", "bench-sweep-direct", Some(self.coordinator.clone()), SWEEP_FRACTIONS.to_vec()),
            ("coordinator unbatched", "bench-sweep-single", Some(self.single.clone()), SWEEP_FRACTIONS.to_vec()),
            ("coordinator half-saturation", "bench-sweep-half", Some(self.coordinator.clone()), half),
        ] {
            self.put_capacity(site_name, &workload::spread_capacity()).await?;
            // Each series after a pause: the last step of the one before overloads the machine.
            tokio::time::sleep(SWEEP_PAUSE).await;
            let spread = Arc::new(Spread::new(Pick::Uniform, 1, 5));
            let mut acknowledged = Outcomes::default();
            for fraction in fractions {
                let rate = (ceiling * fraction).max(1.0);
                let name = format!("sweep {label} {rate:.0}/s");
                let measured = match &base {
                    None => {
                        let (store, site_id, spread) = (self.store.clone(), site(site_name), Arc::clone(&spread));
                        open_loop(&name, rate, bounds, move |sequence| {
                            let (store, site_id, request) = (store.clone(), site_id.clone(), spread.request(sequence));
                            async move { raw_reserve(&store, &site_id, &request).await }
                        })
                        .await
                    }
                    Some(base) => {
                        let (http, url) = (self.http.clone(), format!("{base}/v1/sites/{site_name}/reservations"));
                        let spread = Arc::clone(&spread);
                        let salt = (fraction * 1000.0) as u64;
                        open_loop(&name, rate, bounds, move |sequence| {
                            let request = http
                                .post(&url)
                                .bearer_auth(ADMIN)
                                .header("idempotency-key", format!("sweep-{salt}-{sequence}"))
                                .json(&spread.body(sequence ^ (salt << 40)));
                            async move { ended(request.send().await) }
                        })
                        .await
                    }
                };
                acknowledged.add(&measured);
                runs.push(measured);
            }
            self.audit(site_name, acknowledged, None).await?;
        }
        Ok(runs)
    }

    /// The run's correctness check for one site, from Redis and from the coordinator (whose
    /// availability must match Redis's counter by counter): `used` equals the sum of live
    /// reservations on every counter and never exceeds capacity; the live reservations are the acknowledged
    /// ones (requests that ended in an error may or may not have been placed, and are allowed
    /// either way); with `sold_out`, a run that saw refusals sold exactly that capacity.
    async fn audit(&self, site_name: &str, measured: Outcomes, sold_out: Option<u64>) -> anyhow::Result<()> {
        let site_id = site(site_name);
        let audit = self.store.audit(&site_id).await?;
        if !audit.mismatches.is_empty() {
            bail!("{site_name}: used differs from live reservations: {:?}", audit.mismatches);
        }
        let live = audit.live_reservations;
        if live < measured.ok || live > measured.ok + measured.errors {
            bail!(
                "{site_name}: {live} live reservations, but {} were acknowledged ({} errors)",
                measured.ok,
                measured.errors
            );
        }
        let availability = self.store.availability(&site_id, &AvailabilityQuery::default()).await?;
        // The coordinator must say the same as Redis, counter by counter.
        let url = format!("{}/v1/sites/{site_name}/availability", self.coordinator);
        let served: allot_shared::Availability =
            self.http.get(url).bearer_auth(ADMIN).send().await?.error_for_status()?.json().await?;
        let pairs = |a: &allot_shared::Availability| -> Vec<(String, u64, u64)> {
            a.counters.iter().map(|c| (format!("{}@{}", c.resource, c.slot), c.capacity, c.used)).collect()
        };
        if pairs(&served) != pairs(&availability) {
            bail!("{site_name}: the coordinator's availability differs from Redis's");
        }
        let used: u64 = availability.counters.iter().map(|c| c.used).sum();
        if let Some(over) = availability.counters.iter().find(|c| c.used > c.capacity) {
            bail!(
                "{site_name}: {}@{} oversold: used {} > capacity {}",
                over.resource,
                over.slot,
                over.used,
                over.capacity
            );
        }
        if let Some(capacity) = sold_out
            && measured.refused > 0
            && used != capacity
        {
            bail!("{site_name}: refusals began but used is {used}, not the capacity {capacity}");
        }
        Ok(())
    }

    /// The spread sites once more at the end: nothing changed behind the run's back.
    async fn check_spread_sites(&self) -> anyhow::Result<()> {
        for name in ["bench-spread-direct", "bench-spread-single", "bench-zipf-direct", "bench-multi-direct"] {
            let audit = self.store.audit(&site(name)).await.with_context(|| name.to_owned())?;
            if !audit.mismatches.is_empty() {
                bail!("{name}: {:?}", audit.mismatches);
            }
        }
        eprintln!("correctness: every counter's used equals its live reservations; acknowledged = stored; no oversell");
        Ok(())
    }
}

fn wasm_size(root: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let wasm = root.join("edge/build/index_bg.wasm");
    let raw = std::fs::metadata(&wasm).with_context(|| format!("{}", wasm.display()))?.len();
    let gzip = std::process::Command::new("gzip").args(["-9", "-c"]).arg(&wasm).output()?.stdout.len() as u64;
    Ok((raw, gzip))
}

fn table(results: &[&Measured]) {
    println!(
        "| scenario | offered/s | requests/s | accepted/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | accepted | refused | errors | dropped | CPU µs/request |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in results {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let offered = r.offered_per_second.map_or("closed".to_owned(), |o| format!("{o:.0}"));
        // Processes that did (next to) nothing in this run are left out.
        let cpu: Vec<String> = r
            .cpu_micros_per_request
            .iter()
            .filter(|(_, micros)| **micros >= CPU_SHOWN_MIN_MICROS)
            .map(|(label, micros)| format!("{label} {micros:.1}"))
            .collect();
        println!(
            "| {} | {offered} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} |",
            r.name,
            r.per_second,
            r.ok as f64 / r.seconds,
            ms(r.p50_micros),
            ms(r.p90_micros),
            ms(r.p99_micros),
            ms(r.p999_micros),
            ms(r.max_micros),
            r.ok,
            r.refused,
            r.errors,
            r.dropped,
            cpu.join(", ")
        );
    }
}

fn report(
    results: &[Measured],
    sweep: &[Measured],
    (wasm_raw, wasm_gzip): (u64, u64),
    cli: &Cli,
    cost_rounds: &[cost::Round],
) -> anyhow::Result<()> {
    let rate = |name: &str| results.iter().find(|r| r.name == name).map_or(0.0, |r| r.per_second);
    println!();
    table(&results.iter().collect::<Vec<_>>());
    println!();
    table(&sweep.iter().collect::<Vec<_>>());
    let ratios = [
        ("read coordinator/raw-script", rate("read coordinator") / rate("read raw-script")),
        ("read edge/coordinator", rate("read edge") / rate("read coordinator")),
        ("read edge/edge healthz", rate("read edge") / rate("edge healthz (runtime)")),
        ("http/raw-script (one counter)", rate("one-counter coordinator") / rate("one-counter raw-script")),
        (
            "http unbatched/raw-script (one counter)",
            rate("one-counter coordinator unbatched") / rate("one-counter raw-script"),
        ),
        ("http/raw-script (spread)", rate("spread coordinator") / rate("spread raw-script")),
        (
            "postgres update-returning sync/raw-script (spread)",
            rate("spread postgres update-returning sync") / rate("spread raw-script"),
        ),
        (
            "postgres update-returning async/raw-script (spread)",
            rate("spread postgres update-returning async") / rate("spread raw-script"),
        ),
        ("http/raw-script (hot)", rate("hot coordinator") / rate("hot raw-script")),
        ("http unbatched/raw-script (spread)", rate("spread coordinator unbatched") / rate("spread raw-script")),
        ("raw-coalesced/raw-script (spread)", rate("spread raw-coalesced") / rate("spread raw-script")),
        ("http coalesced/unbatched (spread)", rate("spread coordinator") / rate("spread coordinator unbatched")),
        (
            "coalesced/unbatched (one counter)",
            rate("one-counter coordinator") / rate("one-counter coordinator unbatched"),
        ),
        ("http/raw-script (multi)", rate("multi coordinator") / rate("multi raw-script")),
        ("watch-multi/raw-script", rate("one-counter watch-multi") / rate("one-counter raw-script")),
        ("minimal-script/raw-script", rate("one-counter minimal-script") / rate("one-counter raw-script")),
        (
            "postgres update-returning sync/raw-script",
            rate("one-counter postgres update-returning sync") / rate("one-counter raw-script"),
        ),
        (
            "postgres update-returning async/raw-script",
            rate("one-counter postgres update-returning async") / rate("one-counter raw-script"),
        ),
        (
            "postgres for-update sync/raw-script",
            rate("one-counter postgres for-update sync") / rate("one-counter raw-script"),
        ),
        (
            "postgres for-update async/raw-script",
            rate("one-counter postgres for-update async") / rate("one-counter raw-script"),
        ),
        ("edge/coordinator (one counter)", rate("one-counter edge") / rate("one-counter coordinator")),
        ("acks 1 group-commit/acks 0", rate("acks 1 group-commit") / rate("acks 0")),
        ("acks 1 group-commit 2 lanes/acks 0", rate("acks 1 group-commit 2 lanes") / rate("acks 0")),
        ("acks 1 per-call/acks 0", rate("acks 1 per-call") / rate("acks 0")),
        ("acks 2 group-commit/acks 0", rate("acks 2 group-commit") / rate("acks 0")),
        ("acks 2 per-call/acks 0", rate("acks 2 per-call") / rate("acks 0")),
    ];
    println!();
    for (name, ratio) in &ratios {
        if ratio.is_finite() && *ratio > 0.0 {
            println!("{name} {ratio:.2}");
        }
    }
    if let Some(half) = sweep.iter().find(|m| m.name.starts_with("sweep coordinator half-saturation")) {
        println!(
            "coordinator p99 at half its saturating rate ({:.0}/s): {:.2} ms",
            half.offered_per_second.unwrap_or(0.0),
            half.p99_micros as f64 / 1000.0
        );
    }
    if !cost_rounds.is_empty() {
        cost::print(cost_rounds);
    }
    println!();
    println!("edge wasm: {} KiB raw, {} KiB gzip", wasm_raw / 1024, wasm_gzip / 1024);
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let document = json!({
        "concurrency": cli.concurrency,
        "seconds_per_scenario": cli.seconds,
        "sweep_seconds_per_step": cli.sweep_seconds,
        "results": results,
        "sweep": sweep,
        "ratios": ratios.iter().map(|(n, r)| json!({"name": n, "ratio": r})).collect::<Vec<_>>(),
        "cost_rounds": cost_rounds,
        "wasm_bytes": wasm_raw,
        "wasm_gzip_bytes": wasm_gzip,
    });
    std::fs::write(&cli.out, serde_json::to_vec_pretty(&document)?)?;
    eprintln!("results written to {}", cli.out.display());
    Ok(())
}
