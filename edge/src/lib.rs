//! The Allot edge: a Cloudflare Worker (Rust compiled to WebAssembly, run locally in workerd)
//! that serves availability to browsers from a cache and forwards reservation attempts to the
//! coordinator, signed. It checks every request with the same `allot-shared` code as the
//! coordinator, so bad input is refused here with the same problem body.
//!
//! The decisions (routes, configuration, cache freshness, sold-out shielding, retry policy) are
//! plain Rust in `route` and `policy`, tested natively. `worker` (wasm32 only) is the thin part
//! that talks to the Workers runtime. The edge never says yes on its own: only the coordinator
//! accepts a reservation.

#[cfg(not(target_arch = "wasm32"))]
pub mod local;
pub mod pages;
pub mod policy;
pub mod route;
pub mod view;

#[cfg(target_arch = "wasm32")]
mod site_view;
#[cfg(target_arch = "wasm32")]
mod worker;
