//! Credentials: the admin bearer, the edge's signature, and what each may do.

use std::time::{SystemTime, UNIX_EPOCH};

use allot_core::http::auth::Auth;
use allot_shared::signature;

use crate::common::{Api, TestCoordinator, TestRedis, one_item, send};

const ADMIN: &str = "admin-token-for-tests";
const SECRET: &str = "edge-secret-for-tests";
const SLOT: &str = "2026-12-01";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn signed(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: &[u8],
    secret: &str,
    timestamp: u64,
) -> reqwest::RequestBuilder {
    let signature = signature::sign(secret.as_bytes(), method.as_str(), path, timestamp, body);
    http.request(method, format!("{base}{path}"))
        .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
        .header(signature::SIGNATURE_HEADER, signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
}

#[tokio::test]
async fn the_coordinator_needs_the_admin_token_or_the_edge_signature() {
    let redis = TestRedis::start();
    let coordinator =
        TestCoordinator::start_with(&redis, Auth::new(Some(ADMIN), Some(SECRET)), Default::default()).await;
    let base = coordinator.base.clone();
    let anonymous = Api::new(&base);
    let admin = Api { token: Some(ADMIN.to_owned()), ..Api::new(&base) };
    let wrong = Api { token: Some("not-the-token".to_owned()), ..Api::new(&base) };
    let http = anonymous.http.clone();

    // No credentials, or wrong ones: 401 on every /v1 endpoint, and nothing happens.
    let unauthorized = anonymous.set_capacity("auth", &[("vans", SLOT, 5)]).await;
    assert_eq!((unauthorized.status, unauthorized.slug()), (401, "unauthorized"));
    assert!(unauthorized.header("www-authenticate").is_some());
    assert_eq!(anonymous.availability("auth", "").await.status, 401);
    assert_eq!(anonymous.reserve("auth", &one_item("vans", SLOT, 1), None).await.status, 401);
    assert_eq!(wrong.availability("auth", "").await.status, 401);
    assert_eq!(wrong.set_capacity("auth", &[("vans", SLOT, 5)]).await.status, 401);
    // Ops endpoints stay open for probes and scrapers.
    assert_eq!(send(http.get(format!("{base}/healthz"))).await.status, 200);

    // The admin may do everything.
    assert_eq!(admin.set_capacity("auth", &[("vans", SLOT, 5)]).await.status, 200);
    assert_eq!(admin.availability("auth", "").await.status, 200);

    // The edge's signature opens client endpoints...
    let body = one_item("vans", SLOT, 1).to_string();
    let path = "/v1/sites/auth/reservations";
    let placed = send(signed(&http, reqwest::Method::POST, &base, path, body.as_bytes(), SECRET, now())).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    let id = placed.body["id"].as_str().expect("id");
    let read_path = format!("/v1/sites/auth/reservations/{id}");
    assert_eq!(send(signed(&http, reqwest::Method::GET, &base, &read_path, b"", SECRET, now())).await.status, 200);
    let query_path = "/v1/sites/auth/availability?resource=vans";
    assert_eq!(send(signed(&http, reqwest::Method::GET, &base, query_path, b"", SECRET, now())).await.status, 200);

    // ...but not admin ones: 403.
    let capacity = r#"{"counters":[{"resource":"vans","slot":"2026-12-01","capacity":500}]}"#;
    let forbidden =
        send(signed(&http, reqwest::Method::PUT, &base, "/v1/sites/auth/capacity", capacity.as_bytes(), SECRET, now()))
            .await;
    assert_eq!((forbidden.status, forbidden.slug()), (403, "forbidden"));

    // Forged: another secret, another body, another path, another method.
    let forged = [
        signed(&http, reqwest::Method::POST, &base, path, body.as_bytes(), "guess", now()),
        // Signed for one query, sent with another.
        http.get(format!("{base}/v1/sites/auth/availability?resource=pickers"))
            .header(signature::TIMESTAMP_HEADER, now().to_string())
            .header(
                signature::SIGNATURE_HEADER,
                signature::sign(SECRET.as_bytes(), "GET", "/v1/sites/auth/availability?resource=vans", now(), b""),
            ),
        // Signed for GET, sent as DELETE.
        http.delete(format!("{base}{read_path}"))
            .header(signature::TIMESTAMP_HEADER, now().to_string())
            .header(signature::SIGNATURE_HEADER, signature::sign(SECRET.as_bytes(), "GET", &read_path, now(), b"")),
        signed(&http, reqwest::Method::POST, &base, path, body.as_bytes(), SECRET, now())
            .body(one_item("vans", SLOT, 4).to_string()),
    ];
    for request in forged {
        let answer = send(request).await;
        assert_eq!((answer.status, answer.slug()), (401, "unauthorized"), "{:?}", answer.body);
    }
    // Replayed too late (or too early): outside the ±300 s window.
    // 310, not 301: a second may tick between signing and checking.
    for timestamp in [now() - 310, now() + 310] {
        let answer = send(signed(&http, reqwest::Method::POST, &base, path, body.as_bytes(), SECRET, timestamp)).await;
        assert_eq!(answer.status, 401);
        assert!(answer.body["detail"].as_str().unwrap_or_default().contains("clock window"));
    }
    assert_eq!(admin.used("auth", "vans", SLOT).await, 1, "only the one signed reservation went through");
}
