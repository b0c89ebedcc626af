//! Malformed requests: each gets its 4xx problem+json, none a 5xx, and nothing changes.

use serde_json::json;

use crate::common::{Api, TestCoordinator, TestRedis, events, send};

const SLOT: &str = "2026-12-01T10:00Z";
const ID: &str = "6f9619ff-8b86-4011-b42d-00c04fc964ff";

/// One malformed request: method, path, content type, body, extra header, expected status and slug.
pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
    pub header: Option<(&'static str, String)>,
    pub status: u16,
    pub slug: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    slug: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: body.into(),
        header: None,
        status,
        slug,
    }
}

fn item(quantity: serde_json::Value) -> String {
    json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": quantity}]}).to_string()
}

/// The table of malformed requests, shared with the edge tests.
pub fn cases() -> Vec<Case> {
    let reservations = "/v1/sites/bad/reservations";
    let capacity = "/v1/sites/bad/capacity";
    let many_items: Vec<_> =
        (0..33).map(|i| json!({"resource": "vans", "slot": format!("s{i}"), "quantity": 1})).collect();
    let many_counters: Vec<_> =
        (0..10_001).map(|i| json!({"resource": "v", "slot": format!("s{i}"), "capacity": 1})).collect();
    let many_zones: Vec<String> = (0..65).map(|i| format!("z{i}")).collect();
    let mut cases = vec![
        case("empty body", "POST", reservations, "", 400, "malformed-request"),
        case("not json", "POST", reservations, "items=1", 400, "malformed-request"),
        case("json array", "POST", reservations, "[]", 400, "malformed-request"),
        case("truncated json", "POST", reservations, r#"{"items":[{"resource":"vans""#, 400, "malformed-request"),
        case("missing items", "POST", reservations, "{}", 400, "malformed-request"),
        case("unknown field", "POST", reservations, json!({"items": [], "colour": "red"}).to_string(), 400, "malformed-request"),
        case("unknown item field", "POST", reservations, json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 1, "x": 1}]}).to_string(), 400, "malformed-request"),
        case("quantity as string", "POST", reservations, item(json!("1")), 400, "malformed-request"),
        case("fractional quantity", "POST", reservations, item(json!(1.5)), 400, "malformed-request"),
        case("zero quantity", "POST", reservations, item(json!(0)), 422, "validation-failed"),
        case("negative quantity", "POST", reservations, item(json!(-3)), 422, "validation-failed"),
        case("quantity too large", "POST", reservations, item(json!(1_000_001)), 422, "validation-failed"),
        case("no items", "POST", reservations, json!({"items": []}).to_string(), 422, "validation-failed"),
        case("33 items", "POST", reservations, json!({"items": many_items}).to_string(), 422, "validation-failed"),
        case("duplicate items", "POST", reservations, json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 1}, {"resource": "vans", "slot": SLOT, "quantity": 2}]}).to_string(), 422, "validation-failed"),
        case("uppercase resource", "POST", reservations, json!({"items": [{"resource": "Vans", "slot": SLOT, "quantity": 1}]}).to_string(), 400, "malformed-request"),
        case("resource too long", "POST", reservations, json!({"items": [{"resource": "v".repeat(65), "slot": SLOT, "quantity": 1}]}).to_string(), 400, "malformed-request"),
        case("slot with a space", "POST", reservations, json!({"items": [{"resource": "vans", "slot": "10 am", "quantity": 1}]}).to_string(), 400, "malformed-request"),
        case("slot too long", "POST", reservations, json!({"items": [{"resource": "vans", "slot": "9".repeat(41), "quantity": 1}]}).to_string(), 400, "malformed-request"),
        case("hold of zero", "POST", reservations, json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 1}], "hold_seconds": 0}).to_string(), 422, "validation-failed"),
        case("hold over a day", "POST", reservations, json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 1}], "hold_seconds": 86_401}).to_string(), 422, "validation-failed"),
        case("customer too long", "POST", reservations, json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 1}], "customer": "c".repeat(129)}).to_string(), 422, "validation-failed"),
        case("zone pattern", "POST", reservations, json!({"items": [{"resource": "vans", "slot": SLOT, "quantity": 1}], "zone": "North"}).to_string(), 400, "malformed-request"),
        case("body over 64 KiB", "POST", reservations, format!("{{\"customer\":\"{}\"}}", "c".repeat(70_000)), 413, "payload-too-large"),
        case("bad site id", "POST", "/v1/sites/Bad%20Site/reservations", item(json!(1)), 400, "malformed-request"),
        case("site id too long", "GET", &format!("/v1/sites/{}/availability", "s".repeat(65)), "", 400, "malformed-request"),
        case("bad reservation id", "GET", "/v1/sites/bad/reservations/not-a-uuid", "", 400, "malformed-request"),
        case("unknown reservation", "GET", &format!("/v1/sites/bad/reservations/{ID}"), "", 404, "not-found"),
        case("confirm unknown", "POST", &format!("/v1/sites/bad/reservations/{ID}/confirm"), "", 404, "not-found"),
        case("cancel unknown", "DELETE", &format!("/v1/sites/bad/reservations/{ID}"), "", 404, "not-found"),
        case("unknown route", "GET", "/v1/nothing-here", "", 404, "not-found"),
        case("wrong method", "PATCH", capacity, "{}", 405, "method-not-allowed"),
        case("unknown query field", "GET", "/v1/sites/bad/availability?colour=red", "", 400, "malformed-request"),
        case("bad query slot", "GET", "/v1/sites/bad/availability?from=a%20b", "", 400, "malformed-request"),
        case("repeated query field", "GET", "/v1/sites/bad/availability?resource=a&resource=b", "", 400, "malformed-request"),
        case("no counters", "PUT", capacity, json!({"counters": []}).to_string(), 422, "validation-failed"),
        case("10,001 counters", "PUT", capacity, json!({"counters": many_counters}).to_string(), 422, "validation-failed"),
        case("negative capacity", "PUT", capacity, json!({"counters": [{"resource": "v", "slot": "s", "capacity": -1}]}).to_string(), 422, "validation-failed"),
        case("capacity too large", "PUT", capacity, json!({"counters": [{"resource": "v", "slot": "s", "capacity": 1_000_000_001u64}]}).to_string(), 422, "validation-failed"),
        case("duplicate counters", "PUT", capacity, json!({"counters": [{"resource": "v", "slot": "s", "capacity": 1}, {"resource": "v", "slot": "s", "capacity": 2}]}).to_string(), 422, "validation-failed"),
        case("empty zones", "PUT", capacity, json!({"counters": [{"resource": "v", "slot": "s", "capacity": 1, "zones": []}]}).to_string(), 422, "validation-failed"),
        case("65 zones", "PUT", capacity, json!({"counters": [{"resource": "v", "slot": "s", "capacity": 1, "zones": many_zones}]}).to_string(), 422, "validation-failed"),
        case("capacity body over 1 MiB", "PUT", capacity, format!("{{\"counters\":[],\"pad\":\"{}\"}}", "p".repeat(1_100_000)), 413, "payload-too-large"),
        case("capacity not json", "PUT", capacity, "counters", 400, "malformed-request"),
    ];
    let mut text_body = case("text/plain body", "POST", reservations, item(json!(1)), 415, "unsupported-media-type");
    text_body.content_type = Some("text/plain");
    cases.push(text_body);
    let mut no_type = case(
        "no content type",
        "PUT",
        capacity,
        json!({"counters": [{"resource": "v", "slot": "s", "capacity": 1}]}).to_string(),
        415,
        "unsupported-media-type",
    );
    no_type.content_type = None;
    cases.push(no_type);
    let mut long_key = case("idempotency key too long", "POST", reservations, item(json!(1)), 400, "malformed-request");
    long_key.header = Some(("idempotency-key", "k".repeat(256)));
    cases.push(long_key);
    let mut control_key =
        case("idempotency key with a tab", "POST", reservations, item(json!(1)), 400, "malformed-request");
    control_key.header = Some(("idempotency-key", "a\tb".to_owned()));
    cases.push(control_key);
    cases
}

impl Case {
    /// What is wrong with `answer` for this case: its status and slug, a problem+json body
    /// with the status repeated and a title. Empty when it is right.
    pub fn mismatches(&self, answer: &crate::common::Answer) -> Vec<String> {
        let mut wrong = Vec::new();
        let content_type = answer.header("content-type").unwrap_or_default();
        if answer.status != self.status || answer.slug() != self.slug || content_type != "application/problem+json" {
            wrong.push(format!(
                "{}: expected {} {}, got {} {} ({content_type}) {}",
                self.name,
                self.status,
                self.slug,
                answer.status,
                answer.slug(),
                answer.body
            ));
        }
        if answer.body["status"] != answer.status || answer.body["title"].as_str().is_none_or(str::is_empty) {
            wrong.push(format!("{}: problem body incomplete: {}", self.name, answer.body));
        }
        wrong
    }

    /// The request, aimed at `base`.
    pub fn request(&self, http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut request = http.request(method, format!("{base}{}", self.path)).body(self.body.clone());
        if let Some(content_type) = self.content_type {
            request = request.header("content-type", content_type);
        }
        if let Some((name, value)) = &self.header {
            request = request.header(*name, value.as_str());
        }
        request
    }
}

#[tokio::test]
async fn every_malformed_request_gets_its_problem_and_changes_nothing() {
    let redis = TestRedis::start();
    let coordinator = TestCoordinator::start(&redis).await;
    let api = Api::new(&coordinator.base);
    api.set_capacity("bad", &[("vans", SLOT, 10)]).await;
    let before = api.availability("bad", "").await.body;
    let events_before = events(&redis, "bad").len();

    let cases = cases();
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let answer = send(case.request(&api.http, &api.base)).await;
        failures.extend(case.mismatches(&answer));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(api.availability("bad", "").await.body, before, "state unchanged");
    assert_eq!(events(&redis, "bad").len(), events_before, "no event written");
    coordinator.assert_consistent("bad").await;
}
