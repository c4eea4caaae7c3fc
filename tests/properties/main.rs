//! Property tests of every parser and decision in the filter's pure core, each
//! checked against a small reference written here without the filter's code: CIDR masks,
//! X-Forwarded-For counting, the credential rule, JWT `exp`, webhook signatures, route
//! matching, RFC 3339, base64 and the lockout table. No Envoy: `make unit` runs this suite
//! once (`cargo test -p bcsp-guard --test properties`); docs/FUZZING.md lists the properties.

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

mod cidr;
mod client_ip;
mod config;
mod decision;
mod jwt;
mod pipeline;
mod route_match;
mod time_lockout;
mod webhook;

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
        && a.keys.headers() == b.keys.headers()
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
