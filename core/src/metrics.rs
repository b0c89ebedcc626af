//! The process's Prometheus recorder. Installed once per process (tests build many routers
//! in one process and share it).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for request latency, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS_SECONDS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Histogram buckets for reservations per script call (1 to the batch bound of 64).
const BATCH_SIZE_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The global recorder's handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS_SECONDS)
                .expect("latency buckets are a fixed non-empty list")
                .set_buckets_for_metric(Matcher::Full("allot_reserve_batch_size".to_owned()), &BATCH_SIZE_BUCKETS)
                .expect("batch buckets are a fixed non-empty list");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!("allot_http_requests_total", "HTTP requests answered, by route, method and status.");
    metrics::describe_histogram!(
        "allot_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route, method and status."
    );
    metrics::describe_counter!(
        "allot_reservations_total",
        "Reservation attempts that reached the store, by outcome (placed, replayed, insufficient, ...)."
    );
    metrics::describe_counter!(
        "allot_redis_errors_total",
        "Store calls that failed, by kind (unavailable, unexpected)."
    );
    metrics::describe_counter!("allot_holds_expired_total", "Holds expired, by who ended them (sweeper, request).");
    metrics::describe_counter!("allot_redis_restarts_total", "Times the embedded redis-server was restarted.");
    metrics::describe_histogram!(
        "allot_reserve_batch_size",
        "Reservations placed per script call by the coalescing reserve path (1 when quiet)."
    );
    metrics::describe_histogram!(
        "allot_ack_wait_seconds",
        metrics::Unit::Seconds,
        "Time one WAIT for the replicas took (one per group-committed batch)."
    );
    metrics::describe_histogram!("allot_ack_batch_size", "Calls that one WAIT acknowledged together.");
    metrics::describe_counter!("allot_ack_short_total", "WAITs that returned fewer replicas than --ack-replicas.");
    metrics::describe_counter!(
        "allot_unacknowledged_total",
        "Changes answered 503 with the outcome unknown because their acknowledgement fell short."
    );
    metrics::describe_counter!("allot_redis_failovers_followed_total", "Times the coordinator followed a new primary.");
    metrics::describe_gauge!("allot_redis_primary_epoch", "How many primary changes this coordinator has followed.");
    metrics::describe_gauge!(
        "allot_redis_primary",
        "1 for the Redis primary this coordinator follows through Sentinel, by address (0 for earlier ones)."
    );
}
