//! Baselines the coordinator is compared with, run against the same Redis in the same run.
//!
//! `watch-multi`: the reservation done the way many teams start, with optimistic concurrency:
//! WATCH the counter, read capacity and used, check, then MULTI/EXEC the increment, the
//! reservation record and the event; retry when EXEC aborts because another client changed the
//! counter first. Each transaction needs a connection of its own (WATCH is per connection).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Mutex;

use crate::load::Ended;

/// Retries of one reservation whose EXEC was aborted by a concurrent change.
pub const WATCH_RETRIES_MAX: u32 = 1_000;

const COUNTER_KEY: &str = "bench-watch:{hot}:counter";
const EVENTS_KEY: &str = "bench-watch:{hot}:events";

/// A pool of dedicated connections, one per concurrent transaction.
#[derive(Clone)]
pub struct WatchMulti {
    pool: Arc<Mutex<Vec<redis::aio::MultiplexedConnection>>>,
}

impl WatchMulti {
    /// Opens `connections` connections and sets the counter's capacity.
    pub async fn new(redis_url: &str, connections: usize, capacity: u64) -> anyhow::Result<Self> {
        let client = redis::Client::open(redis_url)?;
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections {
            pool.push(client.get_multiplexed_async_connection().await.context("watch-multi connection")?);
        }
        let mut first = pool[0].clone();
        let _: () = redis::cmd("DEL").arg(COUNTER_KEY).arg(EVENTS_KEY).query_async(&mut first).await?;
        let _: () = redis::cmd("HSET")
            .arg(COUNTER_KEY)
            .arg("capacity")
            .arg(capacity)
            .arg("used")
            .arg(0)
            .query_async(&mut first)
            .await?;
        Ok(Self { pool: Arc::new(Mutex::new(pool)) })
    }

    /// One reservation of one unit.
    pub async fn reserve(&self, sequence: u64) -> Ended {
        let Some(mut connection) = self.pool.lock().await.pop() else { return Ended::Error };
        let ended = attempt(&mut connection, sequence).await.unwrap_or(Ended::Error);
        self.pool.lock().await.push(connection);
        ended
    }

    /// The counter's `used` and the number of reservation events, for the no-oversell check.
    pub async fn totals(&self) -> anyhow::Result<(u64, u64, u64)> {
        let mut connection = self.pool.lock().await.first().cloned().context("pool")?;
        let (capacity, used): (u64, u64) =
            redis::cmd("HMGET").arg(COUNTER_KEY).arg("capacity").arg("used").query_async(&mut connection).await?;
        let events: u64 = redis::cmd("XLEN").arg(EVENTS_KEY).query_async(&mut connection).await?;
        Ok((capacity, used, events))
    }
}

async fn attempt(connection: &mut redis::aio::MultiplexedConnection, sequence: u64) -> anyhow::Result<Ended> {
    for _ in 0..WATCH_RETRIES_MAX {
        let _: () = redis::cmd("WATCH").arg(COUNTER_KEY).query_async(connection).await?;
        let (capacity, used): (u64, u64) =
            redis::cmd("HMGET").arg(COUNTER_KEY).arg("capacity").arg("used").query_async(connection).await?;
        if used + 1 > capacity {
            let _: () = redis::cmd("UNWATCH").query_async(connection).await?;
            return Ok(Ended::Refused);
        }
        let committed: Option<()> = redis::pipe()
            .atomic()
            .cmd("HINCRBY")
            .arg(COUNTER_KEY)
            .arg("used")
            .arg(1)
            .ignore()
            .cmd("HSET")
            .arg(format!("bench-watch:{{hot}}:res:{sequence}"))
            .arg("status")
            .arg("confirmed")
            .ignore()
            .cmd("XADD")
            .arg(EVENTS_KEY)
            .arg("*")
            .arg("type")
            .arg("reservation_placed")
            .ignore()
            .query_async(connection)
            .await?;
        if committed.is_some() {
            return Ok(Ended::Ok);
        }
    }
    Ok(Ended::Error)
}

/// `minimal-script`: the least a strict counter can do in Redis, as the floor of what a
/// reservation costs there: one script that checks and increments one counter and appends one
/// event, over one multiplexed connection (as raw-script). No idempotency, no reservation
/// record, no holds.
#[derive(Clone)]
pub struct MinimalScript {
    connection: redis::aio::MultiplexedConnection,
    script: Arc<redis::Script>,
}

const MINIMAL_COUNTER_KEY: &str = "bench-minimal:{one}:counter";
const MINIMAL_EVENTS_KEY: &str = "bench-minimal:{one}:events";
const MINIMAL_SCRIPT: &str = r"
local used = redis.call('HINCRBY', KEYS[1], 'used', 1)
if used > tonumber(redis.call('HGET', KEYS[1], 'capacity')) then
  redis.call('HINCRBY', KEYS[1], 'used', -1)
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'type', 'reservation_placed', 'id', ARGV[1])
return 1
";

impl MinimalScript {
    /// Connects and sets the counter's capacity.
    pub async fn new(redis_url: &str, capacity: u64) -> anyhow::Result<Self> {
        let client = redis::Client::open(redis_url)?;
        let mut connection = client.get_multiplexed_async_connection().await.context("minimal-script connection")?;
        let _: () =
            redis::cmd("DEL").arg(MINIMAL_COUNTER_KEY).arg(MINIMAL_EVENTS_KEY).query_async(&mut connection).await?;
        let _: () = redis::cmd("HSET")
            .arg(MINIMAL_COUNTER_KEY)
            .arg("capacity")
            .arg(capacity)
            .arg("used")
            .arg(0)
            .query_async(&mut connection)
            .await?;
        Ok(Self { connection, script: Arc::new(redis::Script::new(MINIMAL_SCRIPT)) })
    }

    /// One reservation of one unit.
    pub async fn reserve(&self, sequence: u64) -> Ended {
        let mut connection = self.connection.clone();
        let placed: Result<u64, _> = self
            .script
            .key(MINIMAL_COUNTER_KEY)
            .key(MINIMAL_EVENTS_KEY)
            .arg(sequence)
            .invoke_async(&mut connection)
            .await;
        match placed {
            Ok(1) => Ended::Ok,
            Ok(_) => Ended::Refused,
            Err(_) => Ended::Error,
        }
    }

    /// The counter's `used` and its events, for the no-oversell check.
    pub async fn totals(&self) -> anyhow::Result<(u64, u64, u64)> {
        let mut connection = self.connection.clone();
        let (capacity, used): (u64, u64) = redis::cmd("HMGET")
            .arg(MINIMAL_COUNTER_KEY)
            .arg("capacity")
            .arg("used")
            .query_async(&mut connection)
            .await?;
        // The stream is trimmed: count what was ever added (XINFO STREAM, Redis 7).
        let info: Vec<redis::Value> =
            redis::cmd("XINFO").arg("STREAM").arg(MINIMAL_EVENTS_KEY).query_async(&mut connection).await?;
        let events = info
            .chunks(2)
            .find(|pair| matches!(&pair[0], redis::Value::BulkString(name) if name == b"entries-added"))
            .and_then(|pair| match pair.get(1) {
                Some(redis::Value::Int(n)) => u64::try_from(*n).ok(),
                _ => None,
            })
            .context("XINFO STREAM entries-added")?;
        Ok((capacity, used, events))
    }
}
