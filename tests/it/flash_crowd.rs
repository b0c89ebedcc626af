//! Many customers race for few units: exactly capacity of them win.

use std::sync::Arc;

use crate::common::{Api, TestCoordinator, TestRedis, events, one_item};

const CAPACITY: u64 = 100;
const ATTEMPTS: usize = 2_000;
const TASKS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_capacity_attempts_win_a_flash_crowd() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Arc::new(Api::new(&coordinator.base));
    let site = "flash";
    let slot = "2026-12-01T10:00Z";
    assert_eq!(api.set_capacity(site, &[("vans", slot, CAPACITY)]).await.status, 200);

    let mut tasks = Vec::with_capacity(TASKS);
    for task in 0..TASKS {
        let api = Arc::clone(&api);
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut refused, mut other) = (Vec::new(), 0usize, Vec::new());
            for attempt in (task..ATTEMPTS).step_by(TASKS) {
                let key = format!("flash-{attempt}");
                let answer = api.reserve(site, &one_item("vans", slot, 1), Some(&key)).await;
                match answer.status {
                    201 => accepted.push(answer.body["id"].as_str().unwrap_or_default().to_owned()),
                    409 if answer.slug() == "insufficient-capacity" => refused += 1,
                    _ => other.push(answer.status),
                }
            }
            (accepted, refused, other)
        }));
    }
    let (mut accepted, mut refused, mut other) = (Vec::new(), 0, Vec::new());
    for task in tasks {
        let (a, r, o) = task.await.expect("task");
        accepted.extend(a);
        refused += r;
        other.extend(o);
    }
    assert!(other.is_empty(), "unexpected statuses: {other:?}");
    assert_eq!(accepted.len(), CAPACITY as usize);
    assert_eq!(refused, ATTEMPTS - CAPACITY as usize);
    accepted.sort();
    accepted.dedup();
    assert_eq!(accepted.len(), CAPACITY as usize, "reservation ids are distinct");

    assert_eq!(api.used(site, "vans", slot).await, CAPACITY);
    coordinator.assert_consistent(site).await;
    let audit = coordinator.store.audit(&crate::common::site_id(site)).await.expect("audit");
    assert_eq!(audit.live_reservations, CAPACITY);

    let events = events(&redis, site);
    let count = |kind: &str| events.iter().filter(|(_, t, _)| t == kind).count();
    assert_eq!(count("reservation_placed"), CAPACITY as usize);
    assert_eq!(count("counter_full"), 1);
    assert_eq!(count("counter_almost_full"), 1);
    assert_eq!(count("capacity_changed"), 1);
    assert_eq!(events.len(), CAPACITY as usize + 3, "no other events");
}
