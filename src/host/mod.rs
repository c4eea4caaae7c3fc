//! Host glue: the token cache and lockout book over shared data, and the proxy-wasm contexts
//! that carry out the pipeline's effects with real host calls.

/// The header-map codec lives with the pipeline; `benches/policy.rs` still reads it here.
pub use crate::pipeline::header_map;

pub mod lockout;
pub mod once;
pub mod tokens;

#[cfg(test)]
pub(crate) mod testing;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
