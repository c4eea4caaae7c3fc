//! Emulates the GCP metadata server's identity-token endpoint, with fault knobs,
//! for bcsp-guard's tests and `make run`. See docs/DEVELOPMENT.md.

mod emulator;
mod handler;
mod json;
mod jwt;
mod state;

pub use emulator::Emulator;
pub use jwt::{decode_claims, Claims};
pub use state::Mode;

/// The identity path the emulator serves.
pub const IDENTITY_PATH: &str = handler::IDENTITY_PATH;
