//! Every size, count and time limit of the contract, named once so that the edge and the
//! coordinator enforce the same numbers. Units come last in each name.

/// Longest site, resource or zone id: the contract's pattern `^[a-z0-9][a-z0-9_-]{0,63}$`.
pub const ID_LEN_MAX: usize = 64;
/// Longest slot token: the contract's pattern `^[0-9A-Za-z:._+-]{1,40}$`.
pub const SLOT_LEN_MAX: usize = 40;
/// Longest `Idempotency-Key`: 255 printable ASCII characters, enough for a UUID or a composed key.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;
/// Largest request body in general; a reservation with 32 items fits in about 3 KiB.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest capacity PUT body: 10,000 counters with zones fit in well under 1 MiB.
pub const CAPACITY_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Items in one reservation: one Lua call touches at most this many counters.
pub const ITEMS_PER_RESERVATION_MAX: usize = 32;
/// Largest quantity of one item.
pub const QUANTITY_MAX: u64 = 1_000_000;
/// Counters in one capacity PUT: bounds the work of one set-capacity script.
pub const COUNTERS_PER_PUT_MAX: usize = 10_000;
/// Counters one site may hold in all: bounds an availability answer (about 2 MiB of JSON)
/// and the work of one availability script.
pub const COUNTERS_PER_SITE_MAX: usize = 20_000;
/// Largest capacity of one counter.
pub const CAPACITY_MAX: u64 = 1_000_000_000;
/// Zones in one counter's allow-list.
pub const ZONES_PER_COUNTER_MAX: usize = 64;
/// Longest hold: one day, after which a held reservation expires.
pub const HOLD_SECONDS_MAX: u64 = 86_400;
/// Longest `customer` field, in characters.
pub const CUSTOMER_CHARS_MAX: usize = 128;
/// How far the signer's clock may be from the coordinator's, either way.
pub const SIGNATURE_CLOCK_SKEW_SECONDS_MAX: u64 = 300;
/// How long an idempotency key is remembered after a 201: the contract says at least 24 hours;
/// one hour more covers clock skew between client retries and our records.
pub const IDEMPOTENCY_TTL_SECONDS: u64 = 25 * 3600;
