//! bcsp-guard: admits only Genesys Cloud to a Bot Connector Service Provider, strips its
//! credentials, and injects a Google identity token. The crate's core is pure Rust
//! (`config`, `policy`, `token`, and `pipeline`, the request path); `host` translates
//! proxy-wasm calls to and from it.

// A panic in a Wasm VM takes down every request on that worker.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing
    )
)]

pub mod base64;
pub mod config;
pub mod host;
pub mod pipeline;
pub mod policy;
pub mod token;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::wasm::install();
}}
