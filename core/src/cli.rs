//! Command-line flags. Every flag has an environment variable, shown in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::store::StoreSettings;
use crate::store::connection::RedisTarget;

/// Allot: strict atomic capacity counters for scarce capacity (delivery slots, room nights,
/// seats), on Redis.
#[derive(Debug, Parser)]
#[command(name = "allot", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator: the HTTP API over Redis, the hold sweeper, and (without
    /// --redis-url) a private redis-server with its data under --data-dir.
    Serve(ServeArgs),
    /// Print a site's events from its Redis Stream, one JSON object per line (what a dashboard
    /// or an integration job reads; see the README on consumer groups and retention).
    Events(EventsArgs),
}

/// Flags of `allot events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The site whose stream to read (`allot:{<site>}:events`).
    pub site: String,

    /// Where the streams are (for the embedded Redis, the URL `allot serve` logs at start).
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Keep reading new events until Ctrl-C.
    #[arg(long)]
    pub follow: bool,

    /// Start after this stream id (`0` for the oldest retained). Default: the oldest retained;
    /// with --follow, only new events. With --group: where a new group starts.
    #[arg(long)]
    pub after: Option<String>,

    /// Read through this consumer group and acknowledge each event after printing it, so the
    /// group processes each event once (created if missing).
    #[arg(long)]
    pub group: Option<String>,

    /// This reader's name within --group.
    #[arg(long, default_value = "allot-events")]
    pub consumer: String,
}

/// Where Redis is: one URL, or the Sentinels that know the primary. Shared by `serve` and
/// `events`.
#[derive(Debug, Args)]
pub struct RedisArgs {
    /// Redis to use (redis://host:port/db).
    #[arg(long, env = "ALLOT_REDIS_URL", conflicts_with = "redis_sentinels")]
    pub redis_url: Option<String>,

    /// Sentinels that monitor the Redis primary (host:port,host:port,...). The primary is asked
    /// of them all, verified with ROLE, and followed across failovers.
    #[arg(long, env = "ALLOT_REDIS_SENTINELS", value_delimiter = ',', num_args = 1..)]
    pub redis_sentinels: Vec<String>,

    /// The name the Sentinels monitor the primary under.
    #[arg(long, env = "ALLOT_REDIS_MASTER", default_value = "allot")]
    pub redis_master: String,
}

impl RedisArgs {
    /// The target these flags name; `None` when neither a URL nor Sentinels are given.
    pub fn target(&self) -> Option<RedisTarget> {
        match &self.redis_url {
            _ if !self.redis_sentinels.is_empty() => Some(RedisTarget::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: self.redis_master.clone(),
            }),
            Some(url) => Some(RedisTarget::Standalone { url: url.clone() }),
            None => None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags of `allot serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Without credentials (dev mode) only loopback addresses are allowed.
    #[arg(long, env = "ALLOT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where Redis is. Neither --redis-url nor --redis-sentinels: start and supervise a
    /// private redis-server with persistence (AOF, fsync every second) under --data-dir.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Replicas a change must reach (WAIT) before it is acknowledged; short of that the answer
    /// is 503 with the outcome unknown. Default: 1 with Sentinel, 0 with one Redis.
    #[arg(long, env = "ALLOT_ACK_REPLICAS", value_parser = clap::value_parser!(u32).range(0..=16))]
    pub ack_replicas: Option<u32>,

    /// How long one WAIT for the replicas may take, in milliseconds.
    #[arg(long, env = "ALLOT_ACK_TIMEOUT_MS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..=crate::store::ack::ACK_TIMEOUT_MS_MAX))]
    pub ack_timeout_ms: u64,

    /// Changes acknowledged by one WAIT at most (group commit); 1 waits once per change.
    #[arg(long, env = "ALLOT_ACK_BATCH_MAX", default_value_t = crate::store::ack::ACK_BATCH_MAX as u16,
          value_parser = clap::value_parser!(u16).range(1..=crate::store::ack::ACK_BATCH_MAX as i64))]
    pub ack_batch_max: u16,

    /// Connections that wait for replicas at once (group-commit lanes). Fewer lanes, bigger
    /// batches, fewer WAITs.
    #[arg(long, env = "ALLOT_ACK_LANES", default_value_t = crate::store::ack::ACK_LANES as u8,
          value_parser = clap::value_parser!(u8).range(1..=crate::store::ack::ACK_LANES_MAX as i64))]
    pub ack_lanes: u8,

    /// Where the private redis-server keeps its data (only without --redis-url).
    #[arg(long, env = "ALLOT_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Bearer token for admin endpoints (capacity changes) and for any /v1 call.
    #[arg(long, env = "ALLOT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Secret the edge signs requests with (HMAC-SHA256 over method, path, timestamp, body).
    #[arg(long, env = "ALLOT_EDGE_SECRET", hide_env_values = true)]
    pub edge_secret: Option<String>,

    /// Percentage of capacity at which a counter_almost_full event fires (1..=100).
    #[arg(long, env = "ALLOT_ALMOST_FULL_PERCENT", default_value_t = 90,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub almost_full_percent: u8,

    /// Events kept per site stream (approximate bound, XADD MAXLEN ~); older ones are trimmed.
    #[arg(long, env = "ALLOT_EVENTS_RETAINED", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    pub events_retained: u64,

    /// Seconds cancelled and expired reservations stay readable (at least the 25 h of
    /// idempotency records).
    #[arg(long, env = "ALLOT_FINISHED_RETENTION_SECONDS", default_value_t = 7 * 86_400,
          value_parser = clap::value_parser!(u64).range(90_000..=31_536_000))]
    pub finished_retention_seconds: u64,

    /// Concurrent reservations of one site placed in one script call, at most; 1 (the default)
    /// is one call per reservation. Batches form only when a site's calls are all busy. Worth
    /// turning on where Redis, not the coordinator, is the bottleneck (see BENCHMARKS.md).
    #[arg(long, env = "ALLOT_RESERVE_BATCH_MAX", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub reserve_batch_max: u16,

    /// Log format (the level comes from RUST_LOG, default info).
    #[arg(long, env = "ALLOT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// How changes are acknowledged, from the flags and the Redis mode.
    pub fn ack_settings(&self) -> crate::store::ack::AckSettings {
        let default_replicas = if self.redis.redis_sentinels.is_empty() { 0 } else { 1 };
        crate::store::ack::AckSettings {
            replicas: self.ack_replicas.unwrap_or(default_replicas),
            timeout_ms: self.ack_timeout_ms,
            batch_max: usize::from(self.ack_batch_max),
            lanes: usize::from(self.ack_lanes),
        }
    }

    /// The store tunables from the flags.
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            almost_full_percent: self.almost_full_percent,
            events_retained_max: self.events_retained,
            finished_retention_seconds: self.finished_retention_seconds,
        }
    }
}
