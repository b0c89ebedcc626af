//! Capacity changes, zones, unknown counters, availability queries and versions.

use serde_json::json;

use crate::common::{Api, TestCoordinator, TestRedis, events, one_item};

const SLOT: &str = "2026-12-01T10:00Z";

#[tokio::test]
async fn capacity_lowered_below_used_refuses_until_it_rises_again() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("lower", &[("vans", SLOT, 5)]).await;
    let kept = api.reserve("lower", &one_item("vans", SLOT, 4), None).await;
    assert_eq!(kept.status, 201);

    let lowered = api.set_capacity("lower", &[("vans", SLOT, 2)]).await;
    assert_eq!(lowered.status, 200);
    assert_eq!(lowered.body["counters"][0]["used"], 4);
    assert_eq!(lowered.body["counters"][0]["remaining"], 0);
    let refused = api.reserve("lower", &one_item("vans", SLOT, 1), None).await;
    assert_eq!(refused.body["shortages"][0]["remaining"], 0);

    // Cancelling brings used below capacity again.
    api.cancel("lower", kept.body["id"].as_str().expect("id")).await;
    assert_eq!(api.reserve("lower", &one_item("vans", SLOT, 2), None).await.status, 201);
    assert_eq!(api.reserve("lower", &one_item("vans", SLOT, 1), None).await.status, 409);
    api.set_capacity("lower", &[("vans", SLOT, 3)]).await;
    assert_eq!(api.reserve("lower", &one_item("vans", SLOT, 1), None).await.status, 201);
    coordinator.assert_consistent("lower").await;

    let kinds: Vec<String> = events(&redis, "lower").into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(
        kinds,
        [
            "capacity_changed",
            "reservation_placed", // 4 of 5 is under the 90 % threshold
            "capacity_changed",
            "counter_full", // capacity 2 < used 4
            "reservation_cancelled",
            "counter_reopened", // used 0 of 2
            "reservation_placed",
            "counter_full", // 2 of 2
            "capacity_changed",
            "counter_reopened", // 2 of 3
            "reservation_placed",
            "counter_full",
        ]
    );
}

#[tokio::test]
async fn zones_restrict_who_may_reserve_a_counter() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    let body = json!({"counters": [
        {"resource": "vans", "slot": SLOT, "capacity": 5, "zones": ["north", "east"]},
        {"resource": "pickers", "slot": SLOT, "capacity": 5},
    ]});
    let set = api.put_capacity("zones", &body).await;
    assert_eq!(set.status, 200);
    assert_eq!(set.body["counters"][1]["zones"], json!(["north", "east"]));

    let both = |zone: Option<&str>| {
        let mut body = json!({"items": [
            {"resource": "vans", "slot": SLOT, "quantity": 1},
            {"resource": "pickers", "slot": SLOT, "quantity": 1},
        ]});
        if let Some(zone) = zone {
            body["zone"] = json!(zone);
        }
        body
    };
    for zone in [None, Some("south")] {
        let refused = api.reserve("zones", &both(zone), None).await;
        assert_eq!((refused.status, refused.slug()), (422, "zone-not-allowed"), "{zone:?}");
        assert!(refused.body["detail"].as_str().unwrap_or_default().contains("vans@"));
    }
    assert_eq!(api.reserve("zones", &both(Some("east")), None).await.status, 201);
    // A counter without an allow-list takes any zone, or none.
    assert_eq!(api.reserve("zones", &one_item("pickers", SLOT, 1), None).await.status, 201);
    assert_eq!(api.used("zones", "pickers", SLOT).await, 2);

    // Setting the counter again without zones lifts the restriction.
    api.set_capacity("zones", &[("vans", SLOT, 5)]).await;
    assert_eq!(api.reserve("zones", &both(None), None).await.status, 201);
    coordinator.assert_consistent("zones").await;
}

#[tokio::test]
async fn unknown_counters_have_no_capacity() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    let never = api.availability("never-configured", "").await;
    assert_eq!(never.status, 200);
    assert_eq!(never.body, json!({"site": "never-configured", "version": "0-0", "counters": []}));
    let refused = api.reserve("never-configured", &one_item("vans", SLOT, 1), None).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["shortages"], json!([{"resource": "vans", "slot": SLOT, "requested": 1, "remaining": 0}]));
    assert!(events(&redis, "never-configured").is_empty(), "a refusal writes no event");
}

#[tokio::test]
async fn availability_filters_sorts_and_answers_304_for_a_known_version() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity(
        "query",
        &[
            ("vans", "2026-12-02", 1),
            ("vans", "2026-12-01", 1),
            ("vans-xl", "2026-12-01", 1),
            ("pickers", "2026-12-03", 1),
            ("van", "2026-12-01", 1),
        ],
    )
    .await;
    let listed = |answer: &crate::common::Answer| -> Vec<String> {
        answer.body["counters"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| format!("{}@{}", c["resource"].as_str().unwrap_or(""), c["slot"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = api.availability("query", "").await;
    assert_eq!(
        listed(&all),
        ["pickers@2026-12-03", "van@2026-12-01", "vans@2026-12-01", "vans@2026-12-02", "vans-xl@2026-12-01"]
    );
    assert_eq!(listed(&api.availability("query", "?resource=vans").await), ["vans@2026-12-01", "vans@2026-12-02"]);
    assert_eq!(listed(&api.availability("query", "?resource=vans&from=2026-12-02").await), ["vans@2026-12-02"]);
    assert_eq!(listed(&api.availability("query", "?resource=vans&to=2026-12-02").await), ["vans@2026-12-01"]);
    assert_eq!(
        listed(&api.availability("query", "?from=2026-12-02&to=2026-12-04").await),
        ["pickers@2026-12-03", "vans@2026-12-02"]
    );

    let etag = all.header("etag").expect("etag").to_owned();
    assert_eq!(etag, format!("\"{}\"", all.body["version"].as_str().expect("version")));
    let not_modified = crate::common::send(
        api.http.get(format!("{}/v1/sites/query/availability", api.base)).header("If-None-Match", &etag),
    )
    .await;
    assert_eq!(not_modified.status, 304);
    api.reserve("query", &one_item("van", "2026-12-01", 1), None).await;
    let changed = crate::common::send(
        api.http.get(format!("{}/v1/sites/query/availability", api.base)).header("If-None-Match", &etag),
    )
    .await;
    assert_eq!(changed.status, 200, "a new event is a new version");
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn a_site_holds_a_bounded_number_of_counters() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    let limit = allot_shared::limits::COUNTERS_PER_SITE_MAX;
    let per_put = allot_shared::limits::COUNTERS_PER_PUT_MAX;
    let mut next = 0;
    while next < limit {
        let counters: Vec<_> = (next..(next + per_put).min(limit))
            .map(|i| json!({"resource": "seat", "slot": format!("s{i:06}"), "capacity": 1}))
            .collect();
        next += counters.len();
        assert_eq!(api.put_capacity("big", &json!({ "counters": counters })).await.status, 200);
    }
    let one_more = json!({"counters": [{"resource": "seat", "slot": "z", "capacity": 1}, {"resource": "seat", "slot": "s000000", "capacity": 2}]});
    let refused = api.put_capacity("big", &one_more).await;
    assert_eq!((refused.status, refused.slug()), (422, "validation-failed"));
    // Nothing of the refused PUT was applied, not even its change to an existing counter.
    let first = api.availability("big", "?resource=seat&to=s000001").await;
    assert_eq!(first.body["counters"][0]["capacity"], 1);
    // Changing existing counters is still fine.
    assert_eq!(
        api.put_capacity("big", &json!({"counters": [{"resource": "seat", "slot": "s000000", "capacity": 2}]}))
            .await
            .status,
        200
    );
    assert_eq!(api.availability("big", "").await.body["counters"].as_array().map(Vec::len), Some(limit));
}
