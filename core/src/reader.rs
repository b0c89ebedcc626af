//! `allot events`: reads a site's stream straight from Redis and prints one JSON object per
//! line, as a dashboard or an integration job would. With `--group`, it reads through a consumer
//! group and acknowledges each entry after printing it, so each entry is processed once by the
//! group even across restarts.

use std::io::Write;
use std::time::Duration;

use allot_shared::SiteId;
use anyhow::Context;
use serde_json::{Value, json};

use crate::events::{EntryId, READ_COUNT_MAX, StreamEvent, parse_entries};
use crate::shutdown::Shutdown;
use crate::store::events_key;

/// How long one blocking read waits in `--follow` mode.
const FOLLOW_BLOCK_MS: u64 = 5_000;

/// What to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The site.
    pub site: SiteId,
    /// Keep waiting for new events.
    pub follow: bool,
    /// Start after this id (`0`: from the oldest retained); default: from the oldest retained,
    /// or, with `--follow` and no `--after`, only new events.
    pub after: Option<String>,
    /// Consumer group to read through (created if missing, at `--after` or the start).
    pub group: Option<String>,
    /// This consumer's name within the group.
    pub consumer: String,
}

fn line(event: &StreamEvent) -> Value {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::String(event.data.clone()));
    json!({ "id": event.id, "type": event.kind, "data": data })
}

fn print(out: &mut impl Write, event: &StreamEvent) -> anyhow::Result<()> {
    writeln!(out, "{}", line(event))?;
    Ok(())
}

type Entries = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;

/// Reads until done (or, with `follow`, until `shutdown`). Returns how many events it printed.
pub async fn run(redis_url: &str, options: ReadOptions, mut shutdown: Shutdown) -> anyhow::Result<u64> {
    let client = redis::Client::open(redis_url).context("redis url")?;
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_millis(FOLLOW_BLOCK_MS + 5_000)));
    let mut connection =
        client.get_multiplexed_async_connection_with_config(&config).await.context("connecting to redis")?;
    let key = events_key(&options.site);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    if let Some(group) = &options.group {
        let start = options.after.clone().unwrap_or_else(|| "0".to_owned());
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(group)
            .arg(&start)
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        if let Err(error) = created
            && error.code() != Some("BUSYGROUP")
        {
            return Err(error).context("creating the consumer group");
        }
        // First this consumer's entries read but never acknowledged (a crash between print and
        // XACK), then new ones.
        let mut cursor = "0".to_owned();
        loop {
            let block = options.follow && cursor == ">";
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP").arg(group).arg(&options.consumer).arg("COUNT").arg(READ_COUNT_MAX);
            if block {
                read.arg("BLOCK").arg(FOLLOW_BLOCK_MS);
            }
            read.arg("STREAMS").arg(&key).arg(&cursor);
            let reply: Entries = tokio::select! {
                _ = shutdown.wait() => break,
                reply = read.query_async(&mut connection) => reply.context("XREADGROUP")?,
            };
            let events: Vec<StreamEvent> =
                reply.unwrap_or_default().into_iter().flat_map(|(_, e)| parse_entries(e)).collect();
            if events.is_empty() {
                if cursor != ">" {
                    cursor = ">".to_owned();
                    continue;
                }
                if !options.follow {
                    break;
                }
                continue;
            }
            for event in &events {
                print(&mut out, event)?;
                out.flush()?;
                let _: i64 =
                    redis::cmd("XACK").arg(&key).arg(group).arg(&event.id).query_async(&mut connection).await?;
                printed += 1;
            }
            if cursor != ">" {
                cursor = events.last().map(|e| e.id.clone()).unwrap_or(cursor);
            }
        }
        return Ok(printed);
    }
    let mut after = match (&options.after, options.follow) {
        (Some(after), _) => {
            EntryId::parse(after).context("--after must be a stream id such as 1700000000000-0, or 0")?
        }
        (None, false) => EntryId(0, 0),
        (None, true) => crate::events::position(&mut connection, &options.site).await?.last,
    };
    loop {
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT").arg(READ_COUNT_MAX);
        if options.follow {
            read.arg("BLOCK").arg(FOLLOW_BLOCK_MS);
        }
        read.arg("STREAMS").arg(&key).arg(after.to_string());
        let reply: Entries = tokio::select! {
            _ = shutdown.wait() => break,
            reply = read.query_async(&mut connection) => reply.context("XREAD")?,
        };
        let events: Vec<StreamEvent> =
            reply.unwrap_or_default().into_iter().flat_map(|(_, e)| parse_entries(e)).collect();
        for event in &events {
            print(&mut out, event)?;
            printed += 1;
            after = EntryId::parse(&event.id).unwrap_or(after);
        }
        out.flush()?;
        if events.is_empty() && !options.follow {
            break;
        }
    }
    Ok(printed)
}
