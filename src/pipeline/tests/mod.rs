//! The request path against a recording host: credentials, tokens, routes, bodies, webhooks,
//! lockout and header hygiene, one module each. The doubles live in `crate::host::testing`.

mod audit;
mod bodies_and_routes;
mod credentials;
mod hygiene;
mod lockout;
mod service_extensions;
mod webhooks;

use super::*;
use crate::config;
use crate::host::testing::*;
use crate::pipeline::metrics::Kind;
use crate::pipeline::record::Recorder;
use crate::policy::keys::SecretHash;
use std::cell::RefCell;
use std::net::IpAddr;

/// The headers phase of a request without a body, as the existing cases need it.
fn headers_step(host: &FakeHost, g: &Guard, tokens: Option<&dyn TokenPort>) -> Outcome {
    let ports = Ports {
        tokens,
        lockout: None,
    };
    on_request_headers(host, g, ports, true).outcome
}

const TOKEN_CFG: &str = r#","upstream_token":{"cluster":"meta","audience":"https://a.run.app",
    "audience_by_cluster":{"eu":"https://eu.run.app"}}"#;

const ROUTES_CFG: &str = r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/botconnector"},
    "max_body_bytes":100"#;

fn on_headers(host: &FakeHost, g: &Guard, end_of_stream: bool) -> Step {
    on_request_headers(host, g, Ports::default(), end_of_stream)
}

/// A recording host for `headers` (pseudo-headers included) from peer 198.51.100.7.
fn recorder(headers: &[(&str, &str)]) -> Recorder {
    let pairs = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Recorder::new(pairs, NOW_MS).with_property("source.address", "198.51.100.7:4000")
}

fn last_status(host: &FakeHost) -> Option<u32> {
    host.replies.borrow().last().map(|r| r.status)
}
