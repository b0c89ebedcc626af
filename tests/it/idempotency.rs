//! Idempotency keys: replay, concurrent use, reuse with another body, refusals.

use std::sync::Arc;

use serde_json::json;

use crate::common::{Api, TestCoordinator, TestRedis, one_item};

const SLOT: &str = "2026-12-01T10:00Z";

#[tokio::test]
async fn a_replay_answers_the_same_reservation_as_it_stands_now() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("idem", &[("vans", SLOT, 5)]).await;
    let body = json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 2}], "customer": "c-1"});
    let first = api.reserve("idem", &body, Some("key-1")).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);

    // Same JSON value, other key order and whitespace.
    let reordered = serde_json::from_str::<serde_json::Value>(
        r#"{ "customer":"c-1",  "items":[{"quantity":2,"slot":"2026-12-01T10:00Z","resource":"vans"}] }"#,
    )
    .expect("json");
    let replay = api.reserve("idem", &reordered, Some("key-1")).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    assert_eq!(api.used("idem", "vans", SLOT).await, 2, "a replay reserves nothing");

    // As it stands now: after a cancel the replay shows the cancellation, and still reserves nothing.
    let id = first.body["id"].as_str().expect("id");
    assert_eq!(api.cancel("idem", id).await.status, 200);
    let replay = api.reserve("idem", &body, Some("key-1")).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body["status"], "cancelled");
    assert_eq!(api.used("idem", "vans", SLOT).await, 0);

    // The key belongs to its site: the same key elsewhere is a new attempt.
    api.set_capacity("idem-other", &[("vans", SLOT, 5)]).await;
    assert_eq!(api.reserve("idem-other", &body, Some("key-1")).await.status, 201);
}

#[tokio::test]
async fn a_replay_does_not_depend_on_capacity() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("sold", &[("vans", SLOT, 2)]).await;
    let first = api.reserve("sold", &one_item("vans", SLOT, 2), Some("mine")).await;
    assert_eq!(first.status, 201);
    // Sold out, then even closed: the replay still answers the reservation.
    assert_eq!(api.reserve("sold", &one_item("vans", SLOT, 1), None).await.status, 409);
    api.set_capacity("sold", &[("vans", SLOT, 0)]).await;
    let replay = api.reserve("sold", &one_item("vans", SLOT, 2), Some("mine")).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(replay.body["id"], first.body["id"]);
}

#[tokio::test]
async fn a_key_reused_with_another_body_is_refused() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("reuse", &[("vans", SLOT, 5)]).await;
    assert_eq!(api.reserve("reuse", &one_item("vans", SLOT, 1), Some("k")).await.status, 201);
    let reused = api.reserve("reuse", &one_item("vans", SLOT, 2), Some("k")).await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.slug(), "idempotency-key-reused");
    assert_eq!(api.used("reuse", "vans", SLOT).await, 1);
}

#[tokio::test]
async fn a_refused_attempt_does_not_consume_its_key() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("refused", &[("vans", SLOT, 0)]).await;
    let refused = api.reserve("refused", &one_item("vans", SLOT, 1), Some("retry-me")).await;
    assert_eq!(refused.status, 409);
    api.set_capacity("refused", &[("vans", SLOT, 1)]).await;
    let accepted = api.reserve("refused", &one_item("vans", SLOT, 1), Some("retry-me")).await;
    assert_eq!(accepted.status, 201, "{:?}", accepted.body);
    assert_eq!(accepted.header("idempotent-replayed"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_make_one_reservation() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Arc::new(Api::new(&coordinator.base));
    api.set_capacity("race", &[("vans", SLOT, 100)]).await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let api = Arc::clone(&api);
        tasks.push(tokio::spawn(async move { api.reserve("race", &one_item("vans", SLOT, 3), Some("same")).await }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let answer = task.await.expect("task");
        match answer.status {
            201 => created += 1,
            200 => assert_eq!(answer.header("idempotent-replayed"), Some("true")),
            other => panic!("unexpected {other}"),
        }
        ids.insert(answer.body["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(api.used("race", "vans", SLOT).await, 3);
    coordinator.assert_consistent("race").await;
}

/// A function call sent twice (a client library's retry, a re-send after a lost reply) with
/// the id the coordinator chose places one reservation: the second answers as a replay. And
/// a Redis that lost the library gets it back on the next call.
#[tokio::test]
async fn the_same_call_sent_twice_places_once_and_a_lost_library_is_reloaded() {
    use allot_core::store::ReserveOutcome;
    use allot_shared::{ReservationId, ReservationRequest};

    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("resend", &[("vans", SLOT, 5)]).await;
    let site = crate::common::site_id("resend");
    let request = ReservationRequest::parse(one_item("vans", SLOT, 2).to_string().as_bytes()).expect("request");
    let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
    let first = coordinator.store.reserve(&site, &request, None, &id).await.expect("store");
    assert!(matches!(first, ReserveOutcome::Placed(_)), "{first:?}");
    let again = coordinator.store.reserve(&site, &request, None, &id).await.expect("store");
    assert!(matches!(&again, ReserveOutcome::Replayed(r) if r.id == id), "{again:?}");
    assert_eq!(api.used("resend", "vans", SLOT).await, 2, "placed once");

    let _: String = redis::cmd("FUNCTION").arg("FLUSH").query(&mut redis.connection()).expect("flush");
    assert_eq!(coordinator.store.loaded_version().await.expect("store"), None);
    assert_eq!(api.used("resend", "vans", SLOT).await, 2, "the call reloaded the library");
    assert_eq!(
        coordinator.store.loaded_version().await.expect("store").as_deref(),
        Some(coordinator.store.library_version())
    );
    coordinator.assert_consistent("resend").await;
}
