//! The dashboard's HTTP side: its static files (public, with a strict policy) and the admin-only
//! per-site rates it polls. The page itself is tested in Chromium (`browser.rs`).

use allot_core::http::auth::Auth;
use allot_core::store::StoreSettings;

use crate::common::{Api, TestCoordinator, TestRedis, client, one_item, send};

const SLOT: &str = "2026-12-01T10:00Z";

#[tokio::test]
async fn the_dashboard_files_are_served_with_a_strict_policy() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ] {
        let answer = send(client().get(format!("{}{path}", coordinator.base))).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(answer.header("content-type").is_some_and(|t| t.starts_with(kind)), "{path}");
        let policy = answer.header("content-security-policy").expect("a policy");
        assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    }
    let html = client().get(format!("{}/dashboard", coordinator.base)).send().await.expect("page").text().await;
    let html = html.expect("text");
    assert!(html.contains("/dashboard/dashboard.js") && html.contains("/dashboard/dashboard.css"));
    assert!(!html.contains("<style") && !html.contains("style=\""), "nothing inline the policy would block");
}

#[tokio::test]
async fn stats_count_placed_and_refused_attempts_and_need_the_admin_token() {
    let redis = TestRedis::start();
    let coordinator =
        TestCoordinator::start_with(&redis, Auth::new(Some("admin"), Some("secret")), StoreSettings::default()).await;
    let admin = Api { token: Some("admin".to_owned()), ..Api::new(&coordinator.base) };
    admin.set_capacity("rates", &[("vans", SLOT, 2)]).await;
    assert_eq!(admin.reserve("rates", &one_item("vans", SLOT, 1), Some("k1")).await.status, 201);
    // A replay is neither placed nor refused again.
    assert_eq!(admin.reserve("rates", &one_item("vans", SLOT, 1), Some("k1")).await.status, 200);
    for _ in 0..4 {
        admin.reserve("rates", &one_item("vans", SLOT, 1), None).await;
    }
    // Another site's attempts are its own.
    assert_eq!(admin.reserve("other", &one_item("vans", SLOT, 1), None).await.status, 409);

    let stats = send(admin.http.get(format!("{}/v1/sites/rates/stats", coordinator.base)).bearer_auth("admin")).await;
    assert_eq!(stats.status, 200, "{:?}", stats.body);
    assert_eq!(stats.body["window_seconds"], 60);
    let seconds = stats.body["seconds"].as_array().expect("seconds");
    let sum = |field: &str| seconds.iter().map(|s| s[field].as_u64().expect("a count")).sum::<u64>();
    assert_eq!((sum("placed"), sum("refused")), (2, 3));

    let anonymous = send(client().get(format!("{}/v1/sites/rates/stats", coordinator.base))).await;
    assert_eq!((anonymous.status, anonymous.slug()), (401, "unauthorized"));
    let query =
        send(admin.http.get(format!("{}/v1/sites/rates/stats?x=1", coordinator.base)).bearer_auth("admin")).await;
    assert_eq!((query.status, query.slug()), (400, "malformed-request"));
}
