//! Graceful shutdown: requests in flight when the signal fires are answered, then the server stops.

use std::time::Duration;

use crate::common::{Api, TestCoordinator, TestRedis, one_item};

const SLOT: &str = "2026-12-01";
const IN_FLIGHT: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_before_the_server_stops() {
    let redis = TestRedis::start();
    let mut coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("drain", &[("vans", SLOT, 100)]).await;

    // Pause Redis for writes: every reservation below is in flight, waiting on its script.
    let mut connection = redis.connection();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(700).arg("WRITE").query(&mut connection).expect("pause");
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.reserve("drain", &one_item("vans", SLOT, 1), None).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = coordinator.shut_down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopped.is_finished(), "the server waits for its in-flight requests");

    for request in requests {
        assert_eq!(request.await.expect("task"), 201, "an in-flight request is answered");
    }
    tokio::time::timeout(Duration::from_secs(10), stopped).await.expect("server stops").expect("task").expect("serve");
    // New connections are refused once it has stopped.
    assert!(api.http.get(format!("{}/healthz", api.base)).send().await.is_err());
    let audit = coordinator.store.audit(&crate::common::site_id("drain")).await.expect("audit");
    assert_eq!(audit.live_reservations, IN_FLIGHT as u64);
}
