//! The Redis Functions library `allot`: one function per state change (and per consistent
//! read), built from `core/lua/*.lua`. Functions, unlike the script cache, are replicated and
//! persisted, so a promoted replica runs them without reloading (REDIS-HA.md).
//!
//! The library carries its version: a hash of its own text. The coordinator loads it at start
//! (`FUNCTION LOAD REPLACE`) and checks it in `/readyz`; a Redis without it (a fresh one, or
//! one that lost its data) gets it loaded again. Two coordinators of different builds on one
//! Redis would each load their own: during a rolling upgrade, the library of the last one to
//! start wins, so an upgrade must keep the functions' arguments compatible.

use sha2::{Digest, Sha256};

/// The library's name in Redis.
pub const LIBRARY: &str = "allot";

/// Every function of the library. Each takes `keys[1]` = the site's event stream (which names
/// the site's slot) and the four shared arguments of `prelude.lua`, then its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Sets capacity of named counters.
    SetCapacity,
    /// Places a reservation, all items or none.
    Reserve,
    /// Places several reservations of one site, each all or none on its own.
    ReserveBatch,
    /// Confirms a held reservation.
    Confirm,
    /// Cancels a reservation.
    Cancel,
    /// Reads one reservation, expiring it first if its hold has ended.
    ReadReservation,
    /// Expires due holds of a site in a bounded batch.
    Expire,
    /// Reads counters with their version.
    Availability,
    /// Recomputes `used` from live reservations (read only).
    Audit,
}

impl Function {
    /// Its name in Redis (`FCALL <name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SetCapacity => "allot_set_capacity",
            Self::Reserve => "allot_reserve",
            Self::ReserveBatch => "allot_reserve_batch",
            Self::Confirm => "allot_confirm",
            Self::Cancel => "allot_cancel",
            Self::ReadReservation => "allot_read_reservation",
            Self::Expire => "allot_expire",
            Self::Availability => "allot_availability",
            Self::Audit => "allot_audit",
        }
    }
}

/// The function that answers the library's version (no keys, no writes).
pub const VERSION_FUNCTION: &str = "allot_version";

/// One operation's body as a library-level function: `KEYS` and `ARGV` are its parameters, so
/// the bodies read like the scripts they were.
macro_rules! operation {
    ($name:literal, $file:literal) => {
        concat!(
            "local function ",
            $name,
            "(KEYS, ARGV)\nbind(KEYS, ARGV)\n",
            include_str!(concat!("../../lua/", $file)),
            "\nend\n"
        )
    };
}

/// The library without its header: the prelude, the shared reservation body, the operations
/// and their registration.
const BODY: &str = concat!(
    include_str!("../../lua/prelude.lua"),
    "\n",
    include_str!("../../lua/reserve_one.lua"),
    "\n",
    operation!("op_set_capacity", "set_capacity.lua"),
    operation!("op_reserve", "reserve.lua"),
    operation!("op_reserve_batch", "reserve_batch.lua"),
    operation!("op_confirm", "confirm.lua"),
    operation!("op_cancel", "cancel.lua"),
    operation!("op_read_reservation", "read_reservation.lua"),
    operation!("op_expire", "expire.lua"),
    operation!("op_availability", "availability.lua"),
    operation!("op_audit", "audit.lua"),
    r#"
redis.register_function('allot_set_capacity', op_set_capacity)
redis.register_function('allot_reserve', op_reserve)
redis.register_function('allot_reserve_batch', op_reserve_batch)
redis.register_function('allot_confirm', op_confirm)
redis.register_function('allot_cancel', op_cancel)
redis.register_function('allot_read_reservation', op_read_reservation)
redis.register_function('allot_expire', op_expire)
redis.register_function('allot_availability', op_availability)
redis.register_function{function_name = 'allot_audit', callback = op_audit, flags = {'no-writes'}}
redis.register_function{function_name = 'allot_version', callback = function() return VERSION end, flags = {'no-writes'}}
"#
);

/// The library's source, with its version, as `FUNCTION LOAD` takes it.
#[derive(Debug, Clone)]
pub struct Library {
    /// The version: the first 16 hex digits of the SHA-256 of the body.
    pub version: String,
    /// The whole source.
    pub code: String,
}

impl Library {
    /// The library of this build.
    pub fn new() -> Self {
        let version = hex::encode(&Sha256::digest(BODY.as_bytes())[..8]);
        let code = format!("#!lua name={LIBRARY}\nlocal VERSION = '{version}'\n{BODY}");
        Self { version, code }
    }
}

impl Default for Library {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_follows_the_code() {
        let library = Library::new();
        assert_eq!(library.version.len(), 16);
        assert!(library.code.starts_with("#!lua name=allot\n"));
        assert!(library.code.contains(&format!("local VERSION = '{}'", library.version)));
        for function in [
            Function::SetCapacity,
            Function::Reserve,
            Function::ReserveBatch,
            Function::Confirm,
            Function::Cancel,
            Function::ReadReservation,
            Function::Expire,
            Function::Availability,
            Function::Audit,
        ] {
            assert!(library.code.contains(&format!("'{}'", function.name())), "{function:?} is registered");
        }
    }
}
