//! A site's availability view kept current from the coordinator's event stream: parsing
//! server-sent events, and applying domain events to the view in stream order. Plain Rust,
//! tested natively; the Durable Object in `worker` drives it.

use allot_shared::{Availability, Counter, EventData, StreamId};

/// Longest SSE block the parser accepts before it gives up on the connection (a capacity event
/// with 10,000 counters is about 700 KB).
pub const SSE_BLOCK_BYTES_MAX: usize = 2 * 1024 * 1024;

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`.
    pub id: Option<String>,
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:` lines joined with newlines.
    pub data: String,
}

/// Incremental SSE parser: feed it chunks as they arrive, take whole events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: String,
}

/// The stream sent something that is not SSE within our bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseTooLarge;

impl SseParser {
    /// Adds a chunk and returns the events it completed (comments and empty blocks skipped).
    pub fn feed(&mut self, chunk: &str) -> Result<Vec<SseEvent>, SseTooLarge> {
        self.buffer.push_str(&chunk.replace("\r\n", "\n"));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent { event: "message".into(), ..SseEvent::default() };
            let mut fields = 0;
            for line in block.lines() {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match name {
                    "id" => event.id = Some(value.to_owned()),
                    "event" => event.event = value.to_owned(),
                    "data" => {
                        if fields > 0 && !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                    }
                    _ => continue, // comments (heartbeats) and unknown fields
                }
                fields += 1;
            }
            if fields > 0 {
                events.push(event);
            }
        }
        if self.buffer.len() > SSE_BLOCK_BYTES_MAX {
            return Err(SseTooLarge);
        }
        Ok(events)
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The view moved to this event's version; these counters changed.
    Changed(Vec<Counter>),
    /// The event is at or before the view's version: already applied.
    AlreadySeen,
    /// The event cannot be applied (no id, unreadable data): reload the snapshot.
    Unreadable,
}

/// Applies one domain event of type `kind` to the view, if it is newer than the view's version.
/// Only `capacity_changed` carries allow-lists; other events keep the counters' zones.
pub fn apply(view: &mut Availability, id: &str, kind: &str, data: &str) -> Applied {
    let Ok(event_id) = StreamId::parse(id) else {
        return Applied::Unreadable;
    };
    if event_id <= view.version {
        return Applied::AlreadySeen;
    }
    let Ok(data) = serde_json::from_str::<EventData>(data) else {
        return Applied::Unreadable;
    };
    let sets_zones = kind == "capacity_changed";
    let mut changed = Vec::with_capacity(data.counters.len());
    for counter in data.counters {
        let updated = Counter {
            remaining: counter.capacity.saturating_sub(counter.used),
            resource: counter.resource,
            slot: counter.slot,
            capacity: counter.capacity,
            used: counter.used,
            zones: None,
        };
        let key = (&updated.resource, &updated.slot);
        match view.counters.binary_search_by(|c| (&c.resource, &c.slot).cmp(&key)) {
            Ok(at) => {
                let zones = if sets_zones { counter.zones } else { view.counters[at].zones.take() };
                view.counters[at] = Counter { zones, ..updated.clone() };
            }
            Err(at) => view.counters.insert(at, Counter { zones: counter.zones, ..updated.clone() }),
        }
        changed.push(updated);
    }
    view.version = event_id;
    Applied::Changed(changed)
}

/// The SSE bytes of one browser-facing availability change: counters only (`changed` never
/// carries zones).
pub fn availability_event(site: &str, id: &str, counters: &[Counter]) -> String {
    let body = serde_json::json!({ "site": site, "version": id, "counters": counters });
    format!("id: {id}\nevent: availability\ndata: {body}\n\n")
}

/// The SSE bytes of a snapshot of the view.
pub fn snapshot_event(view: &Availability) -> String {
    let body = serde_json::to_string(view).unwrap_or_default();
    format!("id: {}\nevent: snapshot\ndata: {body}\n\n", view.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use allot_shared::{ResourceId, SiteId, Slot, StreamId};

    fn view() -> Availability {
        Availability {
            site: SiteId::parse("hub").expect("id"),
            version: StreamId::new(100, 0),
            counters: vec![Counter {
                resource: ResourceId::parse("vans").expect("id"),
                slot: Slot::parse("s2").expect("slot"),
                capacity: 5,
                used: 1,
                remaining: 4,
                zones: Some(vec![allot_shared::ZoneId::parse("north").expect("zone")]),
            }],
        }
    }

    #[test]
    fn sse_is_parsed_across_chunk_boundaries() {
        let mut parser = SseParser::default();
        assert_eq!(parser.feed("id: 1-0\nevent: counter_full\nda").expect("ok"), vec![]);
        let events = parser.feed("ta: {\"a\":1}\n\n: heartbeat\n\nid: 2-0\ndata: x\r\n\r\n").expect("ok");
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            SseEvent { id: Some("1-0".into()), event: "counter_full".into(), data: "{\"a\":1}".into() }
        );
        assert_eq!(events[1].event, "message");
        assert!(SseParser::default().feed(&"x".repeat(SSE_BLOCK_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn events_apply_in_order_once() {
        let mut v = view();
        let data = r#"{"counters":[{"resource":"vans","slot":"s2","capacity":5,"used":5},{"resource":"vans","slot":"s1","capacity":2,"used":0}]}"#;
        assert!(matches!(apply(&mut v, "101-0", "reservation_placed", data), Applied::Changed(ref c) if c.len() == 2));
        assert_eq!(v.version, StreamId::new(101, 0));
        assert_eq!(v.counters.len(), 2);
        assert_eq!(v.counters[0].slot.as_str(), "s1", "new counters keep the (resource, slot) order");
        assert_eq!(v.counters[1].remaining, 0);
        assert!(v.counters[1].zones.is_some(), "zones are kept from the snapshot");
        assert_eq!(apply(&mut v, "101-0", "reservation_placed", data), Applied::AlreadySeen);
        assert_eq!(apply(&mut v, "99-5", "reservation_placed", data), Applied::AlreadySeen);
        assert_eq!(apply(&mut v, "102-0", "reservation_placed", "not json"), Applied::Unreadable);
        assert_eq!(v.version, StreamId::new(101, 0), "a failed apply leaves the version");
        assert!(
            matches!(apply(&mut v, "1000-0", "reservation_placed", data), Applied::Changed(_)),
            "numeric, not lexicographic order"
        );
        // capacity_changed sets allow-lists exactly: here it lifts s2's restriction, adds one to s1.
        let capacity = r#"{"counters":[{"resource":"vans","slot":"s2","capacity":6,"used":5},{"resource":"vans","slot":"s1","capacity":2,"used":0,"zones":["east"]}]}"#;
        assert!(matches!(apply(&mut v, "1001-0", "capacity_changed", capacity), Applied::Changed(_)));
        assert_eq!(v.counters[1].zones, None);
        assert_eq!(v.counters[0].zones.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn browser_events_carry_only_counters() {
        let v = view();
        let text = availability_event("hub", "7-0", &v.counters);
        assert!(text.starts_with("id: 7-0\nevent: availability\ndata: {"));
        assert!(text.ends_with("\n\n"));
        assert!(snapshot_event(&v).contains("\"version\":\"100-0\""));
    }
}
