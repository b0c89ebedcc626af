//! A closed-loop load driver: N workers each send one request, wait for its answer, and send
//! the next, for a fixed time and at most a fixed number of requests. Latency goes into an HDR
//! histogram (microseconds). A progress line is printed every second.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Scenario name.
    pub name: String,
    /// Requests answered.
    pub requests: u64,
    /// Of which successes.
    pub ok: u64,
    /// Of which refusals.
    pub refused: u64,
    /// Of which errors.
    pub errors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Requests per second.
    pub per_second: f64,
    /// Latency percentiles in microseconds.
    pub p50_micros: u64,
    /// 99th percentile.
    pub p99_micros: u64,
    /// 99.9th percentile.
    pub p999_micros: u64,
    /// Slowest.
    pub max_micros: u64,
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
            let mut counts = [0u64; 3];
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
    let mut counts = [0u64; 3];
    for worker in workers {
        if let Ok((h, c)) = worker.await {
            let _ = histogram.add(&h);
            for (total, n) in counts.iter_mut().zip(c) {
                *total += n;
            }
        }
    }
    progress.abort();
    let seconds = started.elapsed().as_secs_f64();
    let requests = counts.iter().sum();
    Measured {
        name: name.to_owned(),
        requests,
        ok: counts[Ended::Ok as usize],
        refused: counts[Ended::Refused as usize],
        errors: counts[Ended::Error as usize],
        seconds,
        per_second: requests as f64 / seconds,
        p50_micros: histogram.value_at_quantile(0.50),
        p99_micros: histogram.value_at_quantile(0.99),
        p999_micros: histogram.value_at_quantile(0.999),
        max_micros: histogram.max(),
    }
}
