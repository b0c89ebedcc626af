//! The stream commands: every XINFO, XRANGE, XREAD, XREADGROUP, XGROUP and XACK of Allot, for
//! the event hub, the SSE endpoints and `allot events`. Reading never changes state.

use allot_shared::{SiteId, StreamId};
use redis::Value;
use redis::aio::ConnectionLike;

use super::{StoreError, keys};

/// One entry of a site's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// The stream entry id, the SSE `id:`.
    pub id: StreamId,
    /// The event type, the SSE `event:`.
    pub kind: String,
    /// The JSON `data` as written by the function.
    pub data: String,
}

/// Where a site's stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition {
    /// The id of the latest entry ever added (`0-0` if none).
    pub last: StreamId,
    /// The id of the latest entry removed with XDEL (`0-0` if none).
    pub max_deleted: StreamId,
    /// The oldest retained entry's id (`0-0` if none).
    pub first: StreamId,
    /// Whether trimming has removed entries (all older than `first`).
    pub trimmed: bool,
}

impl StreamPosition {
    /// Whether a client that has seen everything up to `after` cannot simply resume: entries
    /// after it may be gone (trimmed or deleted), or it claims to be ahead of the stream (Redis
    /// lost writes it had seen: restored from an older file, or a failover discarded them).
    /// `0` asks for "everything retained" and never needs to.
    pub fn lost_after(&self, after: StreamId) -> bool {
        !after.is_zero() && (after < self.max_deleted || (self.trimmed && after < self.first) || after > self.last)
    }
}

/// What XRANGE and each stream of XREAD answer: (id, field-value pairs).
type Entries = Vec<(String, Vec<(String, String)>)>;

/// Reads a site's stream position with XINFO STREAM (Redis 7 reports trimmed ids).
pub async fn position(connection: &mut impl ConnectionLike, site: &SiteId) -> Result<StreamPosition, StoreError> {
    let reply: Result<Value, redis::RedisError> =
        redis::cmd("XINFO").arg("STREAM").arg(keys::events(site)).query_async(connection).await;
    let zero = StreamId::ZERO;
    let value = match reply {
        Ok(value) => value,
        // No stream yet: nothing was ever written.
        Err(error) if error.code() == Some("ERR") && error.to_string().contains("no such key") => {
            return Ok(StreamPosition { last: zero, max_deleted: zero, first: zero, trimmed: false });
        }
        Err(error) => return Err(error.into()),
    };
    let fields: Vec<(String, Value)> = match value {
        Value::Map(pairs) => {
            pairs.into_iter().filter_map(|(k, v)| redis::from_redis_value::<String>(k).ok().map(|k| (k, v))).collect()
        }
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => redis::from_redis_value_ref::<String>(k).ok().map(|k| (k, v.clone())),
                _ => None,
            })
            .collect(),
        other => return Err(StoreError::Corrupt(format!("XINFO STREAM: {other:?}"))),
    };
    let id_field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| redis::from_redis_value_ref::<String>(v).ok())
            .and_then(|s| StreamId::parse(&s).ok())
            .unwrap_or(zero)
    };
    let number = |name: &str| {
        fields.iter().find(|(k, _)| k == name).and_then(|(_, v)| redis::from_redis_value_ref::<u64>(v).ok())
    };
    let trimmed = match (number("entries-added"), number("length")) {
        (Some(added), Some(length)) => added > length,
        _ => false,
    };
    Ok(StreamPosition {
        last: id_field("last-generated-id"),
        max_deleted: id_field("max-deleted-entry-id"),
        first: id_field("recorded-first-entry-id"),
        trimmed,
    })
}

/// Parses XRANGE / XREAD entries into events.
fn parse_entries(entries: Entries) -> Result<Vec<StreamEvent>, StoreError> {
    entries
        .into_iter()
        .map(|(id, fields)| {
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
            let id = StreamId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(StreamEvent { id, kind: field("type"), data: field("data") })
        })
        .collect()
}

/// Runs an XREAD or XREADGROUP of one stream and parses its entries (none: an empty list).
async fn read_streams(
    connection: &mut impl ConnectionLike,
    command: &redis::Cmd,
) -> Result<Vec<StreamEvent>, StoreError> {
    let reply: Option<Vec<(String, Entries)>> = command.query_async(connection).await?;
    let mut events = Vec::new();
    for (_, entries) in reply.unwrap_or_default() {
        events.extend(parse_entries(entries)?);
    }
    Ok(events)
}

/// Up to `count` entries after `after` (exclusive), oldest first.
pub async fn history(
    connection: &mut impl ConnectionLike,
    site: &SiteId,
    after: StreamId,
    count: usize,
) -> Result<Vec<StreamEvent>, StoreError> {
    let entries: Entries = redis::cmd("XRANGE")
        .arg(keys::events(site))
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(connection)
        .await?;
    parse_entries(entries)
}

/// Up to `count` entries after `after`, waiting up to `block_ms` for one to arrive when
/// `block_ms` is set (on a connection of its own: a blocking read stalls the connection).
pub async fn read(
    connection: &mut impl ConnectionLike,
    site: &SiteId,
    after: StreamId,
    count: usize,
    block_ms: Option<u64>,
) -> Result<Vec<StreamEvent>, StoreError> {
    let mut command = redis::cmd("XREAD");
    command.arg("COUNT").arg(count);
    if let Some(block_ms) = block_ms {
        command.arg("BLOCK").arg(block_ms);
    }
    command.arg("STREAMS").arg(keys::events(site)).arg(after.to_string());
    read_streams(connection, &command).await
}

/// Creates consumer group `group` on the site's stream starting after `start` (and the stream
/// if missing); an existing group is left as it is.
pub async fn create_group(
    connection: &mut impl ConnectionLike,
    site: &SiteId,
    group: &str,
    start: StreamId,
) -> Result<(), StoreError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::events(site))
        .arg(group)
        .arg(start.to_string())
        .arg("MKSTREAM")
        .query_async(connection)
        .await;
    match created {
        Err(error) if error.code() != Some("BUSYGROUP") => Err(error.into()),
        _ => Ok(()),
    }
}

/// Which entries a group read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCursor {
    /// This consumer's entries read but never acknowledged, after this id.
    Pending(StreamId),
    /// Entries never delivered to the group.
    New,
}

/// Up to `count` entries through consumer group `group` as `consumer`.
pub async fn read_group(
    connection: &mut impl ConnectionLike,
    site: &SiteId,
    group: &str,
    consumer: &str,
    cursor: GroupCursor,
    count: usize,
    block_ms: Option<u64>,
) -> Result<Vec<StreamEvent>, StoreError> {
    let mut command = redis::cmd("XREADGROUP");
    command.arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(count);
    if let Some(block_ms) = block_ms {
        command.arg("BLOCK").arg(block_ms);
    }
    command.arg("STREAMS").arg(keys::events(site));
    match cursor {
        GroupCursor::Pending(after) => command.arg(after.to_string()),
        GroupCursor::New => command.arg(">"),
    };
    read_streams(connection, &command).await
}

/// Acknowledges one entry for `group`.
pub async fn ack(
    connection: &mut impl ConnectionLike,
    site: &SiteId,
    group: &str,
    id: StreamId,
) -> Result<(), StoreError> {
    let _: i64 =
        redis::cmd("XACK").arg(keys::events(site)).arg(group).arg(id.to_string()).query_async(connection).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_point_before_trimmed_entries_is_lost() {
        let id = StreamId::new;
        let position = StreamPosition { last: id(50, 0), max_deleted: id(0, 0), first: id(40, 0), trimmed: true };
        assert!(position.lost_after(id(10, 0)));
        assert!(!position.lost_after(id(40, 0)));
        assert!(!position.lost_after(id(0, 0)), "0 asks for what is retained");
        let untrimmed = StreamPosition { trimmed: false, ..position };
        assert!(!untrimmed.lost_after(id(10, 0)));
        let deleted = StreamPosition { max_deleted: id(45, 0), ..untrimmed };
        assert!(deleted.lost_after(id(44, 0)));
        assert!(untrimmed.lost_after(id(51, 0)), "ahead of the stream");
        assert!(!untrimmed.lost_after(id(50, 0)));
    }
}
