//! One request's headers (any names, values, repeats, X-Forwarded-For lists) and downstream
//! address against three fixed policies: never panics, and an admitted request always had
//! an allowed client and exactly one matching credential that is valid now.
#![no_main]

use bcsp_guard::config::compile;
use bcsp_guard::policy::client_ip::ClientIpRule;
use bcsp_guard::policy::decide::{client_of, decide, Decision, RequestView};
use bcsp_guard::policy::Policy;
use bcsp_guard_fuzz::{fields, presents, std_entry, unmap};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

const BASE_MS: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

struct FuzzKey {
    id: &'static str,
    header: &'static str,
    scheme: Option<&'static str>,
    secret: &'static str,
    not_before: Option<(&'static str, i64)>,
    not_after: Option<(&'static str, i64)>,
}

const KEYS: &[FuzzKey] = &[
    FuzzKey {
        id: "k-a",
        header: "x-bcsp-key",
        scheme: None,
        secret: "alpha-secret",
        not_before: Some(("2027-01-15T08:00:00Z", BASE_MS)),
        not_after: Some(("2027-01-15T08:00:01Z", BASE_MS + 1000)),
    },
    FuzzKey {
        id: "k-b",
        header: "authorization",
        scheme: Some("Bearer"),
        secret: "beta",
        not_before: None,
        not_after: None,
    },
    FuzzKey {
        id: "k-c",
        header: "x-bcsp-key",
        scheme: None,
        secret: "gamma",
        not_before: None,
        not_after: Some(("2027-01-15T08:00:00Z", BASE_MS)),
    },
    FuzzKey {
        id: "k-d",
        header: "X-Api-Key",
        scheme: Some("Token"),
        secret: "a b",
        not_before: Some(("2027-01-15T07:59:59.500Z", BASE_MS - 500)),
        not_after: None,
    },
];

/// (allow_cidrs, client_ip) of each policy; the CIDRs also as (v4?, network, prefix) for the
/// reference membership test.
type Cidrs = &'static [(&'static str, bool, u128, u32)];

const SHAPES: &[(Cidrs, &str)] = &[
    (
        &[
            ("10.0.0.0/8", true, 0x0a00_0000, 8),
            ("2001:db8::/32", false, 0x2001_0db8 << 96, 32),
            ("192.0.2.1", true, 0xc000_0201, 32),
        ],
        r#"{"from":"x-forwarded-for","trusted_hops":2}"#,
    ),
    (
        &[
            ("127.0.0.0/8", true, 0x7f00_0000, 8),
            ("::1", false, 1, 128),
        ],
        r#"{"from":"downstream"}"#,
    ),
    (&[], r#"{"from":"x-forwarded-for","trusted_hops":1}"#),
];

fn hex_sha256(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policies() -> &'static Vec<Policy> {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        let keys: Vec<serde_json::Value> = KEYS
            .iter()
            .map(|k| {
                let mut o = serde_json::json!({"id": k.id, "header": k.header, "sha256": hex_sha256(k.secret)});
                if let Some(s) = k.scheme {
                    o["scheme"] = s.into();
                }
                if let Some((t, _)) = k.not_before {
                    o["not_before"] = t.into();
                }
                if let Some((t, _)) = k.not_after {
                    o["not_after"] = t.into();
                }
                o
            })
            .collect();
        SHAPES
            .iter()
            .map(|(cidrs, rule)| {
                let list: Vec<&str> = cidrs.iter().map(|c| c.0).collect();
                let json = serde_json::json!({
                    "keys": keys,
                    "allow_cidrs": list,
                    "client_ip": serde_json::from_str::<serde_json::Value>(rule).unwrap(),
                });
                compile(json.to_string().as_bytes()).expect("fuzz policy compiles")
            })
            .collect()
    })
}

fn allowed(cidrs: &[(&str, bool, u128, u32)], ip: IpAddr) -> bool {
    cidrs.iter().any(|&(_, v4, net, prefix)| match unmap(ip) {
        IpAddr::V4(a) if v4 => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == net as u32
        }
        IpAddr::V6(a) if !v4 => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == net
        }
        _ => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let [control, downstream, blob] = fields(data, 3)[..] else {
        return;
    };
    let which = usize::from(control.first().copied().unwrap_or(0)) % SHAPES.len();
    let offset = i16::from_le_bytes([
        control.get(1).copied().unwrap_or(0),
        control.get(2).copied().unwrap_or(0),
    ]);
    let now_ms = BASE_MS + i64::from(offset);
    let downstream = String::from_utf8_lossy(downstream);
    let headers: Vec<(String, String)> = String::from_utf8_lossy(blob)
        .split('\n')
        .map(|line| match line.split_once(':') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => (line.to_owned(), String::new()),
        })
        .collect();
    let policy = &policies()[which];
    let pairs = bcsp_guard::pipeline::header_map::borrowed(&headers);
    let view = RequestView {
        headers: &pairs,
        downstream: Some(&downstream),
        now_ms,
    };
    let xff: Vec<&str> = view.headers_named("x-forwarded-for").collect();
    let client = client_of(policy, &view);

    // Whatever the client address came out as, the standard library reads the same address
    // from the entry the rule points at.
    if let Ok(ip) = client {
        let reference = match policy.client_ip {
            ClientIpRule::Downstream => downstream
                .parse::<SocketAddr>()
                .ok()
                .filter(|s| s.port() != 0)
                .map(|s| s.ip()),
            ClientIpRule::ForwardedFor { trusted_hops } => {
                let entries: Vec<&str> = xff.iter().flat_map(|v| v.split(',')).collect();
                entries
                    .len()
                    .checked_sub(usize::from(trusted_hops))
                    .and_then(|i| std_entry(entries[i]))
            }
        };
        assert_eq!(
            reference.map(unmap),
            Some(ip),
            "client {ip} for {headers:?}"
        );
    }

    let Decision::Admit(key) = decide(policy, &view) else {
        return;
    };
    let (cidrs, _) = SHAPES[which];
    if !cidrs.is_empty() {
        let ip = client.expect("admitted with an allowlist but no client");
        assert!(allowed(cidrs, ip), "admitted {ip}, outside the allowlist");
    }
    let k = KEYS
        .iter()
        .find(|k| k.id == key.id.as_str())
        .expect("admitted key is configured");
    let nb = k.not_before.map_or(i64::MIN, |(_, ms)| ms);
    let na = k.not_after.map_or(i64::MAX, |(_, ms)| ms);
    assert!(
        nb <= now_ms && (k.not_after.is_none() || now_ms < na),
        "{} outside its window at {now_ms}",
        k.id
    );
    for header in KEYS.iter().map(|k| k.header) {
        let n = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(header))
            .count();
        assert!(n <= 1, "admitted with {header} repeated");
    }
    assert!(
        headers
            .iter()
            .any(|(name, value)| name.eq_ignore_ascii_case(k.header)
                && presents(value, k.scheme, k.secret)),
        "admitted {} without its secret: {headers:?}",
        k.id
    );
});
