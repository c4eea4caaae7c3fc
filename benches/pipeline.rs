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

mod fixture;
use fixture::{NOW_MS, POLICY, SECRET};

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

/// The shared Genesys call, owned (the recorder keeps its headers).
fn headers(key: &str, xff: &str) -> Vec<(String, String)> {
    fixture::headers(key, xff)
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
