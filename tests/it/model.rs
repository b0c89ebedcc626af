//! A property test: random sequences of operations run against the real store (real Redis,
//! real scripts) and against a plain in-memory model; after every step the outcome, every
//! counter, the events written, and the audit must agree.

use std::cell::Cell;
use std::collections::HashMap;

use allot_core::store::{CapacityOutcome, ConfirmOutcome, ReserveOutcome, Store};
use allot_shared::{
    AvailabilityQuery, CapacityRequest, IdempotencyKey, ReservationId, ReservationRequest, ReservationStatus,
};
use proptest::prelude::*;
use serde_json::json;

use crate::common::{TestRedis, events, site_id};

const RESOURCES: [&str; 3] = ["vans", "pickers", "rooms"];
const SLOT: &str = "2026-12-01";
const THRESHOLD_PERCENT: u64 = 90;
/// Holds long enough never to end during a case: expiry has its own tests.
const HOLD_SECONDS: u64 = 3_600;

#[derive(Debug, Clone)]
enum Op {
    SetCapacity { counter: usize, capacity: u64 },
    Reserve { items: Vec<(usize, u64)>, hold: bool, key: Option<u8> },
    Confirm(usize),
    Cancel(usize),
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3usize, 0..8u64).prop_map(|(counter, capacity)| Op::SetCapacity { counter, capacity }),
        5 => (
            proptest::sample::subsequence(vec![0usize, 1, 2], 1..=3),
            proptest::collection::vec(1..4u64, 3),
            any::<bool>(),
            proptest::option::of(0..3u8),
        )
            .prop_map(|(counters, quantities, hold, key)| Op::Reserve {
                items: counters.into_iter().zip(quantities).collect(),
                hold,
                key,
            }),
        2 => (0..16usize).prop_map(Op::Confirm),
        2 => (0..16usize).prop_map(Op::Cancel),
        1 => (0..16usize).prop_map(Op::Read),
    ]
}

#[derive(Debug, Clone, Copy)]
struct ModelCounter {
    capacity: u64,
    used: u64,
}

fn level(counter: ModelCounter) -> u8 {
    if counter.capacity <= counter.used {
        2
    } else if counter.used * 100 >= THRESHOLD_PERCENT * counter.capacity {
        1
    } else {
        0
    }
}

fn transition(before: Option<ModelCounter>, after: ModelCounter) -> Option<&'static str> {
    let before = level(before?);
    match (before, level(after)) {
        (b, 2) if b != 2 => Some("counter_full"),
        (2, a) if a != 2 => Some("counter_reopened"),
        (0, 1) => Some("counter_almost_full"),
        _ => None,
    }
}

struct ModelReservation {
    id: ReservationId,
    items: Vec<(usize, u64)>,
    status: ReservationStatus,
}

#[derive(Default)]
struct Model {
    counters: [Option<ModelCounter>; 3],
    reservations: Vec<ModelReservation>,
    keys: HashMap<u8, (String, usize)>,
}

impl Model {
    fn counter(&self, index: usize) -> ModelCounter {
        self.counters[index].unwrap_or(ModelCounter { capacity: 0, used: 0 })
    }

    /// Moves `used` of the reservation's counters by `sign * quantity`; returns transitions.
    fn apply(&mut self, items: &[(usize, u64)], add: bool) -> Vec<&'static str> {
        let mut events = Vec::new();
        for (index, quantity) in items {
            let before = self.counter(*index);
            let used = if add { before.used + quantity } else { before.used - quantity };
            let after = ModelCounter { capacity: before.capacity, used };
            self.counters[*index] = Some(after);
            events.extend(transition(Some(before), after));
        }
        events
    }
}

fn reservation_request(items: &[(usize, u64)], hold: bool) -> ReservationRequest {
    let items: Vec<_> =
        items.iter().map(|(c, q)| json!({"resource": RESOURCES[*c], "slot": SLOT, "quantity": q})).collect();
    let mut body = json!({ "items": items });
    if hold {
        body["hold_seconds"] = json!(HOLD_SECONDS);
    }
    ReservationRequest::parse(body.to_string().as_bytes()).expect("valid request")
}

/// Runs one op on store and model; returns the event types the model expects.
async fn step(store: &Store, site: &str, model: &mut Model, op: &Op) -> Result<Vec<&'static str>, TestCaseError> {
    let site_id = site_id(site);
    let mut expected = Vec::new();
    match op {
        Op::SetCapacity { counter, capacity } => {
            let body = json!({"counters": [{"resource": RESOURCES[*counter], "slot": SLOT, "capacity": capacity}]});
            let request = CapacityRequest::parse(body.to_string().as_bytes()).expect("valid");
            let outcome = store.set_capacity(&site_id, &request).await.expect("store");
            prop_assert!(matches!(outcome, CapacityOutcome::Set(_)));
            let before = model.counters[*counter];
            let after = ModelCounter { capacity: *capacity, used: before.map_or(0, |c| c.used) };
            model.counters[*counter] = Some(after);
            expected.push("capacity_changed");
            expected.extend(transition(before, after));
        }
        Op::Reserve { items, hold, key } => {
            let request = reservation_request(items, *hold);
            let fingerprint = request.fingerprint();
            let idempotency_key = key.map(|k| IdempotencyKey::parse(&format!("key-{k}")).expect("key"));
            let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
            let outcome = store.reserve(&site_id, &request, idempotency_key.as_ref(), &id).await.expect("store");
            if let Some((stored, index)) = key.and_then(|k| model.keys.get(&k)) {
                if *stored == fingerprint {
                    let ReserveOutcome::Replayed(reservation) = outcome else {
                        return Err(TestCaseError::fail(format!("expected a replay, got {outcome:?}")));
                    };
                    prop_assert_eq!(&reservation.id, &model.reservations[*index].id);
                    prop_assert_eq!(reservation.status, model.reservations[*index].status);
                } else {
                    prop_assert_eq!(outcome, ReserveOutcome::KeyReused);
                }
                return Ok(expected);
            }
            let short: Vec<(usize, u64, u64)> = items
                .iter()
                .filter_map(|(c, q)| {
                    let counter = model.counter(*c);
                    (counter.used + q > counter.capacity)
                        .then(|| (*c, *q, counter.capacity.saturating_sub(counter.used)))
                })
                .collect();
            if short.is_empty() {
                let ReserveOutcome::Placed(reservation) = outcome else {
                    return Err(TestCaseError::fail(format!("expected a placement, got {outcome:?}")));
                };
                let status = if *hold { ReservationStatus::Held } else { ReservationStatus::Confirmed };
                prop_assert_eq!(reservation.status, status);
                prop_assert_eq!(&reservation.id, &id);
                expected.push("reservation_placed");
                expected.extend(model.apply(items, true));
                model.reservations.push(ModelReservation { id, items: items.clone(), status });
                if let Some(k) = key {
                    model.keys.insert(*k, (fingerprint, model.reservations.len() - 1));
                }
            } else {
                let ReserveOutcome::Insufficient(shortages) = outcome else {
                    return Err(TestCaseError::fail(format!("expected a refusal, got {outcome:?}")));
                };
                let got: Vec<(String, u64, u64)> =
                    shortages.iter().map(|s| (s.resource.to_string(), s.requested, s.remaining)).collect();
                let want: Vec<(String, u64, u64)> =
                    short.iter().map(|(c, q, r)| (RESOURCES[*c].to_owned(), *q, *r)).collect();
                prop_assert_eq!(got, want);
            }
        }
        Op::Confirm(pick) => {
            let Some(index) = pick.checked_rem(model.reservations.len()) else { return Ok(expected) };
            let id = model.reservations[index].id.clone();
            let outcome = store.confirm(&site_id, &id).await.expect("store");
            match model.reservations[index].status {
                ReservationStatus::Held => {
                    prop_assert!(
                        matches!(outcome, ConfirmOutcome::Confirmed(ref r) if r.status == ReservationStatus::Confirmed)
                    );
                    model.reservations[index].status = ReservationStatus::Confirmed;
                    expected.push("reservation_confirmed");
                }
                ReservationStatus::Confirmed => prop_assert!(matches!(outcome, ConfirmOutcome::Confirmed(_))),
                _ => prop_assert!(matches!(outcome, ConfirmOutcome::NotHeld(_))),
            }
        }
        Op::Cancel(pick) => {
            let Some(index) = pick.checked_rem(model.reservations.len()) else { return Ok(expected) };
            let id = model.reservations[index].id.clone();
            let outcome = store.cancel(&site_id, &id).await.expect("store").expect("known");
            prop_assert_eq!(outcome.status, ReservationStatus::Cancelled);
            if model.reservations[index].status.is_live() {
                expected.push("reservation_cancelled");
                let items = model.reservations[index].items.clone();
                expected.extend(model.apply(&items, false));
                model.reservations[index].status = ReservationStatus::Cancelled;
            }
        }
        Op::Read(pick) => {
            let Some(index) = pick.checked_rem(model.reservations.len()) else { return Ok(expected) };
            let read = store.reservation(&site_id, &model.reservations[index].id).await.expect("store").expect("known");
            prop_assert_eq!(read.status, model.reservations[index].status);
        }
    }
    Ok(expected)
}

#[test]
fn the_store_behaves_like_the_model() {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let store = runtime.block_on(async {
        let store = Store::connect(&redis.url(), Default::default()).expect("store");
        store.load_functions().await.expect("functions load");
        store
    });
    let case = Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        case.set(case.get() + 1);
        let site = format!("model-{}", case.get());
        runtime.block_on(async {
            let mut model = Model::default();
            let mut seen = 0;
            for op in &ops {
                let expected = step(&store, &site, &mut model, op).await?;
                let written = events(&redis, &site);
                let types: Vec<&str> = written[seen..].iter().map(|(_, t, _)| t.as_str()).collect();
                prop_assert_eq!(&types, &expected, "events after {:?}", op);
                // Every event carries its counters as they stand after the (one, atomic) change.
                for (_, _, data) in &written[seen..] {
                    for counter in data["counters"].as_array().into_iter().flatten() {
                        let index = RESOURCES.iter().position(|r| counter["resource"] == *r).expect("resource");
                        let want = model.counter(index);
                        prop_assert_eq!(counter["used"].as_u64(), Some(want.used));
                        prop_assert_eq!(counter["capacity"].as_u64(), Some(want.capacity));
                    }
                }
                seen = written.len();
                let availability =
                    store.availability(&site_id(&site), &AvailabilityQuery::default()).await.expect("store");
                for counter in &availability.counters {
                    let index = RESOURCES.iter().position(|r| counter.resource.as_str() == *r).expect("resource");
                    let want = model.counter(index);
                    prop_assert_eq!(
                        (counter.capacity, counter.used),
                        (want.capacity, want.used),
                        "{}",
                        counter.resource
                    );
                    prop_assert_eq!(counter.remaining, want.capacity.saturating_sub(want.used));
                }
                let configured = model.counters.iter().filter(|c| c.is_some()).count();
                prop_assert_eq!(availability.counters.len(), configured);
                let version = written.last().map_or("0-0", |(id, _, _)| id.as_str());
                prop_assert_eq!(availability.version.to_string(), version);
                let audit = store.audit(&site_id(&site)).await.expect("audit");
                prop_assert!(audit.mismatches.is_empty(), "audit: {:?}", audit.mismatches);
                let live = model.reservations.iter().filter(|r| r.status.is_live()).count() as u64;
                prop_assert_eq!(audit.live_reservations, live);
            }
            Ok(())
        })
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
