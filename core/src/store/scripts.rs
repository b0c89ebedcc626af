//! The Lua scripts, one per state change (and one per consistent read). Each is the shared
//! prelude followed by the operation, loaded once with `SCRIPT LOAD` and run with `EVALSHA`
//! (redis-rs falls back to loading it again after a Redis restart or failover).

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("../../lua/prelude.lua"), "\n", include_str!(concat!("../../lua/", $file)))
    };
    // With a shared body (reserve_one.lua) between the prelude and the operation.
    ($body:literal, $file:literal) => {
        concat!(
            include_str!("../../lua/prelude.lua"),
            "\n",
            include_str!(concat!("../../lua/", $body)),
            "\n",
            include_str!(concat!("../../lua/", $file))
        )
    };
}

/// Every script of the coordinator, compiled once.
#[derive(Debug)]
pub struct Scripts {
    /// Sets capacity of named counters.
    pub set_capacity: Script,
    /// Places a reservation, all items or none.
    pub reserve: Script,
    /// Places several reservations of one site, each all or none on its own.
    pub reserve_batch: Script,
    /// Confirms a held reservation.
    pub confirm: Script,
    /// Cancels a reservation.
    pub cancel: Script,
    /// Reads one reservation, expiring it first if its hold has ended.
    pub read_reservation: Script,
    /// Expires due holds of a site in a bounded batch.
    pub expire: Script,
    /// Reads counters with their version.
    pub availability: Script,
    /// Recomputes `used` from live reservations.
    pub audit: Script,
}

impl Scripts {
    /// Compiles (hashes) every script.
    pub fn new() -> Self {
        Self {
            set_capacity: Script::new(script!("set_capacity.lua")),
            reserve: Script::new(script!("reserve_one.lua", "reserve.lua")),
            reserve_batch: Script::new(script!("reserve_one.lua", "reserve_batch.lua")),
            confirm: Script::new(script!("confirm.lua")),
            cancel: Script::new(script!("cancel.lua")),
            read_reservation: Script::new(script!("read_reservation.lua")),
            expire: Script::new(script!("expire.lua")),
            availability: Script::new(script!("availability.lua")),
            audit: Script::new(script!("audit.lua")),
        }
    }

    /// Every script, for loading and readiness checks.
    pub fn all(&self) -> [&Script; 9] {
        [
            &self.set_capacity,
            &self.reserve,
            &self.reserve_batch,
            &self.confirm,
            &self.cancel,
            &self.read_reservation,
            &self.expire,
            &self.availability,
            &self.audit,
        ]
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
