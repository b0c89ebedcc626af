//! `allot events`: reads a site's stream straight from Redis and prints one JSON object per
//! line, as a dashboard or an integration job would. With `--group`, it reads through a consumer
//! group and acknowledges each entry after printing it, so the group processes each entry at
//! least once, across restarts too: an entry printed but not acknowledged before a crash or a
//! lost connection is printed again first.

use std::io::Write;
use std::time::Duration;

use allot_shared::{SiteId, StreamId};
use anyhow::Context;
use serde_json::{Value, json};

use crate::events::READ_COUNT_MAX;
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use crate::store::connection::{Connector, RedisTarget};
use crate::store::streams::{self, GroupCursor, StreamEvent};

/// How long one blocking read waits in `--follow` mode.
const FOLLOW_BLOCK_MS: u64 = 5_000;
/// How long `--follow` waits before connecting again after a lost connection.
const RECONNECT_PAUSE_MS: u64 = 500;

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
///
/// With `follow`, a lost connection (a failover, a restart: Redis unavailable) is not the
/// end: the reader reconnects (through the Sentinels, to the new primary) every
/// [`RECONNECT_PAUSE_MS`] until it can go on. A group reader then re-reads its own pending
/// entries first (so an entry printed just before the loss may be printed again: at least
/// once); a plain reader goes on after the last id it printed (or the position it started
/// from) and says so on stderr if the new primary lacks entries it had already printed (a
/// failover discarded them). Any other error (stdout closed, a wrong key type, a bad group)
/// ends the reader with it.
pub async fn run(target: &RedisTarget, options: ReadOptions, mut shutdown: Shutdown) -> anyhow::Result<u64> {
    let connector = Connector::new(target)?;
    let mut printed = 0u64;
    let mut after = None;
    loop {
        let read = read_once(&connector, &options, &mut after, &mut printed, shutdown.clone());
        let result = tokio::select! {
            _ = shutdown.wait() => return Ok(printed),
            result = read => result,
        };
        match result {
            Ok(()) => return Ok(printed),
            Err(error) if options.follow && is_unavailable(&error) => {
                tracing::warn!(error = format!("{error:#}"), "reading the stream failed; reconnecting");
                tokio::select! {
                    _ = shutdown.wait() => return Ok(printed),
                    _ = tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)) => {}
                }
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether `error` says Redis is unavailable for now (worth reconnecting), not that the
/// reader cannot go on.
fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| matches!(cause.downcast_ref::<StoreError>(), Some(StoreError::Unavailable(_))))
}

/// One connection's worth of reading. `after`: the last id printed by the plain reader (kept
/// across reconnections).
async fn read_once(
    connector: &Connector,
    options: &ReadOptions,
    after: &mut Option<StreamId>,
    printed: &mut u64,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let (_, mut connection) =
        connector.open(Some(Duration::from_millis(FOLLOW_BLOCK_MS + 5_000))).await.context("connecting to redis")?;
    let site = &options.site;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
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
                _ = shutdown.wait() => return Ok(()),
                events = read => events.context("XREADGROUP")?,
            };
            if events.is_empty() {
                if cursor != GroupCursor::New {
                    cursor = GroupCursor::New;
                    continue;
                }
                if !options.follow {
                    return Ok(());
                }
                continue;
            }
            for event in &events {
                print(&mut out, event)?;
                out.flush()?;
                streams::ack(&mut connection, site, group, event.id).await.context("XACK")?;
                *printed += 1;
            }
            if let (GroupCursor::Pending(_), Some(last)) = (cursor, events.last()) {
                cursor = GroupCursor::Pending(last.id);
            }
        }
    }
    let position = streams::position(&mut connection, site).await?;
    let mut from = match (*after, options.after, options.follow) {
        (Some(printed), _, _) => {
            if printed > position.last {
                tracing::warn!(
                    printed = %printed,
                    last = %position.last,
                    "the primary lacks events this reader printed: a failover discarded them"
                );
            }
            printed.min(position.last)
        }
        (None, Some(after), _) => after,
        (None, None, false) => StreamId::ZERO,
        (None, None, true) => position.last,
    };
    // Where a reconnection resumes, even if nothing is printed before the connection is lost.
    *after = Some(from);
    loop {
        let read = streams::read(&mut connection, site, from, READ_COUNT_MAX, block);
        let events = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            events = read => events.context("XREAD")?,
        };
        for event in &events {
            print(&mut out, event)?;
            *printed += 1;
            from = event.id;
            *after = Some(from);
        }
        out.flush()?;
        if events.is_empty() && !options.follow {
            return Ok(());
        }
    }
}
