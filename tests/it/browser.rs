//! The pages in a real browser: Debian's Chromium, driven by playwright-core from the scenarios
//! in `tests/browser/`. This side starts Redis, the coordinator (the `allot` binary) and the edge
//! (workerd), runs one scenario with their addresses, and then checks the store: what the page
//! showed must be what happened.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::common::{TestRedis, events};
use crate::edge_fixture::{ADMIN, CoordinatorProcess, TestEdge};

/// One scenario may take this long in all (browser start included) before it is killed.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);
/// Browsers running at once: each is several processes, and the machine has two cores.
const BROWSERS_AT_ONCE: usize = 2;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Where screenshots go: `target/screenshots/`.
fn screenshots() -> PathBuf {
    workspace().join("target/screenshots")
}

/// Runs `tests/browser/<name>.mjs` with `vars`, fails the test if it fails, and returns what it
/// printed on its `result:` line.
async fn run_scenario(name: &str, vars: &[(&str, String)]) -> Value {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    let permits = Arc::clone(PERMITS.get_or_init(|| Arc::new(Semaphore::new(BROWSERS_AT_ONCE))));
    let _permit = permits.acquire_owned().await.expect("permits are never closed");
    let chromium = std::env::var("ALLOT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).is_file(), "{chromium} is missing: apt-get install chromium (cargo xtask test does)");
    let script = workspace().join(format!("tests/browser/{name}.mjs"));
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .current_dir(workspace())
        .env("ALLOT_SCREENSHOTS", screenshots())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in vars {
        command.env(key, value);
    }
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{name}.mjs ran for more than {} s", SCENARIO_TIMEOUT.as_secs()))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name}.mjs failed ({}):\n{stdout}\n{stderr}", output.status);
    let line = stdout.lines().find_map(|l| l.strip_prefix("result: ")).expect("the scenario prints its result");
    serde_json::from_str(line).expect("the result is JSON")
}

/// The types of a site's events, in order.
fn event_types(redis: &TestRedis, site: &str) -> Vec<String> {
    events(redis, site).into_iter().map(|(_, kind, _)| kind).collect()
}

fn count(types: &[String], kind: &str) -> usize {
    types.iter().filter(|t| *t == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_race_for_the_last_unit_and_exactly_one_gets_it() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    let admin = coordinator.admin();
    let (site, resource, slot) = ("race-hub", "vans", "2026-12-01T10:00Z");
    let answer = admin
        .put_capacity(
            site,
            &json!({"counters": [
                {"resource": resource, "slot": slot, "capacity": 1},
                {"resource": resource, "slot": "2026-12-01T12:00Z", "capacity": 8},
                {"resource": resource, "slot": "2026-12-02T10:00Z", "capacity": 10},
                {"resource": resource, "slot": "2026-12-02T12:00Z", "capacity": 10},
                {"resource": "pickers", "slot": slot, "capacity": 4},
                {"resource": "pickers", "slot": "2026-12-01T12:00Z", "capacity": 4},
            ]}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    let outcome = run_scenario(
        "race",
        &[
            ("ALLOT_EDGE", edge.base.clone()),
            ("ALLOT_SITE", site.to_owned()),
            ("ALLOT_RESOURCE", resource.to_owned()),
            ("ALLOT_SLOT", slot.to_owned()),
        ],
    )
    .await;

    assert_eq!(admin.used(site, resource, slot).await, 1);
    let types = event_types(&redis, site);
    assert_eq!(count(&types, "reservation_placed"), 1, "{types:?}");
    assert_eq!(count(&types, "reservation_confirmed"), 1, "{types:?}");
    let placed = events(&redis, site).into_iter().find(|(_, kind, _)| kind == "reservation_placed").expect("placed");
    let id = placed.2["reservation"]["id"].as_str().expect("id").to_owned();
    let reference = outcome["winner_reference"].as_str().expect("reference");
    assert!(id.starts_with(reference), "the page confirmed {reference}, the store placed {id}");
    let stored = admin.reservation(site, &id).await;
    assert_eq!(stored.body["status"], "confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_expires_on_the_page_and_a_retried_attempt_reserves_once() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    let admin = coordinator.admin();
    let (site, resource, slot) = ("hold-hotel", "room-deluxe", "2026-12-24");
    let answer = admin.set_capacity(site, &[(resource, slot, 5), (resource, "2026-12-25", 5)]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    run_scenario(
        "hold",
        &[
            ("ALLOT_EDGE", edge.base.clone()),
            ("ALLOT_SITE", site.to_owned()),
            ("ALLOT_RESOURCE", resource.to_owned()),
            ("ALLOT_SLOT", slot.to_owned()),
            ("ALLOT_CAPACITY", "5".to_owned()),
            ("ALLOT_HOLD_SECONDS", "3".to_owned()),
        ],
    )
    .await;

    let types = event_types(&redis, site);
    assert_eq!(count(&types, "reservation_placed"), 1, "the retry is the same attempt: {types:?}");
    assert_eq!(count(&types, "reservation_expired"), 1, "{types:?}");
    assert_eq!(admin.used(site, resource, slot).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_the_edge_and_its_capacity_edit_reaches_the_booking_page() {
    let redis = TestRedis::start();
    let coordinator = CoordinatorProcess::start(&redis).await;
    let edge = TestEdge::start(&[&coordinator.base], &[]).await;
    let admin = coordinator.admin();
    let site = "ops-hub";
    let mut counters = Vec::new();
    for day in ["2026-12-01", "2026-12-02"] {
        for (at, capacity) in [("08:00Z", 10), ("10:00Z", 10), ("12:00Z", 6), ("14:00Z", 10)] {
            counters.push(json!({"resource": "vans", "slot": format!("{day}T{at}"), "capacity": capacity}));
            counters.push(json!({"resource": "pickers", "slot": format!("{day}T{at}"), "capacity": 4}));
        }
    }
    let answer = admin.put_capacity(site, &json!({ "counters": counters })).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // Some history for the chart and the heatmap: a pickers slot nearly full, then full.
    for quantity in [2, 1, 1] {
        let placed =
            admin.reserve(site, &crate::common::one_item("pickers", "2026-12-01T10:00Z", quantity), None).await;
        assert_eq!(placed.status, 201, "{:?}", placed.body);
    }

    let outcome = run_scenario(
        "dashboard",
        &[
            ("ALLOT_EDGE", edge.base.clone()),
            ("ALLOT_COORDINATOR", coordinator.base.clone()),
            ("ALLOT_ADMIN_TOKEN", ADMIN.to_owned()),
            ("ALLOT_SITE", site.to_owned()),
        ],
    )
    .await;

    // The scenario set vans on 2026-12-02 to 3 for the whole day, through the dashboard.
    let availability = admin.availability(site, "?resource=vans&from=2026-12-02&to=2026-12-03").await;
    let capacities: Vec<u64> = availability.body["counters"]
        .as_array()
        .expect("counters")
        .iter()
        .map(|c| c["capacity"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(capacities, vec![3, 3, 3, 3], "{:?}", availability.body);
    let placed_through_edge = outcome["reservation_id"].as_str().expect("reservation id");
    assert_eq!(admin.reservation(site, placed_through_edge).await.status, 200);
}
