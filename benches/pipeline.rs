//! Per-request CPU of the whole request path, natively: `pipeline::on_request_headers`, the
//! function both hosts run (IP → lockout → webhook or key → route → body limit → strip, stamp,
//! inject or reply), over the recording host. The policy is the one the Envoy benchmark loads
//! (bench/configs/bcsp-guard-policy.json: 3 keys, 20 CIDRs, X-Forwarded-For rule with
//! trusted_hops 1, token injection), compiled once; a token is cached. Alone:
//! `cargo bench --bench pipeline`.

use bcsp_guard::config;
use bcsp_guard::pipeline::metrics::Stats;
use bcsp_guard::pipeline::record::Recorder;
use bcsp_guard::pipeline::{on_request_headers, Guard, Outcome, Ports, TokenPort};
use bcsp_guard::token::Missing;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::rc::Rc;

const POLICY: &str = include_str!("../bench/configs/bcsp-guard-policy.json");
/// The secret of key `genesys-2026q4` (the middle one of three).
const SECRET: &str = "E4aOTJqw/r/R+dMx+MD90UT7P9cHXu03KQpeMXOKYLc=";
const NOW_MS: i64 = 1_795_000_000_000; // 2026-11
const TOKEN: &str = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJiZW5jaCJ9.c2lnbmF0dXJl";

/// The worker's cache with a usable token, as on every request between refreshes.
struct Cached(Rc<str>);

impl TokenPort for Cached {
    fn header_value(&self, _audience: &str) -> Option<Rc<str>> {
        Some(self.0.clone())
    }
    fn on_missing(&self, _audience: &str) -> Missing {
        Missing::Reject { retry_after_s: 1 }
    }
}

/// One Genesys call as the filter sees it: the client's headers plus what Envoy adds (the
/// peer appended to X-Forwarded-For: the last entry, inside the allowlist's last CIDR).
fn headers(key: &str, xff: &str) -> Vec<(String, String)> {
    [
        (":authority", "bcsp.example.com"),
        (":path", "/bots/bench-bot"),
        (":method", "GET"),
        (":scheme", "https"),
        ("user-agent", "Genesys-Cloud-Bot-Connector/2.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("x-bcsp-key", key),
        ("x-forwarded-for", xff),
        (
            "x-genesys-conversation-id",
            "0f9a1c2e-5b7d-4e21-9c3a-8d6f0b1e2a47",
        ),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "5db52d7b-7479-409b-b0ba-b9a446854f1b"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let policy = config::compile(POLICY.as_bytes()).expect("bench policy compiles");
    let mut next = 0;
    // Every metric defined, as on Envoy: the counters are part of the path.
    let stats = Stats::define(&policy, |_, _| {
        next += 1;
        Some(next)
    });
    let guard = Guard { policy, stats };
    let tokens = Cached(Rc::from(TOKEN));
    let ports = Ports {
        tokens: Some(&tokens),
        lockout: None,
    };
    let admit = headers(SECRET, "34.200.73.250,127.0.0.1");
    let wrong_key = headers(
        "not-the-secret-not-the-secret-not-the-secret",
        "34.200.73.250,127.0.0.1",
    );
    let outside = headers(SECRET, "127.0.0.1,34.200.73.251");

    // Sanity: the benchmark measures the paths it claims to.
    let run = |h: &[(String, String)]| Recorder::new(h.to_vec(), NOW_MS).run(&guard, ports);
    let fx = run(&admit);
    assert_eq!(fx.outcome, Outcome::Forward, "admit headers must go on");
    assert_eq!(fx.header("authorization"), [TOKEN]);
    assert_eq!(fx.header("x-bcsp-key-id"), ["genesys-2026q4"]);
    assert!(fx.header("x-bcsp-key").is_empty());
    assert_eq!(run(&wrong_key).reply().map(|r| r.status), Some(401));
    assert_eq!(run(&outside).reply().map(|r| r.status), Some(403));

    // No logger is installed, so a refusal's log line costs only its level check; on Envoy at
    // `info` it is also formatted. The recorder's own work (header map encoded per call, edits
    // and replies copied) is included, as a host's is on Envoy.
    let mut g = c.benchmark_group("pipeline");
    for (name, h) in [
        ("full_policy_admit", &admit),
        ("wrong_key_401", &wrong_key),
        ("outside_cidrs_403", &outside),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || Recorder::new(h.clone(), NOW_MS),
                |host| black_box(on_request_headers(host, &guard, ports, true).outcome),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
