//! Coalesced reservations: one `reserve_batch` call places several reservations of a site,
//! each all or nothing on its own and in order, exactly as the same calls one after another;
//! and under a crowd the coordinator's coalescing path keeps every outcome exact.

use std::sync::Arc;

use allot_core::store::{BatchedReservation, ReserveOutcome};
use allot_shared::{IdempotencyKey, ReservationId, ReservationRequest};
use serde_json::{Value, json};

use crate::common::{Api, TestCoordinator, TestRedis, events, one_item, site_id};

const SLOT: &str = "2026-12-01T10:00Z";

fn entry(body: Value, key: Option<&str>) -> BatchedReservation {
    BatchedReservation {
        request: ReservationRequest::parse(body.to_string().as_bytes()).expect("a valid body"),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).expect("a valid key")),
        id: ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes()),
    }
}

fn tag(outcome: &ReserveOutcome) -> &'static str {
    match outcome {
        ReserveOutcome::Placed(_) => "placed",
        ReserveOutcome::Replayed(_) => "replayed",
        ReserveOutcome::KeyReused => "reused",
        ReserveOutcome::ZoneNotAllowed(_) => "zone",
        ReserveOutcome::Insufficient(_) => "short",
    }
}

#[tokio::test]
async fn one_call_places_each_reservation_on_its_own_and_in_order() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.put_capacity(
        "batch",
        &json!({"counters": [
            {"resource": "vans", "slot": SLOT, "capacity": 3},
            {"resource": "pickers", "slot": SLOT, "capacity": 1},
            {"resource": "bikes", "slot": SLOT, "capacity": 5, "zones": ["north"]},
        ]}),
    )
    .await;
    let two_items = json!({"items": [
        {"resource": "vans", "slot": SLOT, "quantity": 1},
        {"resource": "pickers", "slot": SLOT, "quantity": 1},
    ]});
    let batch = vec![
        entry(one_item("vans", SLOT, 1), Some("k1")),
        // The same attempt again, in the same call: the earlier one's reservation.
        entry(one_item("vans", SLOT, 1), Some("k1")),
        entry(one_item("vans", SLOT, 2), Some("k1")),
        entry(two_items.clone(), None),
        // The picker is taken by the one before: all or nothing, so the van is not taken either.
        entry(two_items, None),
        entry(one_item("bikes", SLOT, 1), None),
        entry(json!({"items": [{"resource": "bikes", "slot": SLOT, "quantity": 1}], "zone": "north"}), None),
        entry(one_item("vans", SLOT, 1), None),
        entry(one_item("vans", SLOT, 1), None),
    ];
    let outcomes: Vec<ReserveOutcome> = coordinator
        .store
        .reserve_batch(&site_id("batch"), &batch)
        .await
        .expect("the batch runs")
        .into_iter()
        .map(|outcome| outcome.expect("acknowledged: no replicas to wait for"))
        .collect();
    let tags: Vec<&str> = outcomes.iter().map(tag).collect();
    assert_eq!(tags, ["placed", "replayed", "reused", "placed", "short", "zone", "placed", "placed", "short"]);
    let (ReserveOutcome::Placed(first), ReserveOutcome::Replayed(again)) = (&outcomes[0], &outcomes[1]) else {
        unreachable!("checked above")
    };
    assert_eq!(first.id, again.id);
    if let ReserveOutcome::Insufficient(shortages) = &outcomes[4] {
        assert_eq!(shortages.len(), 1, "only the picker is short: {shortages:?}");
        assert_eq!((shortages[0].resource.as_str(), shortages[0].remaining), ("pickers", 0));
    }

    assert_eq!(api.used("batch", "vans", SLOT).await, 3);
    assert_eq!(api.used("batch", "pickers", SLOT).await, 1);
    assert_eq!(api.used("batch", "bikes", SLOT).await, 1);
    coordinator.assert_consistent("batch").await;
    let placed = events(&redis, "batch").iter().filter(|(_, kind, _)| kind == "reservation_placed").count();
    assert_eq!(placed, 4, "one event per placed reservation");
}

#[tokio::test]
async fn a_crowd_through_the_coalescing_path_gets_exact_outcomes() {
    const ATTEMPTS: usize = 600;
    const CAPACITY: u64 = 250;
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Arc::new(Api::new(&coordinator.base));
    api.set_capacity("crowd", &[("vans", SLOT, CAPACITY)]).await;
    // Every attempt is sent twice at once with its key: the pair makes one reservation.
    let mut tasks = Vec::new();
    for n in 0..ATTEMPTS {
        for _ in 0..2 {
            let api = Arc::clone(&api);
            tasks.push(tokio::spawn(async move {
                let key = format!("attempt-{n}");
                let answer = api.reserve("crowd", &one_item("vans", SLOT, 1), Some(&key)).await;
                (n, answer.status, answer.body["id"].as_str().map(str::to_owned))
            }));
        }
    }
    let mut ids_by_attempt = std::collections::HashMap::<usize, Vec<String>>::new();
    let mut created = 0;
    for task in tasks {
        let (n, status, id) = task.await.expect("task");
        assert!(matches!(status, 200 | 201 | 409), "status {status}");
        if status == 201 {
            created += 1;
        }
        if let Some(id) = id {
            ids_by_attempt.entry(n).or_default().push(id);
        }
    }
    assert_eq!(created, CAPACITY, "exactly the capacity was placed");
    for (n, ids) in &ids_by_attempt {
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "attempt {n} got two reservations: {ids:?}");
    }
    assert_eq!(api.used("crowd", "vans", SLOT).await, CAPACITY);
    coordinator.assert_consistent("crowd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_forms_batches_and_every_caller_gets_its_own_outcome() {
    const ATTEMPTS: u64 = 2_000;
    const CAPACITY: u64 = 700;
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    Api::new(&coordinator.base).set_capacity("backlog", &[("vans", SLOT, CAPACITY)]).await;
    let coalescer = allot_core::coalesce::Coalescer::start(coordinator.store.clone(), 64);
    let request = ReservationRequest::parse(one_item("vans", SLOT, 1).to_string().as_bytes()).expect("valid");
    let tasks: Vec<_> = (0..ATTEMPTS)
        .map(|_| {
            let (coalescer, request) = (coalescer.clone(), request.clone());
            tokio::spawn(async move {
                let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
                let outcome = coalescer.reserve(&site_id("backlog"), &request, None, &id).await;
                (id, outcome.expect("redis answers"))
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        let (id, outcome) = task.await.expect("task");
        match outcome {
            ReserveOutcome::Placed(reservation) => {
                assert_eq!(reservation.id, id, "each caller gets its own reservation");
                placed += 1;
            }
            ReserveOutcome::Insufficient(_) => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(placed, CAPACITY);
    assert!(coalescer.batched() > 0, "{ATTEMPTS} at once queue behind the calls in flight and are batched");
    coordinator.assert_consistent("backlog").await;
}
