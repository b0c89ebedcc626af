//! Multi-item reservations are all or nothing, under contention too.

use std::sync::Arc;

use serde_json::json;

use crate::common::{Api, TestCoordinator, TestRedis};

const SLOT: &str = "2026-12-01";

fn items(pairs: &[(&str, u64)]) -> serde_json::Value {
    let items: Vec<_> = pairs.iter().map(|(r, q)| json!({"resource": r, "slot": SLOT, "quantity": q})).collect();
    json!({ "items": items })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_item_reservations_are_all_or_nothing_under_contention() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Arc::new(Api::new(&coordinator.base));
    let site = "multi";
    api.set_capacity(site, &[("room", SLOT, 40), ("breakfast", SLOT, 25), ("parking", SLOT, 60)]).await;

    // Three shapes race: a room with breakfast, a room with parking, and all three.
    let shapes: [&[(&str, u64)]; 3] = [
        &[("room", 1), ("breakfast", 1)],
        &[("room", 1), ("parking", 2)],
        &[("room", 2), ("breakfast", 1), ("parking", 1)],
    ];
    let mut tasks = Vec::new();
    for task in 0..48usize {
        let api = Arc::clone(&api);
        let shape: Vec<(String, u64)> = shapes[task % 3].iter().map(|(r, q)| ((*r).to_owned(), *q)).collect();
        tasks.push(tokio::spawn(async move {
            let pairs: Vec<(&str, u64)> = shape.iter().map(|(r, q)| (r.as_str(), *q)).collect();
            let mut won = Vec::new();
            for _ in 0..6 {
                let answer = api.reserve(site, &items(&pairs), None).await;
                match answer.status {
                    201 => won.push(shape.clone()),
                    409 => assert_eq!(answer.slug(), "insufficient-capacity"),
                    other => panic!("unexpected status {other}: {:?}", answer.body),
                }
            }
            won
        }));
    }
    let mut expected = std::collections::HashMap::<String, u64>::new();
    for task in tasks {
        for shape in task.await.expect("task") {
            for (resource, quantity) in shape {
                *expected.entry(resource).or_default() += quantity;
            }
        }
    }
    for (resource, capacity) in [("room", 40), ("breakfast", 25), ("parking", 60)] {
        let used = api.used(site, resource, SLOT).await;
        assert_eq!(used, expected.get(resource).copied().unwrap_or(0), "{resource}");
        assert!(used <= capacity, "{resource} oversold: {used} > {capacity}");
    }
    // 96 attempts of the room-with-parking shape exceed both rooms (40) and parking (60 / 2), so
    // by the end one of them has run out: the race really contended.
    let rooms_left = 40 - api.used(site, "room", SLOT).await;
    let parking_left = 60 - api.used(site, "parking", SLOT).await;
    assert!(rooms_left == 0 || parking_left < 2, "rooms left {rooms_left}, parking left {parking_left}");
    coordinator.assert_consistent(site).await;
}

#[tokio::test]
async fn a_refusal_names_every_short_item_and_changes_nothing() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    let site = "short";
    api.set_capacity(site, &[("room", SLOT, 1), ("breakfast", SLOT, 5), ("parking", SLOT, 0)]).await;
    let before = api.availability(site, "").await.body;
    let answer = api.reserve(site, &items(&[("room", 2), ("breakfast", 5), ("parking", 1), ("spa", 1)]), None).await;
    assert_eq!(answer.status, 409);
    assert_eq!(answer.slug(), "insufficient-capacity");
    assert_eq!(
        answer.body["shortages"],
        json!([
            {"resource": "room", "slot": SLOT, "requested": 2, "remaining": 1},
            {"resource": "parking", "slot": SLOT, "requested": 1, "remaining": 0},
            {"resource": "spa", "slot": SLOT, "requested": 1, "remaining": 0},
        ])
    );
    assert_eq!(api.availability(site, "").await.body, before, "a refusal writes nothing");
    // The one item with room left is still reservable on its own.
    assert_eq!(api.reserve(site, &items(&[("breakfast", 5)]), None).await.status, 201);
}
