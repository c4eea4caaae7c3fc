//! The request path, written against a small host trait so it runs natively in tests and
//! on any proxy-wasm host: read headers → decide → strip, stamp, inject or reply.

use super::metrics::Stats;
use super::reply::Reply;
use crate::policy::client_ip::{ClientIpRule, Unknown};
use crate::policy::decide::{decide, Decision, Denial, DenyReason, RequestView};
use crate::policy::Policy;
use crate::token::plan::Missing;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The calls the request path makes on the proxy; nothing else is needed to admit or deny.
pub trait RequestHost {
    fn request_headers(&self) -> Vec<(String, String)>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn send_reply(&self, reply: &Reply);
    fn increment(&self, metric: Option<u32>);
    fn now_ms(&self) -> i64;
}

/// The worker's identity-token cache as the request path sees it.
pub trait TokenPort {
    /// `Bearer <jwt>` for the audience, when a token is usable now.
    fn header_value(&self, audience: &str) -> Option<Rc<str>>;
    /// No usable token: wait (and make sure a fetch is under way) or refuse at once.
    fn on_missing(&self, audience: &str) -> Missing;
}

/// The compiled policy and its metric ids, built once in `on_configure` and shared by
/// every request of the worker.
#[derive(Debug)]
pub struct Guard {
    pub policy: Policy,
    pub stats: Stats,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Headers are in place; let the request go upstream.
    Forward,
    /// A local reply was sent; nothing goes upstream.
    Replied,
    /// Admitted, but no token yet: pause until one arrives or the deadline passes.
    Wait { audience: String, deadline_ms: u64 },
}

const SERVERLESS_AUTH: &str = "x-serverless-authorization";

pub fn on_request_headers<H: RequestHost>(
    host: &H,
    guard: &Guard,
    tokens: Option<&dyn TokenPort>,
) -> Outcome {
    let policy = &guard.policy;
    let headers = host.request_headers();
    let downstream = if policy.needs_downstream() {
        source_address(host)
    } else {
        None
    };
    let view = RequestView {
        headers: &headers,
        downstream: downstream.as_deref(),
        now_ms: host.now_ms(),
    };
    let key = match decide(policy, &view) {
        Decision::Admit(key) => key,
        Decision::Deny(denial) => {
            refuse(host, guard, &view, &denial);
            return Outcome::Replied;
        }
    };

    for name in &policy.keys.headers {
        host.set_request_header(name, None);
    }
    if let Some(id_header) = &policy.key_id_header {
        host.set_request_header(id_header, Some(key.id.as_str()));
    }
    host.increment(guard.stats.allowed);
    let index = policy.keys.keys.iter().position(|k| std::ptr::eq(k, key));
    host.increment(index.and_then(|i| guard.stats.key_accepted.get(i).copied().flatten()));

    let Some(upstream) = &policy.upstream_token else {
        return Outcome::Forward;
    };
    // A caller must never choose the identity the upstream sees.
    host.set_request_header(SERVERLESS_AUTH, None);
    host.set_request_header(&upstream.header, None);
    let routed = if upstream.audience_by_cluster.is_empty() {
        None
    } else {
        host.property(&["xds", "cluster_name"])
            .and_then(|b| String::from_utf8(b).ok())
    };
    let audience = upstream.audience_for(routed.as_deref());
    let Some(tokens) = tokens else {
        // Configured for tokens but the host cannot hold them: fail closed.
        no_token(host, guard, &view, 5);
        return Outcome::Replied;
    };
    if let Some(value) = tokens.header_value(audience) {
        host.set_request_header(&upstream.header, Some(&value));
        return Outcome::Forward;
    }
    match tokens.on_missing(audience) {
        Missing::Wait { deadline_ms } => {
            host.increment(guard.stats.token_waited);
            Outcome::Wait {
                audience: audience.to_owned(),
                deadline_ms,
            }
        }
        Missing::Reject { retry_after_s } => {
            no_token(host, guard, &view, retry_after_s);
            Outcome::Replied
        }
    }
}

/// 503 for an admitted request that has no usable token; the upstream sees nothing.
pub fn no_token<H: RequestHost>(
    host: &H,
    guard: &Guard,
    view: &RequestView<'_>,
    retry_after_s: u64,
) {
    host.increment(guard.stats.denied_no_token);
    let request_id = view.header("x-request-id");
    log::warn!(
        "bcsp-guard: refused 503 (no valid upstream identity token) request_id={}",
        request_id.unwrap_or("-")
    );
    host.send_reply(&Reply::no_token(retry_after_s, request_id));
}

fn source_address<H: RequestHost>(host: &H) -> Option<String> {
    host.property(&["source", "address"])
        .and_then(|b| String::from_utf8(b).ok())
}

static WARNED_FORWARDED_SOURCE: AtomicBool = AtomicBool::new(false);

fn refuse<H: RequestHost>(host: &H, guard: &Guard, view: &RequestView<'_>, denial: &Denial<'_>) {
    let policy = &guard.policy;
    host.increment(guard.stats.for_denial(denial.reason));
    let request_id = view.header("x-request-id");
    let reply = match denial.reason.status() {
        403 => Reply::forbidden(request_id),
        _ => Reply::unauthenticated(&policy.www_authenticate, request_id),
    };
    if denial.reason == DenyReason::ClientUnknown(Unknown::DownstreamFromHeader)
        && !WARNED_FORWARDED_SOURCE.swap(true, Ordering::Relaxed)
    {
        log::warn!(
            "bcsp-guard: client_ip is `downstream` but Envoy's source.address came from X-Forwarded-For; \
             set use_remote_address: true on the http_connection_manager (or use client_ip.from \
             x-forwarded-for with trusted_hops). Such requests are refused."
        );
    }
    // The log names the client even when no IP rule ran; the decision path stayed lean.
    let client = match denial.client {
        Some(ip) => ip.to_string(),
        None => {
            let xff: Vec<&str> = view.headers_named("x-forwarded-for").collect();
            let downstream = match (view.downstream, policy.client_ip) {
                (Some(d), _) => Some(d.to_owned()),
                (None, ClientIpRule::Downstream) => source_address(host),
                (None, _) => None,
            };
            policy
                .client_ip
                .client(&xff, downstream.as_deref())
                .map_or_else(|_| "unknown".to_owned(), |ip| ip.to_string())
        }
    };
    let key = denial.key.map(|k| format!(" key={k}")).unwrap_or_default();
    log::info!(
        "bcsp-guard: denied {} ({}) client={client} request_id={}{key}",
        reply.status,
        denial.reason.describe(),
        request_id.unwrap_or("-"),
    );
    host.send_reply(&reply);
}

#[cfg(test)]
mod tests;
