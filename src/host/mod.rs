//! Host glue: the request path and token cache written against small traits, and the
//! proxy-wasm contexts that implement those traits with real host calls.

pub mod header_map;
pub mod held;
pub mod lockout;
pub mod metrics;
pub mod once;
pub mod reply;
pub mod request;
pub mod tokens;

#[cfg(test)]
pub(crate) mod testing;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
