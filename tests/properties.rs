//! Property tests of every parser and decision in the filter's pure core (issue 6), each
//! checked against a small reference written here without the filter's code: CIDR masks,
//! X-Forwarded-For counting, the credential rule, JWT `exp`, webhook signatures, route
//! matching, RFC 3339, base64 and the lockout table. No Envoy: `make test` runs this file
//! (`cargo test -p bcsp-guard --test properties`); docs/FUZZING.md lists the properties.

use bcsp_guard::base64::{self as b64, Alphabet};
use bcsp_guard::config::{compile, compile_with_env};
use bcsp_guard::policy::client_ip::{parse_forwarded_entry, Cidr, CidrSet, ClientIpRule, Unknown};
use bcsp_guard::policy::decide::{decide, Decision, DenyReason, RequestView};
use bcsp_guard::policy::lockout::Table;
use bcsp_guard::policy::routes::{self, clean_path, Route, RouteMatch, Routes};
use bcsp_guard::policy::time::{format_rfc3339, parse_rfc3339};
use bcsp_guard::policy::webhook::{SecretSource, SignatureError, Webhook, WebhookSecret};
use bcsp_guard::policy::Policy;
use bcsp_guard::token::{parse_identity_token, TokenError};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // Shrinking is bounded so that a failure reports in seconds.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// References, written independently of the filter.

fn sha256_hex(secret: &[u8]) -> String {
    Sha256::digest(secret)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The top `prefix` bits set, bit by bit.
fn v4_mask(prefix: u32) -> u32 {
    (0..prefix).fold(0, |m, i| m | (1u32 << (31 - i)))
}

fn v6_mask(prefix: u32) -> u128 {
    (0..prefix).fold(0, |m, i| m | (1u128 << (127 - i)))
}

/// `::ffff:a.b.c.d` as IPv4, by octets.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            if o[..10].iter().all(|&b| b == 0) && o[10] == 0xff && o[11] == 0xff {
                IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
            } else {
                ip
            }
        }
        v4 => v4,
    }
}

/// A network as the documentation describes it: IPv4-mapped IPv6 networks are IPv4
/// networks, and a mapped client only ever matches an IPv4 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefNet {
    V4(u32, u32),
    V6(u128, u32),
}

impl RefNet {
    fn contains(self, ip: IpAddr) -> bool {
        match (self, unmap(ip)) {
            (RefNet::V4(net, p), IpAddr::V4(a)) => (u32::from(a) ^ net) & v4_mask(p) == 0,
            (RefNet::V6(net, p), IpAddr::V6(a)) => (u128::from(a) ^ net) & v6_mask(p) == 0,
            _ => false,
        }
    }

    fn as_cidr(self) -> Cidr {
        match self {
            RefNet::V4(net, p) => Cidr::V4 {
                net,
                prefix: p as u8,
            },
            RefNet::V6(net, p) => Cidr::V6 {
                net,
                prefix: p as u8,
            },
        }
    }
}

/// Does `value` present `secret` under the key's scheme? No scheme: the exact value.
/// A scheme: `<scheme, any case> SP+ <secret>`.
fn presents(value: &str, scheme: Option<&str>, secret: &str) -> bool {
    match scheme {
        None => value == secret,
        Some(s) => {
            let v = value.as_bytes();
            v.len() > s.len()
                && v[..s.len()].eq_ignore_ascii_case(s.as_bytes())
                && v[s.len()] == b' '
                && !secret.is_empty()
                && value[s.len()..].trim_start_matches(' ') == secret
        }
    }
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn ref_b64_encode(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for i in 0..3 {
            n = (n << 8) | u32::from(*chunk.get(i).unwrap_or(&0));
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Canonical base64 only: right alphabet, padding exactly where the alphabet wants it, and
/// zero unused bits in the last character.
fn ref_b64_decode(text: &[u8], alphabet: &[u8; 64], padded: bool) -> Option<Vec<u8>> {
    let data = if padded {
        if text.len() % 4 != 0 {
            return None;
        }
        let pad = text.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        &text[..text.len() - pad]
    } else {
        text
    };
    if data.len() % 4 == 1 {
        return None;
    }
    if padded && text.len() != data.len() && data.len() % 4 == 0 {
        return None;
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        let v = alphabet.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// Days from 1970-01-01 by counting leap years (not the filter's era arithmetic).
fn ref_days(y: i64, m: i64, d: i64) -> i64 {
    let leaps_through = |n: i64| n.div_euclid(4) - n.div_euclid(100) + n.div_euclid(400);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let before_month = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(m - 1) as usize]
        + i64::from(leap && m > 2);
    365 * (y - 1970) + (leaps_through(y - 1) - leaps_through(1969)) + before_month + d - 1
}

fn days_in(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][(m - 1) as usize]
}

/// Every field of two compiled policies that the request path reads.
fn same_policy(a: &Policy, b: &Policy) -> Result<(), String> {
    let hooks = |p: &Policy| -> Vec<(String, String, String)> {
        p.webhooks
            .iter()
            .map(|w| {
                (
                    w.path_prefix.clone(),
                    w.header.clone(),
                    w.secret.sign(b"probe"),
                )
            })
            .collect()
    };
    let routes = |p: &Policy| {
        p.routes
            .as_ref()
            .map(|r| r.iter().cloned().collect::<Vec<_>>())
    };
    let same = a.summary() == b.summary()
        && a.keys.headers == b.keys.headers
        && a.keys.keys == b.keys.keys
        && a.client_ip == b.client_ip
        && a.allow.as_ref().map(CidrSet::len) == b.allow.as_ref().map(CidrSet::len)
        && a.key_id_header == b.key_id_header
        && a.www_authenticate == b.www_authenticate
        && a.upstream_token == b.upstream_token
        && a.ip_ranges == b.ip_ranges
        && routes(a) == routes(b)
        && a.max_body_bytes == b.max_body_bytes
        && hooks(a) == hooks(b)
        && a.lockout == b.lockout
        && a.warnings == b.warnings;
    if same {
        Ok(())
    } else {
        Err(format!("{}\n  vs\n{}", a.summary(), b.summary()))
    }
}

fn test_env(name: &str) -> Option<String> {
    (name == "OM_SECRET").then(|| "om-secret-from-env-0123".to_owned())
}

/// Compile, and for an accepted config: every key id is in the startup summary, and the
/// document re-serialised (compact and pretty) compiles to the same policy.
fn check_accepted(json: &[u8]) -> Result<Option<Policy>, TestCaseError> {
    let policy = match compile_with_env(json, &test_env) {
        Ok(p) => p,
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(!shown.is_empty());
            if !e.path.is_empty() {
                prop_assert!(shown.starts_with(&e.path), "{shown}");
            }
            return Ok(None);
        }
    };
    let summary = policy.summary();
    for k in &policy.keys.keys {
        prop_assert!(
            summary.contains(&format!("{} (header ", k.id)),
            "{} missing from {summary}",
            k.id
        );
    }
    let value: Value = match serde_json::from_slice(json) {
        Ok(v) => v,
        // The generic parser refuses a few things the typed one skips inside fields the filter
        // ignores (numbers beyond f64 in a pasted Genesys document): nothing to compare then.
        Err(_) => return Ok(Some(policy)),
    };
    for text in [
        serde_json::to_vec(&value).unwrap(),
        serde_json::to_vec_pretty(&value).unwrap(),
    ] {
        let again = compile_with_env(&text, &test_env)
            .map_err(|e| TestCaseError::fail(format!("re-serialised config refused: {e}")))?;
        same_policy(&policy, &again).map_err(TestCaseError::fail)?;
    }
    Ok(Some(policy))
}

// ---------------------------------------------------------------------------------------
// Configuration.

/// Field names and values the configuration uses, so random documents get deep.
const FIELDS: &[&str] = &[
    "keys",
    "id",
    "header",
    "scheme",
    "sha256",
    "not_before",
    "not_after",
    "client_ip",
    "from",
    "trusted_hops",
    "allow_cidrs",
    "key_id_header",
    "upstream_token",
    "cluster",
    "audience",
    "audience_by_cluster",
    "authority",
    "path",
    "refresh_margin_s",
    "expiry_skew_s",
    "max_wait_ms",
    "fetch_timeout_ms",
    "genesys_ip_ranges",
    "document",
    "entities",
    "cidr",
    "service",
    "region",
    "services",
    "regions",
    "routes",
    "preset",
    "base_path",
    "method",
    "max_body_bytes",
    "webhooks",
    "path_prefix",
    "secret_env",
    "secret",
    "lockout",
    "max_failures",
    "window_s",
    "cooldown_s",
    "unknown",
];

const HEX_A: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

const STRINGS: &[&str] = &[
    "",
    "a",
    "genesys-2026q4",
    HEX_A,
    "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B",
    "x-bcsp-key",
    "authorization",
    "Bearer",
    "host",
    "downstream",
    "x-forwarded-for",
    "10.0.0.0/8",
    "10.0.0.1/8",
    "::ffff:1.2.3.0/120",
    "2600:1f18:4a3:6900::/56",
    "2026-10-01T00:00:00Z",
    "2027-01-15T00:00:00+02:00",
    "2026-02-29T00:00:00Z",
    "gcp_metadata",
    "https://bcsp.example",
    "digital-bot-connector-v2",
    "/botconnector",
    "/openmessaging",
    "/",
    "GET",
    "POST",
    "/bots/*",
    "OM_SECRET",
    "0123456789abcdef",
    "bot-connector",
    "us-east-1",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..70).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        select(STRINGS).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ]
}

fn json_object(inner: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop::collection::vec((select(FIELDS), inner), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn jsonish() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            json_object(inner),
        ]
    })
}

/// Mostly valid values (12 : 1), so that all-valid configurations are common and so are
/// configurations with exactly one thing wrong.
fn weighted<T: Clone + std::fmt::Debug + 'static>(
    pool: &'static [T],
    valid: fn(&T) -> bool,
) -> impl Strategy<Value = T> {
    let good: Vec<T> = pool.iter().filter(|t| valid(t)).cloned().collect();
    let bad: Vec<T> = pool.iter().filter(|t| !valid(t)).cloned().collect();
    prop_oneof![12 => select(good), 1 => select(bad)]
}

const IDS: &[(&str, bool)] = &[
    ("a", true),
    ("genesys-2026q4", true),
    ("k.1", true),
    ("k_1", true),
    ("k-1", true),
    ("Z9", true),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        true,
    ),
    ("bad id", false),
    ("", false),
    ("ключ", false),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        false,
    ),
];
/// (configured header, valid, the lower-case name it becomes)
const HEADERS: &[(Option<&str>, bool, &str)] = &[
    (None, true, "x-bcsp-key"),
    (Some("x-bcsp-key"), true, "x-bcsp-key"),
    (Some("Authorization"), true, "authorization"),
    (Some("X-Api-Key"), true, "x-api-key"),
    (Some("Host"), false, ""),
    (Some("x-forwarded-for"), false, ""),
    (Some("bad header"), false, ""),
    (Some(""), false, ""),
];
const KEY_SCHEMES: &[(Option<&str>, bool)] = &[
    (None, true),
    (Some("Bearer"), true),
    (Some("Token"), true),
    (Some("two words"), false),
    (Some(""), false),
];
const HASHES: &[(&str, bool)] = &[
    (HEX_A, true),
    (
        "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B",
        true,
    ),
    ("2bb80d537b1da3e3", false),
    (
        "gbb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
        false,
    ),
];
/// (text, Unix ms): `None` ms: not a timestamp.
const STAMPS: &[(Option<&str>, Option<i64>)] = &[
    (None, None),
    (None, None),
    (None, None),
    (Some("2026-10-01T00:00:00Z"), Some(1_790_812_800_000)),
    (Some("2026-10-01T02:00:00+02:00"), Some(1_790_812_800_000)),
    (Some("2027-01-15T08:00:00.250Z"), Some(1_800_000_000_250)),
    (Some("2030-01-01T00:00:00Z"), Some(1_893_456_000_000)),
    (Some("2026-02-29T00:00:00Z"), None),
    (Some("tomorrow"), None),
];

/// A key object; `.1` says whether it is valid on its own, `.2` its id for the uniqueness
/// rules, `.3` its lower-case header.
fn config_key() -> impl Strategy<Value = (Value, bool, String, String)> {
    let stamp_ok = |s: &(Option<&str>, Option<i64>)| s.0.is_none() || s.1.is_some();
    (
        weighted(IDS, |i| i.1),
        weighted(HEADERS, |h| h.1),
        weighted(KEY_SCHEMES, |s| s.1),
        weighted(HASHES, |h| h.1),
        weighted(STAMPS, stamp_ok),
        weighted(STAMPS, stamp_ok),
        prop::bool::weighted(0.03),
    )
        .prop_map(|(id, header, scheme, hash, nb, na, unknown)| {
            let mut o = json!({"id": id.0, "sha256": hash.0});
            let mut valid = id.1 && header.1 && scheme.1 && hash.1 && !unknown;
            if let Some(h) = header.0 {
                o["header"] = h.into();
            }
            if let Some(s) = scheme.0 {
                o["scheme"] = s.into();
            }
            for (field, (text, ms)) in [("not_before", nb), ("not_after", na)] {
                if let Some(t) = text {
                    o[field] = t.into();
                    valid &= ms.is_some();
                }
            }
            if let (Some(b), Some(a)) = (nb.1, na.1) {
                valid &= b < a;
            }
            if unknown {
                o["not_after_"] = "2030-01-01T00:00:00Z".into();
            }
            (o, valid, id.0.to_owned(), header.2.to_owned())
        })
}

/// An optional top-level section from a pool: (value, valid on its own).
type Pool = &'static [(Option<&'static str>, bool)];

const CLIENT_IP: Pool = &[
    (None, true),
    (Some(r#"{"from":"downstream"}"#), true),
    (Some(r#"{"from":"x-forwarded-for","trusted_hops":1}"#), true),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":32}"#),
        true,
    ),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":0}"#),
        false,
    ),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":33}"#),
        false,
    ),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":-1}"#),
        false,
    ),
    (Some(r#"{"from":"x-forwarded-for"}"#), false),
    (Some(r#"{"from":"downstream","trusted_hops":1}"#), false),
    (Some(r#"{"from":"forwarded"}"#), false),
    (Some(r#"{"from":"downstream","hops":1}"#), false),
];
const ALLOW: Pool = &[
    (None, true),
    (Some("[]"), true),
    (Some(r#"["10.0.0.0/8"]"#), true),
    (
        Some(r#"["2600:1f18::/32","::ffff:1.2.3.0/120","192.0.2.1"]"#),
        true,
    ),
    (Some(r#"["10.0.0.1/8"]"#), false),
    (Some(r#"["10.0.0.0/33"]"#), false),
    (Some(r#"["garbage"]"#), false),
    (Some(r#""10.0.0.0/8""#), false),
];
const MAX_BODY: Pool = &[
    (None, true),
    (Some("1"), true),
    (Some("1048576"), true),
    (Some("16777216"), true),
    (Some("0"), false),
    (Some("16777217"), false),
    (Some("-1"), false),
    (Some("1.5"), false),
    (Some(r#""10""#), false),
];
const LOCKOUT: Pool = &[
    (None, true),
    (Some("{}"), true),
    (
        Some(r#"{"max_failures":5,"window_s":86400,"cooldown_s":1}"#),
        true,
    ),
    (Some(r#"{"max_failures":10001}"#), false),
    (Some(r#"{"window_s":0}"#), false),
    (Some(r#"{"cooldown_s":86401}"#), false),
    (Some(r#"{"extra":1}"#), false),
];

/// key_id_header: (value, valid name, lower-case name it takes).
const KEY_ID: &[(Option<&str>, bool, Option<&str>)] = &[
    (None, true, Some("x-bcsp-key-id")),
    (Some(""), true, None),
    (Some("X-Bcsp-Key-Id"), true, Some("x-bcsp-key-id")),
    (Some("x-api-key"), true, Some("x-api-key")),
    (Some("Authorization"), true, Some("authorization")),
    (Some("host"), false, None),
    (Some("bad header"), false, None),
];

/// Sections with no reference: (pools only, for the round trip).
const UPSTREAM: Pool = &[
    (None, true),
    (
        Some(r#"{"cluster":"gcp_metadata","audience":"https://bcsp.example"}"#),
        true,
    ),
    (
        Some(
            r#"{"cluster":"m","audience":"https://a.example/x?y=1","audience_by_cluster":{"c2":"http://b.example"},"header":"X-Serverless-Authorization","authority":"metadata:8080","path":"/id","refresh_margin_s":60,"expiry_skew_s":59,"max_wait_ms":1,"fetch_timeout_ms":100}"#,
        ),
        true,
    ),
    (Some(r#"{"cluster":"m","audience":"ftp://x"}"#), false),
    (
        Some(r#"{"cluster":"m","audience":"https://a","expiry_skew_s":300}"#),
        false,
    ),
];
const ROUTES: Pool = &[
    (None, true),
    (Some(r#"{"preset":"digital-bot-connector-v2"}"#), true),
    (
        Some(r#"{"preset":"digital-bot-connector-v2","base_path":"/botconnector"}"#),
        true,
    ),
    (
        Some(r#"{"preset":"digital-bot-connector-v2","base_path":"/"}"#),
        true,
    ),
    (
        Some(r#"{"preset":"digital-bot-connector-v2","base_path":"/x/"}"#),
        false,
    ),
    (Some(r#"{"preset":"v3"}"#), false),
    (
        Some(r#"[{"method":"GET","path":"/bots/*"},{"method":"POST","path":"/"}]"#),
        true,
    ),
    (
        Some(r#"[{"method":"GET","path":"/a"},{"method":"GET","path":"/a"}]"#),
        false,
    ),
    (Some(r#"[{"method":"get","path":"/a"}]"#), false),
    (Some("[]"), false),
];
const WEBHOOKS: Pool = &[
    (None, true),
    (Some("[]"), true),
    (
        Some(r#"[{"path_prefix":"/openmessaging","secret_env":"OM_SECRET"}]"#),
        true,
    ),
    (
        Some(
            r#"[{"path_prefix":"/om/hook","header":"X-Sig","secret":"0123456789abcdef"},{"path_prefix":"/om2","secret_env":"OM_SECRET"}]"#,
        ),
        true,
    ),
    (
        Some(r#"[{"path_prefix":"/botconnector","secret_env":"OM_SECRET"}]"#),
        true,
    ),
    (
        Some(r#"[{"path_prefix":"/","secret_env":"OM_SECRET"}]"#),
        false,
    ),
    (Some(r#"[{"path_prefix":"/om","secret":"short"}]"#), false),
    (
        Some(r#"[{"path_prefix":"/om","secret_env":"NOT_SET"}]"#),
        false,
    ),
    (
        Some(r#"[{"path_prefix":"/om","header":"authorization","secret_env":"OM_SECRET"}]"#),
        true,
    ),
    (
        Some(r#"[{"path_prefix":"/om"},{"path_prefix":"/om/x","secret_env":"OM_SECRET"}]"#),
        false,
    ),
];
const IP_RANGES: Pool = &[
    (None, true),
    (
        Some(
            r#"{"document":{"entities":[{"cidr":"52.1.2.0/24","service":"bot-connector","region":"us-east-1","direction":"outbound"},{"cidr":"bad","service":"x","region":"y"}]},"regions":["us-east-1"]}"#,
        ),
        true,
    ),
    (
        Some(
            r#"{"document":{"entities":[{"cidr":"52.1.2.0/24","service":"bot-connector","region":"us-east-1"}]},"regions":["eu-west-1"]}"#,
        ),
        false,
    ),
    (Some(r#"{"document":{"entities":[]},"regions":[]}"#), false),
];

fn pick(pool: Pool) -> impl Strategy<Value = (Option<&'static str>, bool)> {
    weighted(pool, |p| p.1)
}

#[derive(Debug, Clone)]
struct ConfigCase {
    keys: Vec<(Value, bool, String, String)>,
    client_ip: (Option<&'static str>, bool),
    allow: (Option<&'static str>, bool),
    key_id: (Option<&'static str>, bool, Option<&'static str>),
    max_body: (Option<&'static str>, bool),
    lockout: (Option<&'static str>, bool),
}

impl ConfigCase {
    fn document(&self) -> Value {
        let mut doc = json!({"keys": self.keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>()});
        for (field, text) in [
            ("client_ip", self.client_ip.0),
            ("allow_cidrs", self.allow.0),
            (
                "key_id_header",
                self.key_id.0.map(|s| format!("{s:?}")).as_deref(),
            ),
            ("max_body_bytes", self.max_body.0),
            ("lockout", self.lockout.0),
        ] {
            if let Some(t) = text {
                doc[field] = serde_json::from_str(t).unwrap();
            }
        }
        doc
    }

    /// The sections the reference calls invalid, in no particular order.
    fn invalid_sections(&self) -> Vec<&'static str> {
        let mut bad = Vec::new();
        let metric = |id: &str| id.replace(['.', '-'], "_");
        let mut seen: Vec<String> = Vec::new();
        let mut keys_ok = (1..=64).contains(&self.keys.len());
        for (_, valid, id, _) in &self.keys {
            keys_ok &= *valid && !seen.contains(&metric(id));
            seen.push(metric(id));
        }
        if !keys_ok {
            bad.push("keys");
        }
        let credential = |h: &str| self.keys.iter().any(|k| k.3 == h);
        let key_id_ok = self.key_id.1 && self.key_id.2.is_none_or(|h| !credential(h));
        for (ok, name) in [
            (self.client_ip.1, "client_ip"),
            (self.allow.1, "allow_cidrs"),
            (key_id_ok, "key_id_header"),
            (self.max_body.1, "max_body_bytes"),
            (self.lockout.1, "lockout"),
        ] {
            if !ok {
                bad.push(name);
            }
        }
        bad
    }
}

fn config_case() -> impl Strategy<Value = ConfigCase> {
    (
        prop_oneof![30 => prop::collection::vec(config_key(), 1..4), 1 => Just(Vec::new())],
        pick(CLIENT_IP),
        pick(ALLOW),
        weighted(KEY_ID, |k| k.1),
        pick(MAX_BODY),
        pick(LOCKOUT),
    )
        .prop_map(
            |(keys, client_ip, allow, key_id, max_body, lockout)| ConfigCase {
                keys,
                client_ip,
                allow,
                key_id,
                max_body,
                lockout,
            },
        )
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Random JSON-ish documents (schema field names, values of every type, nested): compile
    /// never panics, and whatever it accepts round-trips.
    #[test]
    fn config_never_panics_on_jsonish_documents(
        fields in prop::collection::vec((select(FIELDS), jsonish()), 0..8),
        keys in prop::option::weighted(0.7, prop::collection::vec(json_object(json_leaf().boxed()), 0..3)),
    ) {
        let mut doc: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(k) = keys {
            doc.insert("keys".into(), Value::Array(k));
        }
        check_accepted(&serde_json::to_vec(&Value::Object(doc)).unwrap())?;
    }

    /// Raw bytes, and valid configurations with bytes flipped, inserted or cut: never panics.
    #[test]
    fn config_never_panics_on_bytes(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        base in select(&[
            r#"{"keys":[{"id":"a","sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b","not_after":"2030-01-01T00:00:00Z"}],"allow_cidrs":["10.0.0.0/8"]}"#,
            r#"{"keys":[{"id":"b","header":"authorization","scheme":"Bearer","sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}],"client_ip":{"from":"x-forwarded-for","trusted_hops":2},"routes":{"preset":"digital-bot-connector-v2","base_path":"/bc"},"webhooks":[{"path_prefix":"/om","secret":"0123456789abcdef"}],"lockout":{}}"#,
        ][..]),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let _ = compile(&raw);
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        check_accepted(&bytes)?;
    }

    /// Keys, client_ip, allow_cidrs, key_id_header, max_body_bytes and lockout from pools of
    /// valid and invalid values: accepted exactly when the reference says so, an error names a
    /// section that is invalid, and an accepted config holds exactly the configured keys.
    #[test]
    fn config_accepts_exactly_what_the_reference_accepts(case in config_case()) {
        let doc = case.document();
        let text = serde_json::to_vec_pretty(&doc).unwrap();
        let bad = case.invalid_sections();
        match compile(&text) {
            Err(e) => {
                prop_assert!(!bad.is_empty(), "refused a valid config: {e}\n{doc}");
                let section = e.path.split(['.', '[']).next().unwrap_or("");
                prop_assert!(bad.contains(&section), "error {e} names no invalid section of {bad:?}");
            }
            Ok(p) => {
                prop_assert!(bad.is_empty(), "accepted a config with invalid {bad:?}\n{doc}");
                prop_assert_eq!(p.keys.keys.len(), case.keys.len());
                for (k, (raw, _, id, header)) in p.keys.keys.iter().zip(&case.keys) {
                    prop_assert_eq!(k.id.as_str(), id.as_str());
                    prop_assert_eq!(&p.keys.headers[k.header], header);
                    prop_assert_eq!(k.hash.to_hex(), raw["sha256"].as_str().unwrap().to_ascii_lowercase());
                    prop_assert_eq!(k.scheme.as_deref(), raw.get("scheme").and_then(Value::as_str));
                }
                check_accepted(&text)?;
            }
        }
    }

    /// Every section from pools (including upstream_token, routes, webhooks and
    /// genesys_ip_ranges): never panics, and what is accepted round-trips.
    #[test]
    fn config_round_trips_what_it_accepts(
        case in config_case(),
        upstream in pick(UPSTREAM),
        routes in pick(ROUTES),
        webhooks in pick(WEBHOOKS),
        ranges in pick(IP_RANGES),
    ) {
        let mut doc = case.document();
        for (field, (text, _)) in [
            ("upstream_token", upstream),
            ("routes", routes),
            ("webhooks", webhooks),
            ("genesys_ip_ranges", ranges),
        ] {
            if let Some(t) = text {
                doc[field] = serde_json::from_str(t).unwrap();
            }
        }
        let text = serde_json::to_vec(&doc).unwrap();
        if let Some(p) = check_accepted(&text)? {
            prop_assert!(case.invalid_sections().is_empty());
            prop_assert!(upstream.1 && routes.1 && ranges.1, "{doc}");
            let inline = doc["webhooks"].as_array().map_or(0, |w| {
                w.iter().filter(|h| h.get("secret").is_some()).count()
            });
            prop_assert_eq!(p.warnings.len(), inline);
        }
    }
}

/// Finding F1 (docs/FUZZING.md): content after the configuration object was ignored, so a
/// second object (here one that would set an allowlist) was silently dropped. Fixed by
/// requiring the end of input after the object.
#[test]
fn config_with_content_after_the_object_is_refused() {
    for trailing in [r#"{"allow_cidrs":["10.0.0.0/8"]}"#, "]", "garbage", ","] {
        let text = format!(r#"{{"keys":[{{"id":"a","sha256":"{HEX_A}"}}]}}{trailing}"#);
        assert!(compile(text.as_bytes()).is_err(), "accepted {text}");
    }
    assert!(
        compile(format!(r#"{{"keys":[{{"id":"a","sha256":"{HEX_A}"}}]}} "#).as_bytes()).is_ok()
    );
}

// ---------------------------------------------------------------------------------------
// CIDRs.

/// A CIDR's text and what the reference makes of it (`None`: host bits set, refused).
fn cidr_text() -> impl Strategy<Value = (String, Option<RefNet>)> {
    let v4 = (any::<u32>(), 0u32..=32, any::<bool>(), any::<bool>()).prop_map(
        |(addr, p, clean, bare)| {
            let net = if clean { addr & v4_mask(p) } else { addr };
            let text = if bare && p == 32 {
                Ipv4Addr::from(net).to_string()
            } else {
                format!("{}/{p}", Ipv4Addr::from(net))
            };
            let ok = net & !v4_mask(p) == 0;
            (text, ok.then_some(RefNet::V4(net, p)))
        },
    );
    let mapped = (any::<u32>(), 0u32..=32, any::<bool>()).prop_map(|(addr, p, clean)| {
        let net = if clean { addr & v4_mask(p) } else { addr };
        let text = format!("::ffff:{}/{}", Ipv4Addr::from(net), 96 + p);
        let ok = net & !v4_mask(p) == 0;
        (text, ok.then_some(RefNet::V4(net, p)))
    });
    let v6_addr = prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|a| 0xffff_0000_0000 | u128::from(a)),
        (0u128..4),
        any::<u16>().prop_map(|a| u128::from(a) << 112),
    ];
    let v6 =
        (v6_addr, 0u32..=128, any::<bool>(), any::<bool>()).prop_map(|(addr, p, clean, bare)| {
            let net = if clean { addr & v6_mask(p) } else { addr };
            let text = if bare && p == 128 {
                Ipv6Addr::from(net).to_string()
            } else {
                format!("{}/{p}", Ipv6Addr::from(net))
            };
            let ok = net & !v6_mask(p) == 0;
            let is_mapped = net >> 32 == 0xffff;
            let want = match (ok, is_mapped && p >= 96) {
                (false, _) => None,
                (true, true) => Some(RefNet::V4(net as u32, p - 96)),
                (true, false) => Some(RefNet::V6(net, p)),
            };
            (text, want)
        });
    prop_oneof![v4, mapped, v6]
}

/// Addresses near `net` (inside it with random host bits) and anywhere.
fn addresses(net: Option<RefNet>, picks: &[(u128, u8)]) -> Vec<IpAddr> {
    picks
        .iter()
        .map(|&(r, how)| match (how % 5, net) {
            (0, Some(RefNet::V4(n, p))) => IpAddr::V4(Ipv4Addr::from(n | (r as u32 & !v4_mask(p)))),
            (1, Some(RefNet::V4(n, p))) => {
                IpAddr::V6(Ipv4Addr::from(n | (r as u32 & !v4_mask(p))).to_ipv6_mapped())
            }
            (0 | 1, Some(RefNet::V6(n, p))) => IpAddr::V6(Ipv6Addr::from(n | (r & !v6_mask(p)))),
            (2, _) => IpAddr::V4(Ipv4Addr::from(r as u32)),
            (3, _) => IpAddr::V6(Ipv4Addr::from(r as u32).to_ipv6_mapped()),
            _ => IpAddr::V6(Ipv6Addr::from(r)),
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Parsing agrees with the reference (host bits, IPv4-mapped networks), and membership of
    /// random addresses (IPv4, IPv6, IPv4-mapped) agrees with independent masks.
    #[test]
    fn cidr_membership_agrees_with_reference_masks(
        (text, want) in cidr_text(),
        picks in prop::collection::vec((any::<u128>(), any::<u8>()), 8),
    ) {
        let got = Cidr::parse(&text);
        prop_assert_eq!(got.ok(), want.map(RefNet::as_cidr), "{}", text);
        if let (Ok(cidr), Some(net)) = (got, want) {
            for ip in addresses(want, &picks) {
                prop_assert_eq!(cidr.contains(ip), net.contains(ip), "{} contains {}", text, ip);
            }
        }
    }

    /// A set contains an address exactly when one of its members does.
    #[test]
    fn cidr_set_is_the_union_of_its_members(
        nets in prop::collection::vec(cidr_text(), 0..6),
        picks in prop::collection::vec((any::<u128>(), any::<u8>()), 8),
    ) {
        let refs: Vec<RefNet> = nets.iter().filter_map(|n| n.1).collect();
        let set = CidrSet::new(refs.iter().map(|r| r.as_cidr()).collect());
        prop_assert_eq!(set.len(), refs.len());
        for ip in addresses(refs.first().copied(), &picks) {
            prop_assert_eq!(set.contains(ip), refs.iter().any(|r| r.contains(ip)), "{}", ip);
        }
    }

    /// Any text: never panics, and an accepted CIDR has no host bits and contains its network.
    #[test]
    fn cidr_parse_never_panics(text in prop_oneof!["\\PC{0,40}", "[0-9a-fA-F:./%\\[\\] ]{0,44}"]) {
        match Cidr::parse(&text) {
            Ok(Cidr::V4 { net, prefix }) => {
                prop_assert!(prefix <= 32 && net & !v4_mask(u32::from(prefix)) == 0);
                let cidr = Cidr::V4 { net, prefix };
                prop_assert!(cidr.contains(IpAddr::V4(net.into())));
            }
            Ok(Cidr::V6 { net, prefix }) => {
                prop_assert!(prefix <= 128 && net & !v6_mask(u32::from(prefix)) == 0);
                prop_assert!(net >> 32 != 0xffff || prefix < 96);
            }
            Err(m) => prop_assert!(!m.is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Client IP.

/// One X-Forwarded-For entry in one of many shapes, and the address it stands for
/// (`None`: not an address, so never a client).
fn xff_entry() -> impl Strategy<Value = (String, Option<IpAddr>)> {
    let v4 = any::<u32>().prop_map(Ipv4Addr::from);
    let v6 = prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|a| 0xffff_0000_0000 | u128::from(a)),
        (0u128..4),
    ]
    .prop_map(Ipv6Addr::from);
    let port_ok = prop_oneof![
        (0u32..=65535).prop_map(|p| p.to_string()),
        (0u32..=65535).prop_map(|p| format!("{p:05}")),
    ];
    let port_bad = prop_oneof![
        Just(String::new()),
        (65536u32..1_000_000).prop_map(|p| p.to_string()),
        (0u32..=65535).prop_map(|p| format!("{p:06}")),
        select(&["123456", "0x1f", "-1", "8a", " 80", "+80", "8 0"][..]).prop_map(str::to_owned),
    ];
    let shape = prop_oneof![
        v4.clone()
            .prop_map(|a| (a.to_string(), Some(IpAddr::V4(a)))),
        (v4.clone(), port_ok.clone()).prop_map(|(a, p)| (format!("{a}:{p}"), Some(IpAddr::V4(a)))),
        (v4.clone(), port_bad.clone()).prop_map(|(a, p)| (format!("{a}:{p}"), None)),
        v6.clone()
            .prop_map(|a| (a.to_string(), Some(IpAddr::V6(a)))),
        v6.clone()
            .prop_map(|a| (format!("[{a}]"), Some(IpAddr::V6(a)))),
        (v6.clone(), port_ok).prop_map(|(a, p)| (format!("[{a}]:{p}"), Some(IpAddr::V6(a)))),
        (v6.clone(), port_bad).prop_map(|(a, p)| (format!("[{a}]:{p}"), None)),
        v6.clone().prop_map(|a| (format!("[{a}"), None)),
        v6.clone().prop_map(|a| (format!("[{a}]x"), None)),
        v6.clone().prop_map(|a| (format!("{a}%eth0"), None)),
        v6.prop_map(|a| (format!("[{a}%25eth0]:80"), None)),
        v4.clone().prop_map(|a| (format!("[{a}]"), None)),
        (v4, 0u8..100).prop_map(|(a, o)| {
            let [_, b, c, d] = a.octets();
            (format!("0{o}.{b}.{c}.{d}"), None)
        }),
        select(
            &[
                "",
                " ",
                "unknown",
                "_hidden",
                "1.2.3",
                "1.2.3.4.5",
                "1.2.3.256",
                "1.2.3.4 5.6.7.8",
                "\"1.2.3.4\"",
                "1.2.3.4\0",
                "1.2.3.4\r",
                "\n",
                "::ffff:1.2.3.4.5",
                "1::2::3",
                "[]",
                "[::1]]",
                "1.2.3.4:80:80",
            ][..]
        )
        .prop_map(|g| (g.to_owned(), None)),
        "[g-z_\"!;]{1,8}".prop_map(|g| (g, None)),
    ];
    (shape, "[ \t]{0,2}", "[ \t]{0,2}").prop_map(|((text, ip), l, r)| (format!("{l}{text}{r}"), ip))
}

type XffValues = Vec<Vec<(String, Option<IpAddr>)>>;

fn xff_values() -> impl Strategy<Value = XffValues> {
    prop::collection::vec(prop::collection::vec(xff_entry(), 1..6), 0..4)
}

fn joined(values: &XffValues) -> Vec<String> {
    values
        .iter()
        .map(|v| v.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join(","))
        .collect()
}

/// The rule as documented: the N-th entry from the right across all values, empty entries
/// included; an entry that is not an address makes the client unknown.
fn reference_xff(values: &XffValues, n: usize) -> Result<IpAddr, Unknown> {
    let all: Vec<Option<IpAddr>> = values.iter().flatten().map(|e| e.1).collect();
    if n > all.len() {
        return Err(Unknown::TooFewForwardedEntries);
    }
    all[all.len() - n]
        .map(unmap)
        .ok_or(Unknown::UnparsableForwardedEntry)
}

/// `source.address` text and its expected outcome under the downstream rule.
fn downstream() -> impl Strategy<Value = (Option<String>, Result<IpAddr, Unknown>)> {
    let v4 = any::<u32>().prop_map(|a| IpAddr::V4(a.into()));
    let v6 = prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|a| 0xffff_0000_0000 | u128::from(a)),
    ]
    .prop_map(|a| IpAddr::V6(a.into()));
    let show = |ip: IpAddr, port: u16| match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    prop_oneof![
        (prop_oneof![v4.clone(), v6.clone()], 1u16..=65535)
            .prop_map(move |(ip, port)| (Some(show(ip, port)), Ok(unmap(ip)))),
        prop_oneof![v4.clone(), v6]
            .prop_map(move |ip| (Some(show(ip, 0)), Err(Unknown::DownstreamFromHeader))),
        v4.prop_map(|ip| (Some(ip.to_string()), Err(Unknown::NoDownstreamAddress))),
        Just((None, Err(Unknown::NoDownstreamAddress))),
        "\\PC{0,12}"
            .prop_filter("not an address", |s| s
                .parse::<std::net::SocketAddr>()
                .is_err())
            .prop_map(|s| (Some(s), Err(Unknown::NoDownstreamAddress))),
    ]
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Each entry shape parses to exactly the address it was made from, or to nothing.
    #[test]
    fn forwarded_entries_parse_to_the_address_they_were_made_from(entry in xff_entry()) {
        prop_assert_eq!(parse_forwarded_entry(&entry.0), entry.1, "{:?}", entry.0);
    }

    /// Any text: never panics, and an accepted entry is an address the standard library reads
    /// from the trimmed entry (bare, `ip:port`, `[v6]` or `[v6]:port`).
    #[test]
    fn forwarded_entry_parse_never_panics(text in prop_oneof!["\\PC{0,48}", "[0-9a-f:.\\[\\] %\t]{0,48}"]) {
        if let Some(ip) = parse_forwarded_entry(&text) {
            let t = text.trim_matches([' ', '\t']);
            let reread = t.parse::<IpAddr>().ok()
                .or_else(|| t.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                .or_else(|| t.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(IpAddr::V6));
            prop_assert_eq!(reread, Some(ip), "{:?}", text);
        }
    }

    /// X-Forwarded-For lists of random entries over random header values: the selected client
    /// is the reference's, for every trusted_hops.
    #[test]
    fn client_ip_from_forwarded_for_agrees_with_the_rule(
        values in xff_values(),
        hops in prop_oneof![1u8..=4, 1u8..=32],
    ) {
        let texts = joined(&values);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rule = ClientIpRule::ForwardedFor { trusted_hops: hops };
        prop_assert_eq!(rule.client(&refs, None), reference_xff(&values, usize::from(hops)), "{:?}", texts);
    }

    /// The downstream rule: the peer address, unless the port is 0 (taken from a header) or
    /// there is none; X-Forwarded-For is never read.
    #[test]
    fn client_ip_from_downstream_agrees_with_the_rule(
        (text, want) in downstream(),
        values in xff_values(),
    ) {
        let texts = joined(&values);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        prop_assert_eq!(ClientIpRule::Downstream.client(&refs, text.as_deref()), want);
    }
}

// ---------------------------------------------------------------------------------------
// The decision.

const BASE_MS: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z
const KEY_HEADERS: &[&str] = &["x-bcsp-key", "authorization", "x-api-key"];
const SCHEMES: &[Option<&str>] = &[None, Some("Bearer"), Some("Token")];
const SECRETS: &[&str] = &[
    "s3cret",
    "other-secret",
    "tok en",
    "Bearer s3cret",
    "ünï",
    "x",
];
const ALLOW_POOL: &[(&str, RefNet)] = &[
    ("10.0.0.0/8", RefNet::V4(0x0a00_0000, 8)),
    ("2001:db8::/32", RefNet::V6(0x2001_0db8 << 96, 32)),
    ("192.0.2.1", RefNet::V4(0xc000_0201, 32)),
    ("::ffff:198.51.100.0/120", RefNet::V4(0xc633_6400, 24)),
    ("::/0", RefNet::V6(0, 0)),
];

#[derive(Clone, Debug)]
struct GenKey {
    header: usize,
    scheme: Option<&'static str>,
    secret: &'static str,
    not_before: Option<i64>,
    not_after: Option<i64>,
}

/// `BASE_MS + off` as RFC 3339, in UTC or at +01:00 (written out here, not by the filter).
fn stamp(off: i64, plus_one: bool) -> String {
    let ms = 8 * 3_600_000 + off + if plus_one { 3_600_000 } else { 0 };
    format!(
        "2027-01-15T{:02}:{:02}:{:02}.{:03}{}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000,
        if plus_one { "+01:00" } else { "Z" }
    )
}

fn gen_key() -> impl Strategy<Value = GenKey> {
    (
        0..KEY_HEADERS.len(),
        select(SCHEMES),
        select(SECRETS),
        prop::option::of(-3000i64..3000),
        prop::option::of(-3000i64..3000),
    )
        .prop_map(|(header, scheme, secret, nb, na)| {
            let (not_before, not_after) = match (nb, na) {
                (Some(b), Some(a)) if b == a => (Some(b), None),
                (Some(b), Some(a)) => (Some(b.min(a)), Some(b.max(a))),
                other => other,
            };
            GenKey {
                header,
                scheme,
                secret,
                not_before,
                not_after,
            }
        })
}

/// A header value: some key's credential (scheme in any case, spaces or tabs), a bare secret,
/// another scheme, or junk.
#[derive(Clone, Debug)]
enum GenValue {
    KeyCredential(Index, u8, &'static str),
    Secret(&'static str),
    Scheme(&'static str, &'static str, usize),
    Junk(String),
}

fn gen_value() -> impl Strategy<Value = GenValue> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>(), select(&[" ", " ", "  ", "   ", " \t", "\t", "\t "][..]))
            .prop_map(|(i, c, s)| GenValue::KeyCredential(i, c, s)),
        2 => select(SECRETS).prop_map(GenValue::Secret),
        1 => (select(&["Bearer", "bearer", "Token", "Basic", "Bearer\t", "Bearer \t", "token\t "][..]), select(SECRETS), 0usize..3)
            .prop_map(|(sc, s, n)| GenValue::Scheme(sc, s, n)),
        1 => "[ -~]{0,12}".prop_map(GenValue::Junk),
    ]
}

fn mixed_case(s: &str, mask: u8) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 8) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
struct DecisionCase {
    keys: Vec<GenKey>,
    allow: Option<Vec<usize>>,
    hops: Option<u8>,
    downstream: (Option<String>, Result<IpAddr, Unknown>),
    xff: XffValues,
    /// (name index into KEY_HEADERS + extras, letter-case mask, value)
    headers: Vec<(usize, u8, GenValue)>,
    now: (i64, Option<Index>),
    plus_one: bool,
}

fn decision_case() -> impl Strategy<Value = DecisionCase> {
    (
        prop::collection::vec(gen_key(), 1..5),
        prop::option::of(prop::collection::vec(0..ALLOW_POOL.len(), 1..3)),
        prop::option::of(1u8..4),
        downstream(),
        xff_values(),
        prop::collection::vec((0..KEY_HEADERS.len() + 2, any::<u8>(), gen_value()), 0..6),
        (-3500i64..3500, prop::option::weighted(0.3, any::<Index>())),
        any::<bool>(),
    )
        .prop_map(
            |(keys, allow, hops, downstream, xff, headers, now, plus_one)| DecisionCase {
                keys,
                allow,
                hops,
                downstream,
                xff,
                headers,
                now,
                plus_one,
            },
        )
}

impl DecisionCase {
    fn policy(&self) -> Policy {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut o = json!({
                    "id": format!("key-{i}"),
                    "header": mixed_case(KEY_HEADERS[k.header], i as u8 * 37),
                    "sha256": sha256_hex(k.secret.as_bytes()),
                });
                if let Some(s) = k.scheme {
                    o["scheme"] = s.into();
                }
                if let Some(b) = k.not_before {
                    o["not_before"] = stamp(b, self.plus_one).into();
                }
                if let Some(a) = k.not_after {
                    o["not_after"] = stamp(a, !self.plus_one).into();
                }
                o
            })
            .collect();
        let mut doc = json!({ "keys": keys });
        if let Some(allow) = &self.allow {
            doc["allow_cidrs"] = allow
                .iter()
                .map(|&i| ALLOW_POOL[i].0)
                .collect::<Vec<_>>()
                .into();
        }
        if let Some(n) = self.hops {
            doc["client_ip"] = json!({"from": "x-forwarded-for", "trusted_hops": n});
        }
        compile(doc.to_string().as_bytes()).expect("generated policy compiles")
    }

    fn now_ms(&self) -> i64 {
        let boundaries: Vec<i64> = self
            .keys
            .iter()
            .flat_map(|k| [k.not_before, k.not_after])
            .flatten()
            .collect();
        match self.now.1 {
            Some(i) if !boundaries.is_empty() => BASE_MS + boundaries[i.index(boundaries.len())],
            _ => BASE_MS + self.now.0,
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, mask, value) in &self.headers {
            let name = match *name {
                i if i < KEY_HEADERS.len() => KEY_HEADERS[i],
                i if i == KEY_HEADERS.len() => "x-bcsp-key-id",
                _ => "other",
            };
            let value = match value {
                GenValue::KeyCredential(i, case, separator) => {
                    let k = &self.keys[i.index(self.keys.len())];
                    match k.scheme {
                        None => k.secret.to_owned(),
                        Some(s) => format!("{}{separator}{}", mixed_case(s, *case), k.secret),
                    }
                }
                GenValue::Secret(s) => (*s).to_owned(),
                GenValue::Scheme(sc, s, n) => format!("{sc}{}{s}", " ".repeat(*n)),
                GenValue::Junk(j) => j.clone(),
            };
            out.push((mixed_case(name, *mask), value));
        }
        for (i, v) in joined(&self.xff).into_iter().enumerate() {
            let name = if i % 2 == 0 {
                "x-forwarded-for"
            } else {
                "X-Forwarded-For"
            };
            out.insert(i.min(out.len()), (name.to_owned(), v));
        }
        out
    }

    /// The documented verdict: `Ok(key index)` or the denial.
    fn reference(&self, headers: &[(String, String)], now: i64) -> Result<usize, DenyReason> {
        if let Some(allow) = &self.allow {
            let client = match self.hops {
                None => self.downstream.1,
                Some(n) => reference_xff(&self.xff, usize::from(n)),
            };
            match client {
                Err(u) => return Err(DenyReason::ClientUnknown(u)),
                Ok(ip) if !allow.iter().any(|&i| ALLOW_POOL[i].1.contains(ip)) => {
                    return Err(DenyReason::ClientNotAllowed)
                }
                Ok(_) => {}
            }
        }
        let values = |h: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let used: Vec<&str> = self.keys.iter().map(|k| KEY_HEADERS[k.header]).collect();
        if used.iter().any(|h| values(h).len() > 1) {
            return Err(DenyReason::DuplicateHeader);
        }
        if used.iter().all(|h| values(h).is_empty()) {
            return Err(DenyReason::MissingKey);
        }
        let matching: Vec<usize> = (0..self.keys.len())
            .filter(|&i| {
                let k = &self.keys[i];
                values(KEY_HEADERS[k.header])
                    .first()
                    .is_some_and(|v| presents(v, k.scheme, k.secret))
            })
            .collect();
        let open = |k: &GenKey| {
            k.not_before.is_none_or(|b| BASE_MS + b <= now)
                && k.not_after.is_none_or(|a| now < BASE_MS + a)
        };
        if let Some(&i) = matching.iter().find(|&&i| open(&self.keys[i])) {
            return Ok(i);
        }
        Err(if matching.is_empty() {
            DenyReason::InvalidKey
        } else {
            DenyReason::KeyOutsideWindow
        })
    }
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Random keys (headers, schemes, secrets, windows), allowlists, client-IP rules,
    /// X-Forwarded-For lists and header sets: an admitted request always carried exactly one
    /// value of each credential header, one of which presents the admitted key's secret (with
    /// its scheme), inside its window, from an allowed client; and every verdict is the
    /// reference's.
    #[test]
    fn decision_never_admits_without_a_matching_valid_key(case in decision_case()) {
        let policy = case.policy();
        let headers = case.headers();
        let pairs = bcsp_guard::host::header_map::borrowed(&headers);
        let now = case.now_ms();
        let view = RequestView {
            headers: &pairs,
            downstream: case.downstream.0.as_deref(),
            now_ms: now,
        };
        let got = decide(&policy, &view);
        if let Decision::Admit(key) = &got {
            let i: usize = key.id.as_str().strip_prefix("key-").unwrap().parse().unwrap();
            let k = &case.keys[i];
            let header = KEY_HEADERS[k.header];
            prop_assert!(
                headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(header) && presents(v, k.scheme, k.secret)),
                "admitted key-{} without its secret: {:?}", i, headers
            );
            prop_assert!(k.not_before.is_none_or(|b| BASE_MS + b <= now), "admitted before not_before");
            prop_assert!(k.not_after.is_none_or(|a| now < BASE_MS + a), "admitted at or after not_after");
            for h in &policy.keys.headers {
                prop_assert!(headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(h)).count() <= 1, "{} repeated", h);
            }
            if let Some(allow) = &case.allow {
                let ip = bcsp_guard::policy::decide::client_of(&policy, &view).expect("admitted an unknown client");
                prop_assert!(allow.iter().any(|&j| ALLOW_POOL[j].1.contains(ip)), "admitted {}", ip);
            }
        }
        let got = match got {
            Decision::Admit(k) => Ok(k.id.as_str().strip_prefix("key-").unwrap().parse::<usize>().unwrap()),
            Decision::Deny(d) => Err(d.reason),
        };
        prop_assert_eq!(got, case.reference(&headers, now), "headers {:?} at {}", headers, now);
    }
}

// ---------------------------------------------------------------------------------------
// JWT `exp`.

#[derive(Clone, Debug)]
enum Exp {
    Absent,
    Int(i64),
    Text(&'static str),
}

#[derive(Clone, Debug)]
enum Payload {
    Claims {
        exp: Exp,
        before: usize,
        pad: usize,
        ws: (&'static str, &'static str),
    },
    NotObject(&'static str),
    Broken(&'static [u8]),
}

const NOW_S: i64 = 1_700_000_000;
const BROKEN_PAYLOADS: &[&[u8]] = &[
    b"",
    b"{",
    b"{\"exp\":18",
    b"\xff{\"exp\":1800000000}",
    b"{\"exp\":1800000000,}",
];

fn payload() -> impl Strategy<Value = Payload> {
    let exp = prop_oneof![
        1 => Just(Exp::Absent),
        6 => prop_oneof![NOW_S - 5..NOW_S + 5, any::<i64>(), Just(i64::MIN), Just(i64::MAX)].prop_map(Exp::Int),
        3 => select(&[
            "9223372036854775808", "18446744073709551615", "-9223372036854775809",
            "1.8e9", "1800000000.0", "1e3", "\"1800000000\"", "null", "true", "[1800000000]",
            "{\"exp\":1800000000}",
        ][..]).prop_map(Exp::Text),
    ];
    let ws = select(&["", " ", "\n", "\t\r\n "][..]);
    prop_oneof![
        8 => (exp, 0usize..4, prop_oneof![3 => 0usize..16, 1 => 6000usize..6200], (ws.clone(), ws))
            .prop_map(|(exp, before, pad, ws)| Payload::Claims { exp, before, pad, ws }),
        1 => select(&["[1,2]", "1800000000", "\"exp\"", "null", "true"][..]).prop_map(Payload::NotObject),
        1 => select(BROKEN_PAYLOADS).prop_map(Payload::Broken),
    ]
}

impl Payload {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Claims {
                exp,
                before,
                pad,
                ws,
            } => {
                let mut claims = vec![
                    r#""aud":"https://bcsp.example""#.to_owned(),
                    format!(r#""iat":{NOW_S}"#),
                    r#""nested":{"exp":1}"#.to_owned(),
                    format!(r#""pad":"{}""#, "p".repeat(*pad)),
                ];
                let exp = match exp {
                    Exp::Absent => None,
                    Exp::Int(e) => Some(e.to_string()),
                    Exp::Text(t) => Some((*t).to_owned()),
                };
                if let Some(e) = exp {
                    claims.insert((*before).min(claims.len()), format!(r#""exp":{e}"#));
                }
                format!("{}{{{}}}{}", ws.0, claims.join(","), ws.1).into_bytes()
            }
            Payload::NotObject(t) => t.as_bytes().to_vec(),
            Payload::Broken(b) => b.to_vec(),
        }
    }

    /// What the payload alone makes of the token: its exp, or the error.
    fn reference(&self) -> Result<i64, TokenError> {
        match self {
            Payload::Claims {
                exp: Exp::Int(e), ..
            } if *e > NOW_S => Ok(*e),
            Payload::Claims {
                exp: Exp::Int(_), ..
            } => Err(TokenError::Expired),
            Payload::Claims { .. } => Err(TokenError::NoExp),
            Payload::NotObject(_) | Payload::Broken(_) => Err(TokenError::BadPayload),
        }
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Generated tokens (exp as every JSON shape, claims in any order, sizes around the 8 KiB
    /// limit, line endings): the result is exactly the reference's.
    #[test]
    fn jwt_exp_agrees_with_reference(
        payload in payload(),
        header in prop::collection::vec(any::<u8>(), 1..40),
        signature in prop::collection::vec(any::<u8>(), 1..300),
        ending in select(&["", "\n", "\r\n", "\n\n", "\r", " ", "\t"][..]),
    ) {
        let jwt = format!(
            "{}.{}.{}",
            ref_b64_encode(&header, B64_URL, false),
            ref_b64_encode(&payload.bytes(), B64_URL, false),
            ref_b64_encode(&signature, B64_URL, false),
        );
        let body = format!("{jwt}{ending}");
        // Exactly one trailing `\r\n` or `\n` is forgiven.
        let stripped_len = body.len()
            - match ending {
                "\r\n" => 2,
                "\n" | "\n\n" => 1,
                _ => 0,
            };
        let want = if stripped_len > 8192 {
            Err(TokenError::TooLarge)
        } else if !["", "\n", "\r\n"].contains(&ending) {
            Err(TokenError::BadHeaderBytes)
        } else {
            payload.reference()
        };
        // An empty payload is an empty segment: not a JWT at all.
        let want = match want {
            Err(TokenError::TooLarge | TokenError::BadHeaderBytes) => want,
            _ if payload.bytes().is_empty() => Err(TokenError::NotJwt),
            _ => want,
        };
        let got = parse_identity_token(body.as_bytes(), NOW_S);
        prop_assert_eq!(got.as_ref().map(|t| t.exp()).map_err(|e| *e), want);
        if let Ok(t) = got {
            prop_assert_eq!(t.jwt(), jwt);
        }
    }

    /// Bytes, and generated tokens with a byte changed: never panics, and an accepted token is
    /// visible ASCII, three segments, unexpired.
    #[test]
    fn jwt_parse_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..200),
        payload in payload(),
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let _ = parse_identity_token(&raw, NOW_S);
        let mut jwt = format!("eyJhbGciOiJSUzI1NiJ9.{}.c2ln", ref_b64_encode(&payload.bytes(), B64_URL, false)).into_bytes();
        let i = at.index(jwt.len());
        jwt[i] = byte;
        if let Ok(t) = parse_identity_token(&jwt, NOW_S) {
            prop_assert!(t.jwt().bytes().all(|b| (0x21..=0x7e).contains(&b)));
            prop_assert_eq!(t.jwt().split('.').count(), 3);
            prop_assert!(t.exp() > NOW_S);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Webhook signatures and base64.

fn hook(secret: &[u8]) -> Webhook {
    Webhook {
        path_prefix: "/openmessaging".into(),
        header: "x-hub-signature-256".into(),
        secret: WebhookSecret::new(secret).unwrap(),
        source: SecretSource::Inline,
    }
}

fn reference_mac(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The documented rule: `sha256=` in any case, then the canonical base64 of 32 bytes,
/// surrounding whitespace ignored; the right MAC or `Mismatch`, anything else `Malformed`.
fn reference_verify(value: &str, mac: &[u8]) -> Result<(), SignatureError> {
    let tag = value
        .trim()
        .split_once('=')
        .filter(|(alg, _)| alg.eq_ignore_ascii_case("sha256"))
        .and_then(|(_, t)| ref_b64_decode(t.as_bytes(), B64_STD, true))
        .filter(|t| t.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    if tag == mac {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Clone, Debug)]
enum SigValue {
    Good(&'static str, &'static str, &'static str),
    Mutated(Index, char, u8),
    OtherBody,
    Hex,
    Random(String),
}

fn sig_value() -> impl Strategy<Value = SigValue> {
    let ws = select(&["", " ", "\t", "\n", "\u{a0}", "\u{2003}"][..]);
    prop_oneof![
        2 => (select(&["sha256", "SHA256", "Sha256", "sha-256", "sha1", ""][..]), ws.clone(), ws)
            .prop_map(|(a, l, r)| SigValue::Good(a, l, r)),
        3 => (any::<Index>(), prop_oneof![select(&['=', '+', '/', 'A', 'B', 'a', 'Q', ' ', '\0', 'é'][..]), any::<char>()], 0u8..3)
            .prop_map(|(i, c, op)| SigValue::Mutated(i, c, op)),
        1 => Just(SigValue::OtherBody),
        1 => Just(SigValue::Hex),
        1 => "\\PC{0,60}".prop_map(SigValue::Random),
    ]
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Signatures agree with an independent HMAC-SHA256 + base64; any header value is
    /// accepted exactly when the reference accepts it, refused as the reference says, and
    /// parsing never panics.
    #[test]
    fn webhook_signature_header_parsing(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 0..200),
        value in sig_value(),
    ) {
        let h = hook(&secret);
        let mac = reference_mac(&secret, &body);
        let good = format!("sha256={}", ref_b64_encode(&mac, B64_STD, true));
        prop_assert_eq!(h.secret.sign(&body), good.clone());
        let text = match value {
            SigValue::Good(alg, l, r) => format!("{l}{alg}={}{r}", &good[7..]),
            SigValue::Mutated(at, c, op) => {
                let mut chars: Vec<char> = good.chars().collect();
                let i = at.index(chars.len() + 1);
                match op {
                    0 if i < chars.len() => chars[i] = c,
                    1 => chars.insert(i, c),
                    _ => { chars.truncate(i); }
                }
                chars.into_iter().collect()
            }
            SigValue::OtherBody => hook(&secret).secret.sign(b"another body"),
            SigValue::Hex => format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            SigValue::Random(s) => s,
        };
        prop_assert_eq!(h.verify(&text, &body), reference_verify(&text, &mac), "{:?}", text);
    }

    /// Standard base64 (padded) and base64url (unpadded) against the reference, both ways.
    #[test]
    fn base64_agrees_with_reference(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        text in prop_oneof!["[A-Za-z0-9+/=_-]{0,24}", "\\PC{0,16}"],
    ) {
        prop_assert_eq!(b64::encode(&bytes, Alphabet::Standard), ref_b64_encode(&bytes, B64_STD, true));
        prop_assert_eq!(b64::encode(&bytes, Alphabet::Url), ref_b64_encode(&bytes, B64_URL, false));
        prop_assert_eq!(b64::decode(text.as_bytes(), Alphabet::Standard), ref_b64_decode(text.as_bytes(), B64_STD, true), "{:?}", text);
        prop_assert_eq!(b64::decode(text.as_bytes(), Alphabet::Url), ref_b64_decode(text.as_bytes(), B64_URL, false), "{:?}", text);
    }
}

// ---------------------------------------------------------------------------------------
// Routes.

const SEGMENTS: &[&str] = &[
    "bots",
    "messages",
    "botconnector",
    "b-1",
    "*",
    ".",
    "..",
    "",
    "%2e",
    "%2E%2e",
    "%2F",
    "%5c",
    "%25",
    "%00",
    "%41",
    "%zz",
    "%2",
    ";x",
    "a\\b",
    "é",
    "a b",
    "x?q=../..",
    "y#frag",
    "~a",
];

fn raw_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(select(SEGMENTS), 0..5),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(segs, abs)| format!("{}{}", if abs { "/" } else { "" }, segs.join("/")))
}

/// The documented cleanliness rule, before the query: absolute, visible ASCII, no `;` or
/// `\`, every `%` two hex digits not encoding `.`, `/`, `\`, `%` or NUL, no empty, `.` or
/// `..` segment.
fn reference_clean(raw: &str) -> Option<&str> {
    let path = &raw[..raw.find(['?', '#']).unwrap_or(raw.len())];
    if !path.starts_with('/') {
        return None;
    }
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            if [b'.', b'/', b'\\', b'%', 0].contains(&u8::from_str_radix(h, 16).ok()?) {
                return None;
            }
            i += 3;
            continue;
        }
        if b[i] == b';' || b[i] == b'\\' || !(0x21..=0x7e).contains(&b[i]) {
            return None;
        }
        i += 1;
    }
    if path != "/"
        && path[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    Some(path)
}

/// A configured route: method, path; accepted exactly when valid.
fn reference_route_ok(method: &str, path: &str) -> bool {
    let method_ok = (1..=16).contains(&method.len())
        && method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-');
    let literal = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()+,=:@".contains(&c))
    };
    let path_ok = path == "/"
        || (path.starts_with('/')
            && !path.ends_with('/')
            && path[1..]
                .split('/')
                .all(|s| s == "*" || (!s.is_empty() && s != "." && s != ".." && literal(s))));
    method_ok && path_ok
}

fn reference_matches(pattern: &str, path: &str) -> bool {
    let segs = |p: &str| -> Vec<String> {
        if p == "/" {
            Vec::new()
        } else {
            p[1..].split('/').map(str::to_owned).collect()
        }
    };
    let (pat, got) = (segs(pattern), segs(path));
    pat.len() == got.len()
        && pat
            .iter()
            .zip(&got)
            .all(|(p, g)| (p == "*" && !g.is_empty()) || p == g)
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Request paths made of tricky segments: clean exactly when the reference says so; then
    /// the route table answers as a segment-by-segment match would.
    #[test]
    fn route_paths_are_clean_and_matched_as_the_reference_says(
        raw in raw_path(),
        method in select(&["GET", "POST", "PUT", "HEAD"][..]),
        base in select(&["", "/botconnector", "/bots"][..]),
        extra in prop::collection::vec((select(&["GET", "POST", "get", "DELETE"][..]), raw_path()), 0..3),
    ) {
        let clean = clean_path(&raw);
        prop_assert_eq!(clean.ok(), reference_clean(&raw), "{:?}", raw);
        let mut list: Vec<Route> = routes::DIGITAL_BOT_CONNECTOR_V2
            .iter()
            .map(|(m, p)| Route::parse(m, &format!("{base}{p}")).unwrap())
            .collect();
        for (m, p) in &extra {
            let parsed = Route::parse(m, p);
            prop_assert_eq!(parsed.is_ok(), reference_route_ok(m, p), "{} {}", m, p);
            if let Ok(r) = parsed {
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        let Ok(path) = clean else { return Ok(()) };
        let table = Routes::new(list.clone(), None);
        let matching: Vec<&Route> = list.iter().filter(|r| reference_matches(&r.path, path)).collect();
        match table.find(method, path) {
            RouteMatch::Allowed(r) => {
                prop_assert_eq!(r.method.as_str(), method);
                prop_assert!(matching.contains(&r), "{} allowed {}", r, path);
            }
            RouteMatch::WrongMethod(allow) => {
                prop_assert!(!matching.is_empty() && matching.iter().all(|r| r.method != method));
                let mut want: Vec<&str> = Vec::new();
                for r in &matching {
                    if !want.contains(&r.method.as_str()) {
                        want.push(&r.method);
                    }
                }
                prop_assert_eq!(allow, want.join(", "));
            }
            RouteMatch::NotFound => prop_assert!(matching.is_empty(), "{} matches {:?}", path, matching),
        }
    }

    /// Any text as a path, route or media type: never panics.
    #[test]
    fn route_parsers_never_panic(a in "\\PC{0,40}", b in "[/a-z*.%;\\\\?#2eE5cC0 ]{0,24}") {
        for s in [&a, &b] {
            if let Ok(p) = clean_path(s) {
                prop_assert_eq!(Some(p), reference_clean(s));
            }
            prop_assert_eq!(Route::parse("GET", s).is_ok(), reference_route_ok("GET", s), "{:?}", s);
            let _ = routes::check_literal_path(s);
            let _ = routes::is_json_media_type(s);
        }
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3339 and the lockout table.

proptest! {
    #![proptest_config(cases(2048))]

    /// Generated timestamps (any valid date 0000–9999, fractions, offsets) give the reference
    /// instant; impossible dates and times are refused.
    #[test]
    fn rfc3339_agrees_with_reference(
        y in prop_oneof![0i64..=9999, select(&[0i64, 1600, 1900, 2000, 2024, 2100, 2400, 9999][..])],
        m in 1i64..=12,
        d in prop_oneof![1i64..=31, 28i64..=31],
        hh in 0i64..=24, mm in 0i64..=60, ss in 0i64..=60,
        frac in prop::option::of("[0-9]{1,9}"),
        offset in prop::option::of((any::<bool>(), 0i64..=24, 0i64..=60)),
        lower in any::<bool>(),
    ) {
        let off_text = match offset {
            None => if lower { "z".to_owned() } else { "Z".to_owned() },
            Some((neg, oh, om)) => format!("{}{oh:02}:{om:02}", if neg { '-' } else { '+' }),
        };
        let text = format!(
            "{y:04}-{m:02}-{d:02}{}{hh:02}:{mm:02}:{ss:02}{}{off_text}",
            if lower { 't' } else { 'T' },
            frac.as_deref().map(|f| format!(".{f}")).unwrap_or_default()
        );
        let valid = d <= days_in(y, m)
            && hh < 24 && mm < 60 && ss < 60
            && offset.is_none_or(|(_, oh, om)| oh < 24 && om < 60);
        let want = valid.then(|| {
            let millis = frac.as_deref().map_or(0, |f| format!("{f:0<3}")[..3].parse::<i64>().unwrap());
            let off = offset.map_or(0, |(neg, oh, om)| (oh * 3600 + om * 60) * if neg { -1 } else { 1 });
            (ref_days(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - off) * 1000 + millis
        });
        prop_assert_eq!(parse_rfc3339(&text), want, "{}", text);
        if let Some(ms) = want {
            let shown = format_rfc3339(ms);
            // Years outside 0000–9999 print as `-001-…` or `10000-…`, which are no RFC 3339.
            if shown.len() == 20 && shown.starts_with(|c: char| c.is_ascii_digit()) {
                prop_assert_eq!(parse_rfc3339(&shown), Some(ms - ms.rem_euclid(1000)));
            }
        }
    }

    #[test]
    fn rfc3339_never_panics(text in prop_oneof!["\\PC{0,40}", "[0-9T:.Z+-]{18,34}"]) {
        let _ = parse_rfc3339(&text);
    }

    /// Shared lockout tables: decoded exactly when they have this version's shape, and what
    /// decodes re-encodes byte for byte.
    #[test]
    fn lockout_table_decodes_only_its_own_format(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            (0usize..4, any::<u8>()).prop_flat_map(|(n, b)| prop::collection::vec(Just(b), 1 + 32 * n)),
            (0usize..4).prop_flat_map(|n| prop::collection::vec(any::<u8>(), 32 * n))
                .prop_map(|v| { let mut t = vec![1u8]; t.extend(v); t }),
        ],
    ) {
        let want = bytes.first() == Some(&1) && (bytes.len() - 1) % 32 == 0;
        match Table::decode(&bytes) {
            Some(t) => {
                prop_assert!(want);
                prop_assert_eq!(t.encode(), bytes.clone());
                prop_assert_eq!(t.len(), (bytes.len() - 1) / 32);
            }
            None => prop_assert!(!want),
        }
    }
}
