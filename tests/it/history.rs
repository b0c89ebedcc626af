//! The history checker of the fault tests: every client operation is recorded (when it was
//! sent, when it was answered, its outcome and ids); after the run, the store is checked
//! against it: every acknowledged reservation exists with its items, `used` equals the live
//! reservations on every counter, no counter ever exceeded its capacity (replaying the
//! stream), and no idempotency key made two reservations.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Api, send};

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 201 or 200: acknowledged, with the reservation id.
    Acknowledged(String),
    /// 409: refused (nothing changed).
    Refused,
    /// 503 or no answer: unknown, with the id the reservation has if it exists.
    Unknown(Option<String>),
}

/// One recorded attempt.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Its Idempotency-Key (also sent as `customer`, so the store can be searched by it).
    pub key: String,
    /// The counter's resource.
    pub resource: String,
    /// When it was sent and answered, from the start of the run.
    pub invoked: Duration,
    /// When it was answered.
    pub completed: Duration,
    /// What it got.
    pub outcome: Outcome,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct History {
    /// Every attempt, in completion order.
    pub operations: Vec<Operation>,
}

/// The slot every fault-test counter uses.
pub const SLOT: &str = "2026-12-01T10:00Z";

/// One reservation attempt of `key` on `resource` through `api` (for customer `key`).
pub async fn attempt(api: &Api, site: &str, key: &str, resource: &str, started: Instant) -> Operation {
    attempt_as(api, site, key, key, resource, started).await
}

/// One reservation attempt with Idempotency-Key `key` for `customer` (the checker counts
/// reservations per customer: a retry under a new key for the same customer doubles).
pub async fn attempt_as(
    api: &Api,
    site: &str,
    key: &str,
    customer: &str,
    resource: &str,
    started: Instant,
) -> Operation {
    let body = json!({"items": [{"resource": resource, "slot": SLOT, "quantity": 1}], "customer": customer});
    let invoked = started.elapsed();
    let request = api
        .http
        .post(format!("{}/v1/sites/{site}/reservations", api.base))
        .header("Idempotency-Key", key)
        .timeout(Duration::from_secs(5))
        .json(&body);
    let outcome = match request.send().await {
        Err(_) => Outcome::Unknown(None),
        Ok(response) => {
            let status = response.status().as_u16();
            let header =
                response.headers().get("allot-reservation-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200 | 201 => Outcome::Acknowledged(body["id"].as_str().unwrap_or_default().to_owned()),
                409 => Outcome::Refused,
                503 => {
                    let id = body["reservation_id"].as_str().map(str::to_owned);
                    assert_eq!(id, header, "the id is in the body and the header");
                    Outcome::Unknown(id)
                }
                other => panic!("attempt {key}: unexpected status {other}: {body}"),
            }
        }
    };
    Operation { key: key.to_owned(), resource: resource.to_owned(), invoked, completed: started.elapsed(), outcome }
}

/// `count` attempts with keys `<prefix>-<n>`, `concurrency` at a time, alternating between the
/// coordinators and spread over `resources`.
pub async fn load(
    apis: &[Api],
    site: &str,
    resources: &[&str],
    prefix: &str,
    count: usize,
    concurrency: usize,
    started: Instant,
) -> Vec<Operation> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let apis = apis.to_vec();
        let next = std::sync::Arc::clone(&next);
        let site = site.to_owned();
        let prefix = prefix.to_owned();
        let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    return done;
                }
                let api = &apis[(n + worker) % apis.len()];
                let key = format!("{prefix}-{n}");
                done.push(attempt(api, &site, &key, &resources[n % resources.len()], started).await);
            }
        }));
    }
    let mut operations = Vec::new();
    for task in tasks {
        operations.extend(task.await.expect("load task"));
    }
    operations
}

/// How many of `operations` were acknowledged.
pub fn acknowledged(operations: &[Operation]) -> usize {
    operations.iter().filter(|o| matches!(o.outcome, Outcome::Acknowledged(_))).count()
}

/// Acknowledged reservations among `operations` that the Redis at `url` (a replica, say) does
/// not have.
pub fn missing_at(operations: &[Operation], site: &str, url: &str) -> usize {
    let mut connection = redis::Client::open(url).expect("url").get_connection().expect("a connection");
    let site_id = crate::common::site_id(site);
    operations
        .iter()
        .filter_map(|o| match &o.outcome {
            Outcome::Acknowledged(id) => Some(id),
            _ => None,
        })
        .filter(|id| {
            let id = allot_shared::ReservationId::parse(id).expect("a reservation id");
            let exists: bool = redis::cmd("EXISTS")
                .arg(allot_core::store::keys::reservation(&site_id, &id))
                .query(&mut connection)
                .expect("EXISTS");
            !exists
        })
        .count()
}

/// What the checker found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Attempts made (retries included).
    pub attempts: usize,
    /// Keys acknowledged.
    pub acknowledged: usize,
    /// Acknowledged reservations missing from the store.
    pub lost: usize,
    /// Keys with more than one reservation.
    pub doubled: usize,
    /// Stream entries that show a counter over its capacity.
    pub oversold: usize,
    /// Counters whose `used` differs from their live reservations.
    pub inconsistent: usize,
    /// Acknowledged reservations whose items differ from what was asked.
    pub wrong_items: usize,
}

impl History {
    /// Records operations.
    pub fn extend(&mut self, operations: impl IntoIterator<Item = Operation>) {
        self.operations.extend(operations);
    }

    /// The last outcome of each key.
    fn last_by_key(&self) -> HashMap<&str, &Operation> {
        let mut last = HashMap::new();
        for operation in &self.operations {
            last.insert(operation.key.as_str(), operation);
        }
        last
    }

    /// Keys whose last outcome is unknown.
    pub fn unknown_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = self
            .last_by_key()
            .values()
            .filter(|o| matches!(o.outcome, Outcome::Unknown(_)))
            .map(|o| (o.key.clone(), o.resource.clone()))
            .collect();
        keys.sort();
        keys
    }

    /// Checks the store, through `api` and straight from Redis at `redis_url`, against the
    /// history.
    pub async fn check(&self, api: &Api, site: &str, redis_url: &str) -> Report {
        let mut report = Report { attempts: self.operations.len(), ..Report::default() };
        // Every key that was ever acknowledged must still have its reservation.
        let mut acknowledged: HashMap<&str, (&str, &str)> = HashMap::new();
        for operation in &self.operations {
            if let Outcome::Acknowledged(id) = &operation.outcome {
                acknowledged.insert(operation.key.as_str(), (id.as_str(), operation.resource.as_str()));
            }
        }
        report.acknowledged = acknowledged.len();
        for (id, resource) in acknowledged.values() {
            let answer = send(api.http.get(format!("{}/v1/sites/{site}/reservations/{id}", api.base))).await;
            match answer.status {
                200 => {
                    let items = &answer.body["items"];
                    if items != &json!([{"resource": resource, "slot": SLOT, "quantity": 1}]) {
                        report.wrong_items += 1;
                    }
                }
                404 => report.lost += 1,
                other => panic!("reading reservation {id}: {other} {:?}", answer.body),
            }
        }
        let mut connection =
            redis::Client::open(redis_url).expect("url").get_connection().expect("a connection to the primary");
        let site_id = crate::common::site_id(site);
        // Reservations per key (the key is the customer).
        let pattern = allot_core::store::keys::reservations_pattern(&site_id);
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut connection).expect("KEYS");
        let mut per_customer: HashMap<String, usize> = HashMap::new();
        for key in keys {
            let doc: Option<String> = redis::cmd("HGET").arg(&key).arg("doc").query(&mut connection).expect("HGET");
            let doc: Value = doc.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null);
            if let Some(customer) = doc["customer"].as_str() {
                *per_customer.entry(customer.to_owned()).or_default() += 1;
            }
        }
        report.doubled = per_customer.values().filter(|n| **n > 1).count();
        // No entry of the stream shows a counter over capacity.
        for (_, _, data) in crate::common::events_at(redis_url, site) {
            for counter in data["counters"].as_array().into_iter().flatten() {
                if counter["used"].as_u64() > counter["capacity"].as_u64() {
                    report.oversold += 1;
                }
            }
        }
        let store = allot_core::store::Store::connect(redis_url, Default::default()).expect("store");
        let audit = store.audit(&site_id).await.expect("audit");
        report.inconsistent = audit.mismatches.len();
        report
    }
}
