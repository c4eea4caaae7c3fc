//! The deployment recipes (`docker-compose.yml`, `deploy/`) checked as far as this machine can:
//! no Docker engine, Kubernetes or Google Cloud here, so manifests are parsed and cross-checked
//! (names, ports, paths, timeouts), every Envoy config runs through `envoy --mode validate` with
//! the real module (which runs bcsp-guard's own config validation too), plugin configs embedded
//! in manifests go through `bcsp_guard::config::compile`, `make release`'s script runs into a
//! temp dir and its OCI layout is verified blob by blob, and the alert rules go through
//! `promtool`. Facts the platforms' documentation fixes are held too: registry login and target
//! platform before every image push, the Wasm flag for webhook deliveries, admin off TCP in the
//! Cloud Run sidecar, underscore headers refused, Cloud Armor rules of at most ten ranges.
//! Each check collects every mismatch of its table and reports them together.
//!
//! One module per target; shared helpers live in `common`.

#[path = "../harness/mod.rs"]
mod harness;

mod common;

mod access_log;
mod alerts;
mod cloud_run;
mod cloud_run_sidecar;
mod compose;
mod dynamic_module;
mod envoy_configs;
mod genesys_ipranges;
mod image_pushes;
mod istio;
mod release;
mod service_extensions;
