//! The edge's live view: changes pushed by the coordinator's event stream reach the edge
//! without a TTL, across coordinator restarts, trimming (resync) and several edges.

use serde_json::json;

use crate::common::{TestRedis, one_item};
use crate::edge::{remaining, wait_for_stream, wait_until_edge_shows};
use crate::edge_fixture::{CoordinatorProcess, TestEdge};
use crate::events::SseReader;

const SLOT: &str = "2026-12-01T10:00Z";
/// A TTL far longer than any wait below: whatever the edge shows sooner came by push.
const LONG_TTL: (&str, &str) = ("ALLOT_CACHE_TTL_MS", "10000");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_at_the_coordinator_reaches_the_edge_without_a_ttl() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[LONG_TTL]).await;
    let admin = coordinator.admin();
    admin.set_capacity("push", &[("vans", SLOT, 3)]).await;
    let customer = edge.api();
    wait_for_stream(&customer, "push", "").await;

    // Reserved directly at the coordinator, not through the edge.
    let placed = admin.reserve("push", &one_item("vans", SLOT, 3), None).await;
    assert_eq!(placed.status, 201);
    let shown = wait_until_edge_shows(&customer, "push", |b| remaining(b, "vans") == Some(0)).await;
    assert_eq!(shown.header("allot-source"), Some("stream"));
    // The edge refuses at once now, without asking the coordinator.
    let refused = customer.reserve("push", &one_item("vans", SLOT, 1), None).await;
    assert_eq!((refused.status, refused.header("allot-shielded")), (409, Some("true")));

    // Cancelling makes it available again, at the edge too (counter_reopened).
    admin.cancel("push", placed.body["id"].as_str().expect("id")).await;
    wait_until_edge_shows(&customer, "push", |b| remaining(b, "vans") == Some(3)).await;
    assert_eq!(customer.reserve("push", &one_item("vans", SLOT, 1), None).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_does_not_leave_the_edge_stale() {
    let redis = TestRedis::start();
    let mut coordinator = CoordinatorProcess::start(&redis).await;
    let port = coordinator.port();
    let edge = TestEdge::start(&[&coordinator.base], &[LONG_TTL]).await;
    coordinator.admin().set_capacity("restart", &[("vans", SLOT, 5)]).await;
    let customer = edge.api();
    wait_for_stream(&customer, "restart", "").await;

    coordinator.kill();
    // Changed while the coordinator (and so the edge's stream) is down.
    let store = allot_core::store::Store::connect(&redis.url(), Default::default()).expect("store");
    store.load_functions().await.expect("functions load");
    let capacity = allot_shared::CapacityRequest::parse(
        json!({"counters": [{"resource": "vans", "slot": SLOT, "capacity": 9}]}).to_string().as_bytes(),
    )
    .expect("capacity");
    store.set_capacity(&crate::common::site_id("restart"), &capacity).await.expect("set");

    let coordinator = CoordinatorProcess::start_on(&redis, port).await;
    // The edge reconnects, resumes after its version and catches up.
    let caught_up = wait_until_edge_shows(&customer, "restart", |b| remaining(b, "vans") == Some(9)).await;
    assert_eq!(caught_up.header("allot-source"), Some("stream"));
    assert_eq!(caught_up.header("allot-snapshots"), Some("1"), "caught up by resuming, not by reloading");
    coordinator.admin().reserve("restart", &one_item("vans", SLOT, 4), None).await;
    wait_until_edge_shows(&customer, "restart", |b| remaining(b, "vans") == Some(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_resume_point_was_trimmed_reloads_its_snapshot() {
    let redis = TestRedis::start();
    let mut coordinator = CoordinatorProcess::start(&redis).await;
    let port = coordinator.port();
    let edge = TestEdge::start(&[&coordinator.base], &[LONG_TTL]).await;
    coordinator.admin().set_capacity("trimmed", &[("vans", SLOT, 5)]).await;
    let customer = edge.api();
    wait_for_stream(&customer, "trimmed", "").await;

    coordinator.kill();
    // Far more changes than the stream keeps, while the edge cannot hear them.
    let settings = allot_core::store::StoreSettings { events_retained_max: 50, ..Default::default() };
    let store = allot_core::store::Store::connect(&redis.url(), settings).expect("store");
    store.load_functions().await.expect("functions load");
    for capacity in 100..400u64 {
        let body = json!({"counters": [{"resource": "vans", "slot": SLOT, "capacity": capacity}]});
        let request = allot_shared::CapacityRequest::parse(body.to_string().as_bytes()).expect("capacity");
        store.set_capacity(&crate::common::site_id("trimmed"), &request).await.expect("set");
    }
    let _coordinator = CoordinatorProcess::start_on(&redis, port).await;
    let reloaded = wait_until_edge_shows(&customer, "trimmed", |b| remaining(b, "vans") == Some(399)).await;
    assert_eq!(reloaded.header("allot-snapshots"), Some("2"), "told to resync, it reloaded its snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_in_two_regions_each_follow_the_coordinator() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let (east, west) = TestEdge::start_two(
        &[&coordinator.base],
        &[LONG_TTL, ("ALLOT_REGION", "east")],
        &[LONG_TTL, ("ALLOT_REGION", "west")],
    )
    .await;
    let admin = coordinator.admin();
    admin.set_capacity("two", &[("vans", SLOT, 4)]).await;
    wait_for_stream(&east.api(), "two", "").await;
    wait_for_stream(&west.api(), "two", "").await;

    admin.reserve("two", &one_item("vans", SLOT, 1), None).await;
    wait_until_edge_shows(&east.api(), "two", |b| remaining(b, "vans") == Some(3)).await;
    wait_until_edge_shows(&west.api(), "two", |b| remaining(b, "vans") == Some(3)).await;

    // One edge going away does not disturb the other's stream.
    drop(east);
    admin.reserve("two", &one_item("vans", SLOT, 2), None).await;
    let shown = wait_until_edge_shows(&west.api(), "two", |b| remaining(b, "vans") == Some(1)).await;
    assert_eq!(shown.header("allot-stream"), Some("live"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_a_snapshot_then_counters_from_the_edge() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[LONG_TTL]).await;
    let admin = coordinator.admin();
    admin.set_capacity("browse", &[("vans", SLOT, 2)]).await;
    wait_for_stream(&edge.api(), "browse", "").await;

    let mut stream = SseReader::open(&format!("{}/v1/sites/browse/availability/stream", edge.base), &[]).await;
    let snapshot = stream.next().await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    let mut body = one_item("vans", SLOT, 2);
    body["customer"] = json!("bob@example.com");
    let placed = admin.reserve("browse", &body, None).await;
    let change = stream.next().await.expect("change");
    assert_eq!(change.event, "availability");
    let data: serde_json::Value = serde_json::from_str(&change.data).expect("json");
    assert_eq!(data["counters"][0]["remaining"], 0);
    assert!(!change.data.contains("bob") && !change.data.contains(placed.body["id"].as_str().expect("id")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_is_replayed_even_when_the_edge_sees_the_counter_sold_out() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[LONG_TTL]).await;
    coordinator.admin().set_capacity("retry", &[("vans", SLOT, 1)]).await;
    let customer = edge.api();
    wait_for_stream(&customer, "retry", "").await;
    let first = customer.reserve("retry", &one_item("vans", SLOT, 1), Some("order-7")).await;
    assert_eq!(first.status, 201);
    wait_until_edge_shows(&customer, "retry", |b| remaining(b, "vans") == Some(0)).await;
    // The answer was lost; the client retries with its key. The key is looked up before
    // capacity, so it gets its reservation, not a sold-out refusal.
    let retry = customer.reserve("retry", &one_item("vans", SLOT, 1), Some("order-7")).await;
    assert_eq!((retry.status, retry.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(retry.body["id"], first.body["id"]);
    // Without a key the same attempt is refused at the edge.
    let other = customer.reserve("retry", &one_item("vans", SLOT, 1), None).await;
    assert_eq!((other.status, other.header("allot-shielded")), (409, Some("true")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_changes_reach_the_edges_view_with_the_capacity_event() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[LONG_TTL]).await;
    let admin = coordinator.admin();
    admin.set_capacity("zoned", &[("vans", SLOT, 2)]).await;
    let customer = edge.api();
    wait_for_stream(&customer, "zoned", "").await;
    let restricted = json!({"counters": [{"resource": "vans", "slot": SLOT, "capacity": 2, "zones": ["north"]}]});
    assert_eq!(admin.put_capacity("zoned", &restricted).await.status, 200);
    let shown = wait_until_edge_shows(&customer, "zoned", |b| b["counters"][0]["zones"] == json!(["north"])).await;
    assert_eq!(shown.body["counters"][0]["capacity"], 2);
    admin.set_capacity("zoned", &[("vans", SLOT, 2)]).await;
    wait_until_edge_shows(&customer, "zoned", |b| b["counters"][0].get("zones").is_none()).await;
}
