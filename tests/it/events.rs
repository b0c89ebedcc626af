//! The event stream: SSE from the coordinator (order, resumption, trimming, the browsers'
//! availability stream), and `allot events` reading Redis directly.

use std::time::Duration;

use allot_core::store::StoreSettings;
use serde_json::Value;

use crate::common::{Api, TestCoordinator, TestRedis, allot_binary, events, one_item};

const SLOT: &str = "2026-12-01T10:00Z";
/// Longest wait for one SSE event in these tests.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone, Default)]
pub struct Sse {
    /// `id:`.
    pub id: Option<String>,
    /// `event:`.
    pub event: String,
    /// `data:`.
    pub data: String,
}

/// A reader of an SSE response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Opens `url` with optional extra headers; panics unless it answers 200 text/event-stream.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = crate::common::client().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("SSE request");
        assert_eq!(response.status(), 200, "{url}");
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Self { response, buffer: String::new() }
    }

    /// The next event (comments skipped); `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse { event: "message".into(), ..Sse::default() };
                let mut has_field = false;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim_start().to_owned());
                        has_field = true;
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = value.trim_start().to_owned();
                        has_field = true;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(value.trim_start());
                        has_field = true;
                    }
                }
                if has_field {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(EVENT_TIMEOUT, self.response.chunk())
                .await
                .expect("an SSE event within the timeout")
                .expect("SSE body")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next `count` events.
    pub async fn take(&mut self, count: usize) -> Vec<Sse> {
        let mut taken = Vec::with_capacity(count);
        for _ in 0..count {
            taken.push(self.next().await.expect("the stream stays open"));
        }
        taken
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_and_resume_after_the_last_id() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("sse", &[("vans", SLOT, 2)]).await;
    api.reserve("sse", &one_item("vans", SLOT, 1), None).await;
    let url = format!("{}/v1/sites/sse/events", coordinator.base);

    // ?after=0 replays everything retained, then stays open for new events.
    let mut all = SseReader::open(&format!("{url}?after=0"), &[]).await;
    let replayed = all.take(2).await;
    let kinds: Vec<&str> = replayed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["capacity_changed", "reservation_placed"]);
    // Without a resume point: only what happens from now on.
    let mut fresh = SseReader::open(&url, &[]).await;
    api.reserve("sse", &one_item("vans", SLOT, 1), None).await;
    let live = all.take(2).await;
    assert_eq!(live.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["reservation_placed", "counter_full"]);
    let first_fresh = fresh.next().await.expect("event");
    assert_eq!(first_fresh.event, "reservation_placed");
    assert_eq!(first_fresh.id, live[0].id);

    // Ids are the stream's, in order, and the data is the stream's data.
    let stored = events(&redis, "sse");
    let ids: Vec<String> = replayed.iter().chain(&live).filter_map(|e| e.id.clone()).collect();
    assert_eq!(ids, stored.iter().map(|(id, _, _)| id.clone()).collect::<Vec<_>>());
    let data: Value = serde_json::from_str(&live[0].data).expect("json");
    assert_eq!(data["counters"][0]["used"], 2);

    // Resume after the second event with Last-Event-ID: exactly the rest, once.
    let mut resumed = SseReader::open(&url, &[("Last-Event-ID", replayed[1].id.as_deref().expect("id"))]).await;
    let rest = resumed.take(2).await;
    assert_eq!(
        rest.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        live.iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
    api.set_capacity("sse", &[("vans", SLOT, 3)]).await;
    let after = resumed.take(2).await;
    assert_eq!(after.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["capacity_changed", "counter_reopened"]);

    // A bad resume point is a 400 problem.
    let bad = crate::common::send(crate::common::client().get(format!("{url}?after=yesterday"))).await;
    assert_eq!((bad.status, bad.slug()), (400, "malformed-request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_resume_point_is_told_to_resync() {
    let redis = TestRedis::start();
    let settings = StoreSettings { events_retained_max: 10, ..StoreSettings::default() };
    let coordinator =
        TestCoordinator::start_with(&redis, allot_core::http::auth::Auth::new(None, None), settings).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("trim", &[("vans", SLOT, 1)]).await;
    let first = events(&redis, "trim")[0].0.clone();
    for capacity in 0..400 {
        api.set_capacity("trim", &[("vans", SLOT, 10 + capacity)]).await;
    }
    let retained = events(&redis, "trim");
    assert!(retained.len() < 400, "the stream was trimmed to about 10 entries ({} kept)", retained.len());
    let url = format!("{}/v1/sites/trim/events?after={first}", coordinator.base);
    let mut reader = SseReader::open(&url, &[]).await;
    let told = reader.next().await.expect("an event");
    assert_eq!(told.event, "resync");
    assert!(told.data.contains("trimmed"), "{}", told.data);
    assert!(reader.next().await.is_none(), "the stream ends after resync");
    // Resuming from a retained id works.
    let kept = &retained[retained.len() - 2].0;
    let mut reader = SseReader::open(&format!("{}/v1/sites/trim/events?after={kept}", coordinator.base), &[]).await;
    assert_eq!(reader.next().await.expect("event").id.as_deref(), Some(retained[retained.len() - 1].0.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_availability_stream_sends_a_snapshot_then_counters_only() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("browse", &[("vans", SLOT, 2), ("pickers", SLOT, 1)]).await;
    let mut stream = SseReader::open(&format!("{}/v1/sites/browse/availability/stream", coordinator.base), &[]).await;
    let snapshot = stream.next().await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    let body: Value = serde_json::from_str(&snapshot.data).expect("json");
    assert_eq!(body["counters"].as_array().map(Vec::len), Some(2));
    assert_eq!(Some(body["version"].as_str().unwrap_or_default()), snapshot.id.as_deref());

    let mut reservation = one_item("vans", SLOT, 2);
    reservation["customer"] = serde_json::json!("alice@example.com");
    let placed = api.reserve("browse", &reservation, None).await;
    let changes = stream.take(2).await; // the placement and the counter becoming full
    for change in &changes {
        assert_eq!(change.event, "availability");
        let body: Value = serde_json::from_str(&change.data).expect("json");
        assert_eq!(body["version"].as_str(), change.id.as_deref());
        assert_eq!(body["counters"][0]["remaining"], 0);
        assert!(!change.data.contains("alice"), "no customer data: {}", change.data);
        assert!(!change.data.contains(placed.body["id"].as_str().expect("id")), "no reservation ids");
        assert_eq!(body.as_object().map(|o| o.len()), Some(3), "site, version, counters: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_event_streams() {
    let redis = TestRedis::start();
    let mut coordinator = TestCoordinator::start(&redis).await;
    let mut stream = SseReader::open(&format!("{}/v1/sites/quiet/events", coordinator.base), &[]).await;
    let stopped = coordinator.shut_down();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the server stops")
        .expect("task")
        .expect("serve");
    assert!(stream.next().await.is_none(), "the stream was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allot_events_prints_the_stream_and_a_group_reads_each_event_once() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("cli", &[("vans", SLOT, 1)]).await;
    api.reserve("cli", &one_item("vans", SLOT, 1), None).await;
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(allot_binary())
            .args(["events", "cli", "--redis-url", &redis.url()])
            .args(extra)
            .output()
            .expect("allot events");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("one JSON object per line"))
            .collect::<Vec<_>>()
    };
    let all = run(&[]);
    let stored = events(&redis, "cli");
    assert_eq!(all.len(), stored.len());
    assert_eq!(
        all.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
        ["capacity_changed", "reservation_placed", "counter_full"]
    );
    assert_eq!(all[1]["data"]["counters"][0]["used"], 1);
    assert_eq!(run(&["--after", &stored[1].0]).len(), 1);

    // A consumer group reads each event once, across runs.
    assert_eq!(run(&["--group", "billing"]).len(), 3);
    assert_eq!(run(&["--group", "billing"]).len(), 0);
    api.set_capacity("cli", &[("vans", SLOT, 2)]).await;
    let next = run(&["--group", "billing"]);
    assert_eq!(
        next.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
        ["capacity_changed", "counter_reopened"]
    );
    // Another group has its own position.
    assert_eq!(run(&["--group", "audit"]).len(), 5);
}
