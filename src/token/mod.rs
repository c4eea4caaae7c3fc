//! The upstream identity token's lifecycle as pure logic: parsing, refresh schedule, backoff,
//! the shared-data records and the single-flight lease. No proxy-wasm types, clocks or I/O.

pub mod jwt;
pub mod plan;
pub mod record;
pub mod schedule;

#[cfg(test)]
mod proptests;

pub use jwt::{
    base64url_decode, base64url_encode, parse_identity_token, IdentityToken, TokenError,
};
pub use plan::{
    accept_fetch, active_lease, after_failure, after_success, mix64, plan, retry_after_s,
    take_lease, when_missing, Missing, Plan,
};
pub use record::{CachedToken, FetchState, Lease};
pub use schedule::{backoff_ms, lease_ms, refresh_at_ms, usable, Timing};
