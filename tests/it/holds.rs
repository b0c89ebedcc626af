//! Holds: confirm, cancel, and expiry on time without any read, by one or several coordinators.

use std::time::Duration;

use serde_json::json;

use crate::common::{Api, TestCoordinator, TestRedis, events};

const SLOT: &str = "2026-12-01T10:00Z";

fn held(quantity: u64, hold_seconds: u64) -> serde_json::Value {
    json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": quantity}], "hold_seconds": hold_seconds})
}

/// `used` read straight from Redis: no script runs, so nothing is expired by the read.
fn raw_used(redis: &TestRedis, site: &str) -> i64 {
    let mut connection = redis.connection();
    redis::cmd("HGET")
        .arg(allot_core::store::keys::used(&crate::common::site_id(site)))
        .arg(format!("vans#{SLOT}"))
        .query::<Option<i64>>(&mut connection)
        .expect("HGET")
        .unwrap_or(0)
}

#[tokio::test]
async fn a_confirmed_hold_stays_and_a_cancelled_one_returns_capacity() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("hold", &[("vans", SLOT, 5)]).await;

    let first = api.reserve("hold", &held(2, 2), None).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["status"], "held");
    assert!(first.body["expires_at"].is_string());
    let id = first.body["id"].as_str().expect("id");
    let confirmed = api.confirm("hold", id).await;
    assert_eq!(confirmed.status, 200);
    assert_eq!(confirmed.body["status"], "confirmed");
    assert!(confirmed.body.get("expires_at").is_none(), "a confirmed reservation does not expire");
    assert_eq!(api.confirm("hold", id).await.status, 200, "confirming twice is fine");

    let second = api.reserve("hold", &held(3, 60), None).await;
    let second_id = second.body["id"].as_str().expect("id");
    assert_eq!(api.used("hold", "vans", SLOT).await, 5);
    let cancelled = api.cancel("hold", second_id).await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(api.cancel("hold", second_id).await.body, cancelled.body, "cancelling twice answers the same");
    assert_eq!(api.confirm("hold", second_id).await.slug(), "reservation-not-held");

    tokio::time::sleep(Duration::from_millis(2_500)).await; // past the first hold's end
    assert_eq!(api.reservation("hold", id).await.body["status"], "confirmed", "a confirmed hold never expires");
    assert_eq!(api.used("hold", "vans", SLOT).await, 2);
    coordinator.assert_consistent("hold").await;
}

#[tokio::test]
async fn an_unread_hold_expires_on_time_and_a_late_confirm_is_refused() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("expiry", &[("vans", SLOT, 4)]).await;
    let answer = api.reserve("expiry", &held(4, 1), None).await;
    assert_eq!(answer.status, 201);
    let id = answer.body["id"].as_str().expect("id").to_owned();
    assert_eq!(raw_used(&redis, "expiry"), 4);

    // Nobody reads: only the sweeper can bring capacity back, within about a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while raw_used(&redis, "expiry") != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the sweeper did not expire the hold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let confirm = api.confirm("expiry", &id).await;
    assert_eq!(confirm.status, 409);
    assert_eq!(confirm.slug(), "reservation-not-held");
    let read = api.reservation("expiry", &id).await;
    assert_eq!(read.body["status"], "expired");
    // Cancelling an expired reservation answers it, still expired.
    let cancel = api.cancel("expiry", &id).await;
    assert_eq!((cancel.status, cancel.body["status"].as_str()), (200, Some("expired")));
    assert_eq!(api.reserve("expiry", &held(4, 60), None).await.status, 201, "capacity is back");
    coordinator.assert_consistent("expiry").await;
}

#[tokio::test]
async fn a_confirm_after_the_hold_ended_loses_even_before_the_sweeper_runs() {
    let redis = TestRedis::start();
    // No server: the store alone, so no sweeper runs.
    let store = allot_core::store::Store::connect(&redis.url(), Default::default()).expect("store");
    let site = crate::common::site_id("late");
    let request = allot_shared::CapacityRequest::parse(
        json!({"counters": [{"resource": "vans", "slot": SLOT, "capacity": 1}]}).to_string().as_bytes(),
    )
    .expect("capacity");
    store.set_capacity(&site, &request).await.expect("set");
    let reservation = allot_shared::ReservationRequest::parse(held(1, 1).to_string().as_bytes()).expect("body");
    let id = allot_shared::ReservationId::from_random_bytes([7; 16]);
    store.reserve(&site, &reservation, None, &id).await.expect("reserve");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(raw_used(&redis, "late"), 1, "nothing has expired it yet");
    let outcome = store.confirm(&site, &id).await.expect("confirm");
    assert!(matches!(outcome, allot_core::store::ConfirmOutcome::NotHeld(ref r) if r.status.as_str() == "expired"));
    assert_eq!(raw_used(&redis, "late"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_sweeping_one_redis_release_each_hold_once() {
    const HOLDS: u64 = 300;
    let redis = TestRedis::start();
    let first = TestCoordinator::start(&redis).await;
    let second = TestCoordinator::start(&redis).await;
    let api = Api::new(&first.base);
    api.set_capacity("twice", &[("vans", SLOT, HOLDS)]).await;
    for _ in 0..HOLDS {
        assert_eq!(api.reserve("twice", &held(1, 3), None).await.status, 201);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while raw_used(&redis, "twice") != 0 {
        assert!(tokio::time::Instant::now() < deadline, "holds did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // a few more sweeps by both
    assert_eq!(raw_used(&redis, "twice"), 0, "never released twice (would go negative)");
    let expired = events(&redis, "twice").iter().filter(|(_, t, _)| t == "reservation_expired").count();
    assert_eq!(expired as u64, HOLDS);
    first.assert_consistent("twice").await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_expirers_release_each_due_hold_exactly_once() {
    const HOLDS: u64 = 600;
    let redis = TestRedis::start();
    // Two stores (two connections, as two coordinators have), no sweepers: the race is ours.
    let one = allot_core::store::Store::connect(&redis.url(), Default::default()).expect("store");
    let two = allot_core::store::Store::connect(&redis.url(), Default::default()).expect("store");
    let site = crate::common::site_id("race-expiry");
    let capacity = allot_shared::CapacityRequest::parse(
        json!({"counters": [{"resource": "vans", "slot": SLOT, "capacity": HOLDS}]}).to_string().as_bytes(),
    )
    .expect("capacity");
    one.set_capacity(&site, &capacity).await.expect("set");
    // Long enough that no hold ends while the others are still being placed.
    let request = allot_shared::ReservationRequest::parse(held(1, 4).to_string().as_bytes()).expect("body");
    let placing = tokio::time::Instant::now();
    for _ in 0..HOLDS {
        let id = allot_shared::ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
        one.reserve(&site, &request, None, &id).await.expect("reserve");
    }
    assert_eq!(raw_used(&redis, "race-expiry"), HOLDS as i64, "all held before any ends");
    tokio::time::sleep_until(placing + Duration::from_millis(4_100)).await;
    let drain = |store: allot_core::store::Store, site: allot_shared::SiteId| async move {
        let mut expired = 0;
        loop {
            let (now, left) = store.expire_due(&site).await.expect("expire");
            expired += now;
            if left == 0 {
                return expired;
            }
            tokio::task::yield_now().await;
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(drain(one, site.clone())), tokio::spawn(drain(two, site.clone())));
    let (a, b) = (a.expect("task"), b.expect("task"));
    assert_eq!(a + b, HOLDS, "each hold expired once: {a} + {b}");
    assert_eq!(raw_used(&redis, "race-expiry"), 0);
    let expired = events(&redis, "race-expiry").iter().filter(|(_, t, _)| t == "reservation_expired").count();
    assert_eq!(expired as u64, HOLDS);
}
