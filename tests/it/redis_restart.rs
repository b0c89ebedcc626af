//! Redis dies mid-run: the coordinator answers 503 with Retry-After while it is down, and after
//! it returns every attempt has exactly one outcome and no counter is off by one.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{Api, TestCoordinator, TestRedis, one_item};

const SLOT: &str = "2026-12-01T10:00Z";
const CAPACITY: u64 = 150;
const ATTEMPTS: usize = 400;
const TASKS: usize = 8;
/// Retries of one attempt while Redis is down, before the test gives up.
const RETRIES_MAX: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gives_503s_then_correct_answers() {
    let mut redis = TestRedis::start_durable();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Arc::new(Api::new(&coordinator.base));
    api.set_capacity("restart", &[("vans", SLOT, CAPACITY)]).await;

    let unavailable = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (api, unavailable) = (Arc::clone(&api), Arc::clone(&unavailable));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut refused = 0;
            for attempt in (task..ATTEMPTS).step_by(TASKS) {
                // One key per attempt: retrying after a 503 either finds the reservation the
                // lost reply was about, or makes it now. Never two.
                let key = format!("restart-{attempt}");
                let mut retries = 0;
                loop {
                    let answer = api.reserve("restart", &one_item("vans", SLOT, 1), Some(&key)).await;
                    match answer.status {
                        201 | 200 => {
                            ids.push(answer.body["id"].as_str().expect("id").to_owned());
                            break;
                        }
                        409 => {
                            refused += 1;
                            break;
                        }
                        503 => {
                            assert_eq!(answer.slug(), "unavailable");
                            assert_eq!(answer.header("retry-after"), Some("1"));
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            retries += 1;
                            assert!(retries < RETRIES_MAX, "redis did not come back");
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        other => panic!("unexpected {other}: {:?}", answer.body),
                    }
                }
                // Spread the run so that it spans the outage.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ids, refused)
        }));
    }

    // Let some reservations land, kill Redis, keep it down a moment, bring it back.
    while api.used("restart", "vans", SLOT).await < 30 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.restart();

    let mut ids = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (i, r) = task.await.expect("task");
        ids.extend(i);
        refused += r;
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "every attempt has its own reservation");
    assert_eq!(ids.len() + refused, ATTEMPTS);
    assert_eq!(ids.len() as u64, CAPACITY, "capacity is sold out exactly");
    assert!(unavailable.load(Ordering::Relaxed) > 0, "the outage was seen as 503s");
    assert_eq!(api.used("restart", "vans", SLOT).await, CAPACITY);
    coordinator.assert_consistent("restart").await;
    let ready = crate::common::send(api.http.get(format!("{}/readyz", api.base))).await;
    assert_eq!(ready.status, 200, "ready again after the restart");
}
