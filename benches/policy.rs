//! Per-request CPU of the pure policy core, natively (`make bench` runs it; alone:
//! `cargo bench --bench policy`). The policy is the one the Envoy benchmark loads
//! (bench/configs/bcsp-guard-policy.json: 3 keys, 20 CIDRs, X-Forwarded-For rule with
//! trusted_hops 1), compiled once; each iteration is one request's `decide`.

use bcsp_guard::config;
use bcsp_guard::host::header_map;
use bcsp_guard::policy::client_ip::{Cidr, CidrSet};
use bcsp_guard::policy::decide::{decide, Decision, RequestView};
use bcsp_guard::policy::keys::{Key, KeyId, KeyMatch, KeySet, SecretHash, Window};
use bcsp_guard::policy::names::Controlled;
use bcsp_guard::policy::routes::{Route, RouteMatch, Routes};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

mod fixture;
use fixture::{headers, NOW_MS, POLICY, SECRET};

fn bench(c: &mut Criterion) {
    let policy = config::compile(POLICY.as_bytes()).expect("bench policy compiles");
    let admit = headers(SECRET, "34.200.73.250,127.0.0.1");
    let wrong_key = headers(
        "not-the-secret-not-the-secret-not-the-secret",
        "34.200.73.250,127.0.0.1",
    );
    let outside = headers(SECRET, "127.0.0.1,34.200.73.251");

    // Sanity: the benchmark measures the paths it claims to.
    let view = |h: &[(&str, &str)]| -> bool {
        let v = RequestView {
            headers: h,
            downstream: None,
            now_ms: NOW_MS,
        };
        matches!(decide(&policy, &v), Decision::Admit(_))
    };
    assert!(view(&admit), "admit headers must be admitted");
    assert!(
        !view(&wrong_key) && !view(&outside),
        "deny headers must be denied"
    );

    let mut g = c.benchmark_group("decide");
    for (name, h) in [
        ("full_policy_admit", &admit),
        ("wrong_key_401", &wrong_key),
        ("outside_cidrs_403", &outside),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let v = RequestView {
                    headers: black_box(h.as_slice()),
                    downstream: None,
                    now_ms: black_box(NOW_MS),
                };
                black_box(matches!(decide(&policy, &v), Decision::Admit(_)))
            })
        });
    }
    g.finish();

    // The parts: the one SHA-256 every admitted request pays, and decoding the serialized
    // header map the host hands over (borrowed pairs, no copies) into what `decide` reads.
    let mut g = c.benchmark_group("parts");
    g.bench_function("sha256_of_44_byte_secret", |b| {
        b.iter(|| black_box(SecretHash::of(black_box(SECRET.as_bytes()))))
    });
    let serialized = header_map::encode(&admit);
    g.bench_function("decode_header_map_13", |b| {
        b.iter(|| black_box(header_map::decode(black_box(&serialized)).len()))
    });
    g.finish();
}

/// `n` disjoint, non-adjacent IPv4 /24s (every other /24 from 10.0.0.0), so none merge.
fn allowlist(n: u32) -> CidrSet {
    CidrSet::new(
        (0..n)
            .map(|i| Cidr::V4 {
                net: 0x0A00_0000 + ((i * 2) << 8),
                prefix: 24,
            })
            .collect(),
    )
}

/// The allowlist lookup alone at the sizes the scaling table uses; the client sits in the
/// prefix configured last (the worst place for a scan), or in none.
fn cidr_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("cidr_lookup");
    for n in [20u32, 2_000, 10_000] {
        let set = allowlist(n);
        let last = std::net::IpAddr::from(std::net::Ipv4Addr::from(
            0x0A00_0000 + (((n - 1) * 2) << 8) + 7,
        ));
        let miss = std::net::IpAddr::from(std::net::Ipv4Addr::new(203, 0, 113, 9));
        assert!(set.contains(last) && !set.contains(miss) && set.ranges() == n as usize);
        g.bench_function(format!("{n}_prefixes_hit_last"), |b| {
            b.iter(|| black_box(set.contains(black_box(last))))
        });
        g.bench_function(format!("{n}_prefixes_miss"), |b| {
            b.iter(|| black_box(set.contains(black_box(miss))))
        });
        // What the allowlist cost before it was compiled: every entry tested in turn.
        let scan: Vec<Cidr> = (0..n)
            .map(|i| Cidr::V4 {
                net: 0x0A00_0000 + ((i * 2) << 8),
                prefix: 24,
            })
            .collect();
        g.bench_function(format!("{n}_prefixes_hit_last_linear_scan"), |b| {
            b.iter(|| black_box(scan.iter().any(|c| c.contains(black_box(last)))))
        });
    }
    g.finish();
}

/// `n` keys, each read from its own header (`x-bcsp-key-NN`), all valid now.
fn key_set(n: usize) -> (KeySet, Vec<String>) {
    let headers: Vec<String> = (1..=n).map(|i| format!("x-bcsp-key-{i:02}")).collect();
    let keys = (1..=n)
        .map(|i| Key {
            id: KeyId::parse(&format!("scale-{i:02}")).expect("valid id"),
            header: i - 1,
            scheme: None,
            hash: SecretHash::of(format!("secret-{i:02}").as_bytes()),
            window: Window::default(),
            audience: None,
        })
        .collect();
    (KeySet::new(headers.clone(), keys), headers)
}

/// The key check and the credential stripping at the sizes the scaling table uses: the request
/// (13 headers) presents the last key, in its own header.
fn key_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("key_check");
    for n in [1usize, 16, 64] {
        let (set, names) = key_set(n);
        let secret = format!("secret-{n:02}");
        let last = names.last().map_or("", String::as_str);
        let mut h = headers("", "34.200.73.250,127.0.0.1");
        h.retain(|(name, _)| *name != "x-bcsp-key");
        h.insert(7, (last, secret.as_str()));
        assert!(matches!(set.check(&h, NOW_MS), KeyMatch::Valid(k) if k.header == n - 1));
        g.bench_function(format!("{n}_keys_own_headers"), |b| {
            b.iter(|| {
                black_box(matches!(
                    set.check(black_box(&h), NOW_MS),
                    KeyMatch::Valid(_)
                ))
            })
        });
        let controlled = Controlled::new(
            names
                .iter()
                .map(String::as_str)
                .chain(["x-bcsp-key-id", "authorization"]),
        );
        assert_eq!(controlled.present(h.iter().map(|(n, _)| *n)), vec![last]);
        g.bench_function(format!("{n}_keys_strip_names"), |b| {
            b.iter(|| {
                black_box(
                    controlled
                        .present(black_box(&h).iter().map(|(n, _)| *n))
                        .len(),
                )
            })
        });
    }
    g.finish();
}

/// The route allowlist at its largest (64) against the preset's size: the request matches
/// the route configured last, or (`_no_match`) none, which is a 404.
fn routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("routes");
    for n in [3usize, 64] {
        let list: Vec<Route> = (0..n)
            .map(|i| Route::parse("POST", &format!("/v2/area-{i}/*/messages")).expect("route"))
            .collect();
        let routes = Routes::new(list, None);
        let path = format!("/v2/area-{}/bench-bot/messages", n - 1);
        assert!(matches!(routes.find("POST", &path), RouteMatch::Allowed(_)));
        g.bench_function(format!("{n}_routes_match_last"), |b| {
            b.iter(|| {
                black_box(matches!(
                    routes.find("POST", black_box(&path)),
                    RouteMatch::Allowed(_)
                ))
            })
        });
        let unknown = "/v2/area-unknown/bench-bot/messages";
        assert_eq!(routes.find("POST", unknown), RouteMatch::NotFound);
        g.bench_function(format!("{n}_routes_no_match"), |b| {
            b.iter(|| {
                black_box(matches!(
                    routes.find("POST", black_box(unknown)),
                    RouteMatch::NotFound
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, cidr_lookup, key_check, routes);
criterion_main!(benches);
