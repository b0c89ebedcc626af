//! Load drivers. Closed loop: N workers each send one request, wait for its answer, and send
//! the next, for a fixed time and at most a fixed number of requests. Open loop: requests leave
//! on a fixed schedule whatever the answers do. Latency goes into an HDR
//! histogram (microseconds). A progress line is printed every second.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly, in microseconds (longer ones are clamped): 60 s.
const LATENCY_MAX_MICROS: u64 = 60_000_000;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The expected success (200, 201, 304).
    Ok,
    /// A correct refusal (409).
    Refused,
    /// Anything else.
    Error,
    /// Not sent: an open-loop run already had [`IN_FLIGHT_MAX`] requests waiting.
    Dropped,
}

/// The bounds of one run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Concurrent workers.
    pub concurrency: usize,
    /// Wall time.
    pub duration: Duration,
    /// Most requests in all.
    pub requests_max: u64,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Measured {
    /// Scenario name.
    pub name: String,
    /// The arrival rate of an open-loop run (none for closed loop).
    pub offered_per_second: Option<f64>,
    /// Requests answered.
    pub requests: u64,
    /// Of which successes.
    pub ok: u64,
    /// Of which refusals.
    pub refused: u64,
    /// Of which errors.
    pub errors: u64,
    /// Arrivals not sent because too many requests were already waiting (open loop only).
    pub dropped: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Requests per second.
    pub per_second: f64,
    /// Latency percentiles in microseconds.
    pub p50_micros: u64,
    /// 90th percentile.
    pub p90_micros: u64,
    /// 99th percentile.
    pub p99_micros: u64,
    /// 99.9th percentile.
    pub p999_micros: u64,
    /// Slowest.
    pub max_micros: u64,
    /// CPU time (user + system) per answered request of each watched process, in
    /// microseconds: see [`watch_cpu`].
    #[serde(default)]
    pub cpu_micros_per_request: BTreeMap<String, f64>,
}

/// The processes whose CPU time every run reports per request, by label.
static WATCHED: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

/// Reports `pid`'s CPU time per request as `label` in every run from now on (replacing the
/// process of the same label).
pub fn watch_cpu(label: &str, pid: u32) {
    let mut watched = WATCHED.lock().expect("watch list");
    watched.retain(|(l, _)| l != label);
    watched.push((label.to_owned(), pid));
}

/// Stops reporting `label`.
pub fn unwatch_cpu(label: &str) {
    WATCHED.lock().expect("watch list").retain(|(l, _)| l != label);
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// CPU time (user + system) of `pid` so far, in microseconds, from /proc/<pid>/stat.
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000 / clock_ticks())
}

/// The watched processes' CPU times at one moment.
struct CpuSample(Vec<(String, u32, Option<u64>)>);

impl CpuSample {
    fn take() -> Self {
        let watched = WATCHED.lock().expect("watch list").clone();
        Self(watched.into_iter().map(|(label, pid)| (label, pid, cpu_micros(pid))).collect())
    }

    /// CPU µs per request since this sample, per process still running.
    fn per_request(&self, requests: u64) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|(label, pid, before)| {
                let spent = cpu_micros(*pid)?.checked_sub((*before)?)?;
                (requests > 0).then(|| (label.clone(), spent as f64 / requests as f64))
            })
            .collect()
    }
}

/// Runs `operation` (given the request's sequence number) under `bounds`.
pub async fn closed_loop<F, Fut>(name: &str, bounds: Bounds, operation: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Ended> + Send,
{
    let operation = Arc::new(operation);
    let issued = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let cpu = CpuSample::take();
    let started = Instant::now();
    let deadline = started + bounds.duration;
    let progress = {
        let (answered, name) = (Arc::clone(&answered), name.to_owned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = answered.load(Ordering::Relaxed);
                eprintln!("  {name}: {done} answered, {:.0}/s", done as f64 / started.elapsed().as_secs_f64());
            }
        })
    };
    let mut workers = Vec::with_capacity(bounds.concurrency);
    for _ in 0..bounds.concurrency {
        let (operation, issued, answered) = (Arc::clone(&operation), Arc::clone(&issued), Arc::clone(&answered));
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).expect("valid bounds");
            let mut counts = [0u64; 4];
            while Instant::now() < deadline {
                let sequence = issued.fetch_add(1, Ordering::Relaxed);
                if sequence >= bounds.requests_max {
                    break;
                }
                let sent = Instant::now();
                let ended = operation(sequence).await;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.clamp(1, LATENCY_MAX_MICROS));
                counts[ended as usize] += 1;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            (histogram, counts)
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).expect("valid bounds");
    let mut counts = [0u64; 4];
    for worker in workers {
        if let Ok((h, c)) = worker.await {
            let _ = histogram.add(&h);
            for (total, n) in counts.iter_mut().zip(c) {
                *total += n;
            }
        }
    }
    progress.abort();
    summarize(name, &histogram, counts, started.elapsed().as_secs_f64(), None, &cpu)
}

/// Requests of an open-loop run allowed in flight at once (each holds a socket); an arrival
/// beyond this is counted as dropped (the system fell this far behind) instead of piling up
/// without bound.
pub const IN_FLIGHT_MAX: usize = 512;

/// Runs `operation` at a fixed arrival rate, whether or not earlier requests have answered,
/// for `bounds.duration` and at most `bounds.requests_max` requests. Latency is measured from
/// each request's scheduled time, not from when it was actually sent, so a stall shows in
/// the percentiles instead of being hidden (no coordinated omission).
pub async fn open_loop<F, Fut>(name: &str, rate_per_second: f64, bounds: Bounds, operation: F) -> Measured
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Ended> + Send + 'static,
{
    let operation = Arc::new(operation);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
    let (done, mut finished) = tokio::sync::mpsc::unbounded_channel::<(u64, Ended)>();
    let interval = Duration::from_secs_f64(1.0 / rate_per_second.max(1.0));
    let cpu = CpuSample::take();
    let started = Instant::now();
    let deadline = started + bounds.duration;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_MICROS, 3).expect("valid bounds");
    let mut counts = [0u64; 4];
    let record = |histogram: &mut Histogram<u64>, counts: &mut [u64; 4], (micros, ended): (u64, Ended)| {
        histogram.saturating_record(micros.clamp(1, LATENCY_MAX_MICROS));
        counts[ended as usize] += 1;
    };
    let mut sequence = 0u64;
    let mut last_report = started;
    loop {
        let scheduled = started + interval.mul_f64(sequence as f64);
        if scheduled >= deadline || sequence >= bounds.requests_max {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        while let Ok(answer) = finished.try_recv() {
            record(&mut histogram, &mut counts, answer);
        }
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let (operation, done) = (Arc::clone(&operation), done.clone());
                tokio::spawn(async move {
                    let ended = operation(sequence).await;
                    let micros = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = done.send((micros, ended));
                    drop(permit);
                });
            }
            // Not sent, so no latency to record: counted apart from the answered requests.
            Err(_) => counts[Ended::Dropped as usize] += 1,
        }
        sequence += 1;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "  {name}: {sequence} due at {rate_per_second:.0}/s, {} answered",
                counts[..3].iter().sum::<u64>()
            );
        }
    }
    drop(done);
    while let Some(answer) = finished.recv().await {
        record(&mut histogram, &mut counts, answer);
    }
    // Until the last answer: a system that falls behind shows a lower achieved rate.
    summarize(name, &histogram, counts, started.elapsed().as_secs_f64(), Some(rate_per_second), &cpu)
}

/// The result of a run from its histogram and counts.
fn summarize(
    name: &str,
    histogram: &Histogram<u64>,
    counts: [u64; 4],
    seconds: f64,
    offered: Option<f64>,
    cpu: &CpuSample,
) -> Measured {
    let requests = counts[..Ended::Dropped as usize].iter().sum();
    Measured {
        name: name.to_owned(),
        offered_per_second: offered,
        requests,
        ok: counts[Ended::Ok as usize],
        refused: counts[Ended::Refused as usize],
        errors: counts[Ended::Error as usize],
        dropped: counts[Ended::Dropped as usize],
        seconds,
        per_second: requests as f64 / seconds,
        p50_micros: histogram.value_at_quantile(0.50),
        p90_micros: histogram.value_at_quantile(0.90),
        p99_micros: histogram.value_at_quantile(0.99),
        p999_micros: histogram.value_at_quantile(0.999),
        max_micros: histogram.max(),
        cpu_micros_per_request: cpu.per_request(requests),
    }
}
