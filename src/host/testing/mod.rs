//! Test doubles for the host layer, shared by every host test module: recording request hosts,
//! shared-data fakes, token and lockout ports, and the policies the tests configure.

mod policy;
mod ports;
mod request_host;
mod shared;

pub(crate) use policy::*;
pub(crate) use ports::*;
pub(crate) use request_host::*;
pub(crate) use shared::*;

/// The hosts' clock: 2027-01-15T08:00:00Z.
pub(crate) const NOW_MS: i64 = 1_800_000_000_000;
