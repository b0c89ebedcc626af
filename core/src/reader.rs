//! `allot events`: reads a site's stream straight from Redis and prints one JSON object per
//! line, as a dashboard or an integration job would. With `--group`, it reads through a consumer
//! group and acknowledges each entry after printing it, so each entry is processed once by the
//! group even across restarts.

use std::io::Write;
use std::time::Duration;

use allot_shared::{SiteId, StreamId};
use anyhow::Context;
use serde_json::{Value, json};

use crate::events::READ_COUNT_MAX;
use crate::shutdown::Shutdown;
use crate::store::connection::{Connector, RedisTarget};
use crate::store::streams::{self, GroupCursor, StreamEvent};

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
    pub after: Option<StreamId>,
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

/// Reads until done (or, with `follow`, until `shutdown`). Returns how many events it printed.
pub async fn run(target: &RedisTarget, options: ReadOptions, mut shutdown: Shutdown) -> anyhow::Result<u64> {
    let connector = Connector::new(target)?;
    let (_, mut connection) =
        connector.open(Some(Duration::from_millis(FOLLOW_BLOCK_MS + 5_000))).await.context("connecting to redis")?;
    let site = &options.site;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    let block = options.follow.then_some(FOLLOW_BLOCK_MS);
    if let Some(group) = &options.group {
        streams::create_group(&mut connection, site, group, options.after.unwrap_or(StreamId::ZERO))
            .await
            .context("creating the consumer group")?;
        // First this consumer's entries read but never acknowledged (a crash between print and
        // XACK), then new ones.
        let mut cursor = GroupCursor::Pending(StreamId::ZERO);
        loop {
            let wait = if cursor == GroupCursor::New { block } else { None };
            let read =
                streams::read_group(&mut connection, site, group, &options.consumer, cursor, READ_COUNT_MAX, wait);
            let events = tokio::select! {
                _ = shutdown.wait() => break,
                events = read => events.context("XREADGROUP")?,
            };
            if events.is_empty() {
                if cursor != GroupCursor::New {
                    cursor = GroupCursor::New;
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
                streams::ack(&mut connection, site, group, event.id).await.context("XACK")?;
                printed += 1;
            }
            if let (GroupCursor::Pending(_), Some(last)) = (cursor, events.last()) {
                cursor = GroupCursor::Pending(last.id);
            }
        }
        return Ok(printed);
    }
    let mut after = match (options.after, options.follow) {
        (Some(after), _) => after,
        (None, false) => StreamId::ZERO,
        (None, true) => streams::position(&mut connection, site).await?.last,
    };
    loop {
        let read = streams::read(&mut connection, site, after, READ_COUNT_MAX, block);
        let events = tokio::select! {
            _ = shutdown.wait() => break,
            events = read => events.context("XREAD")?,
        };
        for event in &events {
            print(&mut out, event)?;
            printed += 1;
            after = event.id;
        }
        out.flush()?;
        if events.is_empty() && !options.follow {
            break;
        }
    }
    Ok(printed)
}
