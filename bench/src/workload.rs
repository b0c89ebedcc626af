//! What the scenarios ask for: the counters of each site and the reservations sent to them.
//! Every request is derived from its sequence number with a seeded generator, so a run can be
//! repeated and the raw-script and HTTP variants of a scenario send the same mix.

use allot_shared::ReservationRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::{Value, json};

/// Counters of a `spread` site: a resource per 100 slots, like a region's delivery hubs.
pub const SPREAD_COUNTERS: usize = 10_000;
/// Slots per resource in a spread site.
const SPREAD_SLOTS: usize = 100;
/// Capacity of each spread counter: uniform picks never sell one out in a bench run; Zipf
/// picks sell out the hottest few, so the skewed run mixes acceptances and refusals.
pub const SPREAD_CAPACITY: u64 = 100;
/// The Zipf exponent of the skewed runs (about 10 % of picks land on the hottest counter).
pub const ZIPF_EXPONENT: f64 = 1.1;
/// Items in a `multi` reservation (a van, a driver and a picker, say).
pub const MULTI_ITEMS: usize = 3;
/// The hot counter's capacity for the flash crowd at the coordinator: sold out within the
/// first second, so most of the run is the refusal path, as in a real flash crowd.
pub const HOT_CAPACITY: u64 = 2_000;
/// The same through the edge, which serves far fewer requests per second locally.
pub const HOT_EDGE_CAPACITY: u64 = 200;

/// The one counter of single-counter scenarios.
pub const ONE_RESOURCE: &str = "vans";
/// Its slot.
pub const ONE_SLOT: &str = "2026-12-01T10:00Z";

/// The (resource, slot) of spread counter `index`.
pub fn spread_counter(index: usize) -> (String, String) {
    let resource = format!("hub-{:03}", index / SPREAD_SLOTS);
    let day = index % SPREAD_SLOTS;
    (resource, format!("2027-{:02}-{:02}", 1 + day / 28, 1 + day % 28))
}

/// The capacity body of a spread site.
pub fn spread_capacity() -> Value {
    let counters: Vec<Value> = (0..SPREAD_COUNTERS)
        .map(|i| {
            let (resource, slot) = spread_counter(i);
            json!({"resource": resource, "slot": slot, "capacity": SPREAD_CAPACITY})
        })
        .collect();
    json!({ "counters": counters })
}

/// The capacity body of a one-counter site.
pub fn one_counter_capacity(capacity: u64) -> Value {
    json!({"counters": [{"resource": ONE_RESOURCE, "slot": ONE_SLOT, "capacity": capacity}]})
}

/// How a reservation picks its spread counters.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// Every counter equally likely.
    Uniform,
    /// Zipf-skewed: a few counters get most of the demand.
    Zipf,
}

/// Makes the reservation bodies of a spread scenario.
#[derive(Debug, Clone)]
pub struct Spread {
    pick: Pick,
    zipf: Zipf<f64>,
    items: usize,
    salt: u64,
}

impl Spread {
    /// Reservations of `items` distinct counters each, picked by `pick`.
    pub fn new(pick: Pick, items: usize, salt: u64) -> Self {
        let zipf = Zipf::new(SPREAD_COUNTERS as f64, ZIPF_EXPONENT).expect("valid Zipf parameters");
        Self { pick, zipf, items, salt }
    }

    /// The one counter (index) of a one-item request `sequence`.
    pub fn counter(&self, sequence: u64) -> usize {
        self.counters(sequence)[0]
    }

    fn counters(&self, sequence: u64) -> Vec<usize> {
        let mut rng = SmallRng::seed_from_u64(sequence ^ self.salt.rotate_left(32));
        let mut picked = Vec::with_capacity(self.items);
        while picked.len() < self.items {
            let index = match self.pick {
                Pick::Uniform => rng.random_range(0..SPREAD_COUNTERS),
                // Zipf samples ranks 1..=n.
                Pick::Zipf => (self.zipf.sample(&mut rng) as usize).clamp(1, SPREAD_COUNTERS) - 1,
            };
            if !picked.contains(&index) {
                picked.push(index);
            }
        }
        picked
    }

    /// The JSON body of request `sequence`.
    pub fn body(&self, sequence: u64) -> Value {
        let items: Vec<Value> = self
            .counters(sequence)
            .into_iter()
            .map(|i| {
                let (resource, slot) = spread_counter(i);
                json!({"resource": resource, "slot": slot, "quantity": 1})
            })
            .collect();
        json!({ "items": items })
    }

    /// The checked request `sequence`, for the raw script.
    pub fn request(&self, sequence: u64) -> ReservationRequest {
        ReservationRequest::parse(self.body(sequence).to_string().as_bytes()).expect("bench bodies are valid")
    }
}

/// A one-item body for the single counter.
pub fn one_item_body() -> Value {
    json!({"items": [{"resource": ONE_RESOURCE, "slot": ONE_SLOT, "quantity": 1}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_valid_repeatable_and_distinct_within_one() {
        for pick in [Pick::Uniform, Pick::Zipf] {
            let spread = Spread::new(pick, MULTI_ITEMS, 7);
            for sequence in 0..200 {
                let request = spread.request(sequence);
                assert_eq!(request.items.len(), MULTI_ITEMS);
                assert_eq!(spread.body(sequence), spread.body(sequence));
            }
        }
    }

    #[test]
    fn zipf_concentrates_demand_and_uniform_does_not() {
        let hottest = |pick| {
            let spread = Spread::new(pick, 1, 1);
            (0..10_000).filter(|s| spread.counters(*s)[0] == 0).count()
        };
        assert!(hottest(Pick::Zipf) > 500, "the top rank gets a large share");
        assert!(hottest(Pick::Uniform) < 20, "uniform spreads it out");
    }
}
