//! The edge worker in real workerd in front of real coordinators on a real Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::common::{TestRedis, events, one_item, send};
use crate::edge_fixture::{CoordinatorProcess, TestEdge};

const SLOT: &str = "2026-12-01T10:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reserves_confirms_and_cancels_through_the_edge() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    let admin = coordinator.admin();
    let customer = edge.api();
    assert_eq!(admin.set_capacity("e2e", &[("vans", SLOT, 3), ("pickers", SLOT, 2)]).await.status, 200);

    // Availability through the edge, then from its cache, with versions and 304.
    let first = customer.availability("e2e", "").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["counters"].as_array().map(Vec::len), Some(2));
    // The first read starts the site's live view; until it is up, the edge fetches and caches.
    let again = wait_for_stream(&customer, "e2e", "?resource=vans").await;
    assert_eq!(again.body["counters"].as_array().map(Vec::len), Some(1));
    assert!(again.header("age").is_some() && again.header("allot-stale-ms").is_some());
    assert_eq!(again.header("allot-stream"), Some("live"));
    let etag = first.header("etag").expect("etag").to_owned();
    let not_modified =
        send(customer.http.get(format!("{}/v1/sites/e2e/availability", edge.base)).header("If-None-Match", &etag))
            .await;
    assert_eq!(not_modified.status, 304);

    // Reserve without credentials, read it, confirm, cancel: all through the edge.
    let body = json!({"items": [
        {"resource": "vans", "slot": SLOT, "quantity": 1},
        {"resource": "pickers", "slot": SLOT, "quantity": 1},
    ], "hold_seconds": 120});
    let placed = customer.reserve("e2e", &body, None).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["status"], "held");
    let id = placed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(customer.reservation("e2e", &id).await.body["status"], "held");
    assert_eq!(customer.confirm("e2e", &id).await.body["status"], "confirmed");
    assert_eq!(admin.used("e2e", "vans", SLOT).await, 1);
    let cancelled = customer.cancel("e2e", &id).await;
    assert_eq!((cancelled.status, cancelled.body["status"].as_str()), (200, Some("cancelled")));
    assert_eq!(admin.used("e2e", "vans", SLOT).await, 0);
    assert_eq!(customer.confirm("e2e", &id).await.slug(), "reservation-not-held");

    // A client key is passed through: the retry is a replay.
    let keyed = customer.reserve("e2e", &one_item("vans", SLOT, 1), Some("client-key-1")).await;
    assert_eq!(keyed.status, 201);
    let replay = customer.reserve("e2e", &one_item("vans", SLOT, 1), Some("client-key-1")).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(replay.body["id"], keyed.body["id"]);

    // Admin endpoints do not exist at the edge.
    let capacity = customer.set_capacity("e2e", &[("vans", SLOT, 1000)]).await;
    assert_eq!((capacity.status, capacity.slug()), (404, "not-found"));
    assert_eq!(admin.used("e2e", "vans", SLOT).await, 1);
}

/// Reads availability through the edge until it is served from the live view.
pub async fn wait_for_stream(api: &crate::common::Api, site: &str, query: &str) -> crate::common::Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = api.availability(site, query).await;
        if answer.header("allot-source") == Some("stream") {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "the edge's live view never came up: {:?}", answer.headers);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads availability through the edge until `check` holds for the body; returns it.
pub async fn wait_until_edge_shows(
    api: &crate::common::Api,
    site: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> crate::common::Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = api.availability(site, "").await;
        // Only the live view counts: a fallback fetch would show the truth without the push.
        if answer.status == 200 && answer.header("allot-source") == Some("stream") && check(&answer.body) {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "the edge never showed it; last: {:?}", answer.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn remaining(body: &serde_json::Value, resource: &str) -> Option<u64> {
    body["counters"].as_array()?.iter().find(|c| c["resource"] == resource)?["remaining"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_capacity_attempts_win_a_flash_crowd_through_the_edge() {
    const CAPACITY: u64 = 50;
    const ATTEMPTS: usize = 1_000;
    const TASKS: usize = 64;
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    coordinator.admin().set_capacity("crowd", &[("vans", SLOT, CAPACITY)]).await;
    let api = Arc::new(edge.api());
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let api = Arc::clone(&api);
        tasks.push(tokio::spawn(async move {
            let (mut created, mut refused, mut shielded, mut other) = (0usize, 0usize, 0usize, Vec::new());
            for _ in (task..ATTEMPTS).step_by(TASKS) {
                let answer = api.reserve("crowd", &one_item("vans", SLOT, 1), None).await;
                match (answer.status, answer.slug()) {
                    (201, _) => created += 1,
                    (409, "insufficient-capacity") => {
                        refused += 1;
                        if answer.header("allot-shielded") == Some("true") {
                            shielded += 1;
                        }
                    }
                    _ => other.push((answer.status, answer.body)),
                }
            }
            (created, refused, shielded, other)
        }));
    }
    let (mut created, mut refused, mut shielded) = (0, 0, 0);
    for task in tasks {
        let (c, r, s, other) = task.await.expect("task");
        assert!(other.is_empty(), "unexpected answers: {other:?}");
        created += c;
        refused += r;
        shielded += s;
    }
    assert_eq!(created, CAPACITY as usize);
    assert_eq!(refused, ATTEMPTS - CAPACITY as usize);
    let admin = coordinator.admin();
    assert_eq!(admin.used("crowd", "vans", SLOT).await, CAPACITY);
    let placed = events(&redis, "crowd").iter().filter(|(_, t, _)| t == "reservation_placed").count();
    assert_eq!(placed, CAPACITY as usize, "one reservation per 201");
    eprintln!("flash crowd through the edge: {created} created, {refused} refused ({shielded} at the edge)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_coordinator_mid_run_loses_no_attempt_and_makes_none_twice() {
    const ATTEMPTS: usize = 300;
    const TASKS: usize = 8;
    let redis = TestRedis::start();
    let mut first = CoordinatorProcess::start(&redis).await;
    let second = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&first.base, &second.base], &[("ALLOT_SHIELD_AGE_MS", "0")]).await;
    let admin = second.admin();
    admin.set_capacity("failover", &[("vans", SLOT, 1_000)]).await;
    let api = Arc::new(edge.api());
    let killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let api = Arc::clone(&api);
        tasks.push(tokio::spawn(async move {
            let (mut created, mut unavailable, mut other) = (0usize, 0usize, Vec::new());
            for _ in (task..ATTEMPTS).step_by(TASKS) {
                let answer = api.reserve("failover", &one_item("vans", SLOT, 1), None).await;
                match answer.status {
                    201 => created += 1,
                    503 => {
                        assert_eq!(answer.slug(), "unavailable");
                        assert!(answer.header("retry-after").is_some());
                        unavailable += 1;
                    }
                    _ => other.push((answer.status, answer.body)),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (created, unavailable, other)
        }));
    }
    // Kill the first coordinator (by pid, SIGKILL) while attempts are flowing.
    let watcher = {
        let admin = admin.clone();
        let killed = Arc::clone(&killed);
        async move {
            while admin.used("failover", "vans", SLOT).await < 60 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            first.kill();
            killed.store(true, Ordering::SeqCst);
            first
        }
    };
    let _first = watcher.await;
    let (mut created, mut unavailable) = (0, 0);
    for task in tasks {
        let (c, u, other) = task.await.expect("task");
        assert!(other.is_empty(), "unexpected answers: {other:?}");
        created += c;
        unavailable += u;
    }
    assert!(killed.load(Ordering::SeqCst));
    assert_eq!(created + unavailable, ATTEMPTS, "every attempt ends in a reservation or a clear 503");
    assert_eq!(admin.used("failover", "vans", SLOT).await, created as u64, "used equals the number of 201s");
    let placed = events(&redis, "failover").iter().filter(|(_, t, _)| t == "reservation_placed").count();
    assert_eq!(placed, created, "never two reservations for one attempt");
    eprintln!("failover: {created} created, {unavailable} answered 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_bad_input_like_the_coordinator_without_forwarding_it() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    coordinator.admin().set_capacity("bad", &[("vans", SLOT, 10)]).await;
    let before = coordinator.api_requests().await;
    let http = crate::common::client();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in crate::bad_input::cases() {
        // Admin endpoints do not exist at the edge: those cases are 404 there, checked above.
        if case.path.contains("/capacity") || case.status == 404 {
            continue;
        }
        checked += 1;
        let answer = send(case.request(&http, &edge.base)).await;
        failures.extend(case.mismatches(&answer));
    }
    assert!(checked >= 30, "the table sent {checked} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(coordinator.api_requests().await, before, "nothing reached the coordinator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_view_refuses_at_the_edge_without_asking_the_coordinator() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge =
        TestEdge::start(&[&coordinator.base], &[("ALLOT_CACHE_TTL_MS", "5000"), ("ALLOT_SHIELD_AGE_MS", "5000")]).await;
    let admin = coordinator.admin();
    admin.set_capacity("shield", &[("vans", SLOT, 1), ("pickers", SLOT, 4)]).await;
    let customer = edge.api();
    assert_eq!(customer.reserve("shield", &one_item("vans", SLOT, 1), None).await.status, 201);
    // The edge's live view of the site, once the change has reached it: vans sold out.
    wait_for_stream(&customer, "shield", "").await;
    wait_until_edge_shows(&customer, "shield", |body| remaining(body, "vans") == Some(0)).await;

    let before = coordinator.reservation_posts().await;
    let body = json!({"items": [
        {"resource": "pickers", "slot": SLOT, "quantity": 1},
        {"resource": "vans", "slot": SLOT, "quantity": 1},
    ]});
    let refused = customer.reserve("shield", &body, None).await;
    assert_eq!((refused.status, refused.slug()), (409, "insufficient-capacity"));
    assert_eq!(refused.header("allot-shielded"), Some("true"));
    assert_eq!(refused.body["shortages"], json!([{"resource": "vans", "slot": SLOT, "requested": 1, "remaining": 0}]));
    assert_eq!(coordinator.reservation_posts().await, before, "refused without asking the coordinator");
    // Items the view does not show as sold out are still forwarded: only the coordinator says yes.
    assert_eq!(customer.reserve("shield", &one_item("pickers", SLOT, 4), None).await.status, 201);
    assert_eq!(coordinator.reservation_posts().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_from_the_coordinator_loads_the_view_that_shields_the_next_attempts() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge =
        TestEdge::start(&[&coordinator.base], &[("ALLOT_CACHE_TTL_MS", "5000"), ("ALLOT_SHIELD_AGE_MS", "5000")]).await;
    coordinator.admin().set_capacity("learn", &[("vans", SLOT, 0)]).await;
    let customer = edge.api();
    let first = customer.reserve("learn", &one_item("vans", SLOT, 1), None).await;
    assert_eq!((first.status, first.header("allot-shielded")), (409, None), "the first refusal is the coordinator's");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = customer.reserve("learn", &one_item("vans", SLOT, 1), None).await;
        assert_eq!(next.status, 409);
        if next.header("allot-shielded") == Some("true") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the edge never loaded the site's view");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_at_the_edge() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    let before = coordinator.reservation_posts().await;
    let address = edge.base.trim_start_matches("http://").to_owned();
    // No Content-Length: chunked transfer encoding, 80 KiB in 8 KiB chunks.
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let head = format!(
            "POST /v1/sites/big/reservations HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("head");
        let chunk = "x".repeat(8 * 1024);
        for _ in 0..10 {
            // The edge may answer and close before all chunks are sent.
            if stream.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
    .await
    .expect("task");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload-too-large"), "{answer}");
    assert_eq!(coordinator.reservation_posts().await, before, "nothing forwarded");
}
