//! writ's server: identity, the decide -> record -> answer flow, and HTTP.
//!
//! The only crate that knows HTTP. It composes the ledger (durable, signed record),
//! the PDP (decisions) and identity (who is asking).

pub mod admin;
pub mod authorize;
pub mod config;
pub mod defaults;
pub mod edge;
pub mod error;
pub mod grants;
pub mod identity;
pub mod kernel;
pub mod ledger_api;
pub mod membership;
pub mod metrics;
pub mod request;
pub mod routes;
pub mod serve;
pub mod state;
pub mod vault;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
