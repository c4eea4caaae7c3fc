//! Client address: the IP allowlist by downstream address and by X-Forwarded-For, under both
//! connection-manager settings, and the forgeries each must withstand.
//!
//! Test clients bind to 127.0.0.5 / 127.0.0.6, not 127.0.0.1: for a peer of exactly 127.0.0.1
//! or ::1, Envoy (use_remote_address: true) appends its own node address to X-Forwarded-For
//! instead of the peer.

mod harness;

use harness::*;
use serde_json::{json, Value};

const SECRET: &str = "ip-test-S3CRET-4c1d";

/// Expected outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// 200 and the upstream saw it.
    Admit,
    /// 403, upstream saw nothing.
    Forbid,
    /// 401, upstream saw nothing.
    Unauth,
}
use Want::*;

/// One request: sent from 127.0.0.`peer`, with these X-Forwarded-For header lines, with the
/// valid key unless `key` is false.
type Case<'a> = (&'a str, u8, &'a [&'a str], bool, Want);

fn policy(client_ip: Option<Value>, cidrs: &[&str]) -> Value {
    let mut p = json!({ "keys": [key("ip-key", SECRET)], "allow_cidrs": cidrs });
    if let Some(c) = client_ip {
        p["client_ip"] = c;
    }
    p
}

fn xff_rule(hops: u32) -> Option<Value> {
    Some(json!({ "from": "x-forwarded-for", "trusted_hops": hops }))
}

/// Run every case against `stack`: check the status and body, and that the upstream saw the
/// request exactly when it was admitted.
fn run(stack: &Stack, cases: &[Case]) {
    for &(case, peer, xffs, key, want) in cases {
        let before = stack.upstream.count();
        let id = rid(case);
        let mut req = stack
            .request("/messages")
            .from(lo(peer))
            .header("x-request-id", &id);
        for x in xffs {
            req = req.header("x-forwarded-for", x);
        }
        if key {
            req = req.header("x-bcsp-key", SECRET);
        }
        let reply = req.send();
        let ctx = format!("case {case:?}: from 127.0.0.{peer}, XFF {xffs:?}, key {key}");
        let status = match want {
            Admit => 200,
            Forbid => 403,
            Unauth => 401,
        };
        assert_eq!(reply.status, status, "{ctx}: {}", reply.text());
        if want == Admit {
            assert_eq!(stack.upstream.count(), before + 1, "{ctx}: upstream count");
            let seen = stack.upstream.last();
            assert_eq!(seen.headers_named("x-bcsp-key-id"), vec!["ip-key"], "{ctx}");
        } else {
            assert_denied(&reply, status, &id);
            let after = stack.upstream.count();
            assert_eq!(
                after, before,
                "{ctx}: a refused request reached the upstream"
            );
        }
    }
}

#[test]
fn downstream_with_remote_address_admits_allowed_peer_whatever_xff_says() {
    let stack = Stack::start(&EnvoyConfig::new(policy(None, &["127.0.0.5/32"])));

    #[rustfmt::skip]
    run(&stack, &[
        ("allowed peer",          5, &[],                         true,  Admit),
        ("allowed peer, odd XFF", 5, &["203.0.113.66"],           true,  Admit),
        ("other peer",            6, &[],                         true,  Forbid),
        ("forged XFF",            6, &["127.0.0.5"],              true,  Forbid),
        ("forged XFF twice",      6, &["127.0.0.5, 127.0.0.5"],   true,  Forbid),
        // IP before credentials: a refused address learns nothing about its key.
        ("other peer, no key",    6, &[],                         false, Forbid),
        ("allowed peer, no key",  5, &[],                         false, Unauth),
    ]);
}

/// With use_remote_address: false Envoy takes the downstream address from the last XFF entry
/// (port 0). The Wasm filter must treat that as unknown, and say once in the log why. The
/// dynamic module reads the connection's direct peer instead: the real peer is admitted,
/// forgeries still refused, and there is nothing to warn about.
#[test]
fn downstream_without_remote_address_refuses_forged_xff() {
    let cfg = EnvoyConfig::new(policy(None, &["127.0.0.5/32", "203.0.113.0/24"]))
        .use_remote_address(false);
    let direct_peer = cfg.artifact == Artifact::DynamicModule;
    let stack = Stack::start(&cfg);

    let real_peer = if direct_peer { Admit } else { Forbid };
    #[rustfmt::skip]
    run(&stack, &[
        ("forged allowed peer",  6, &["127.0.0.5"],            true, Forbid),
        ("forged allowed range", 6, &["203.0.113.7"],          true, Forbid),
        ("real peer, with XFF",  5, &["203.0.113.7"],          true, real_peer),
        ("forged, two entries",  6, &["1.1.1.1, 127.0.0.5"],   true, Forbid),
    ]);

    let log = if direct_peer {
        stack.envoy.wait_for_log("bcsp-guard: denied 403")
    } else {
        stack.envoy.wait_for_log("use_remote_address")
    };
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("use_remote_address"))
        .filter(|l| l.contains("[warning]") || l.contains("[warn]"))
        .collect();
    assert_eq!(
        warnings.len(),
        usize::from(!direct_peer),
        "want {} warning naming use_remote_address, got {warnings:#?}",
        if direct_peer { "no" } else { "exactly one" }
    );
}

#[test]
fn without_allow_cidrs_any_address_is_admitted() {
    let filter = json!({ "keys": [key("ip-key", SECRET)] });
    let stack = Stack::start(&EnvoyConfig::new(filter).use_remote_address(false));

    #[rustfmt::skip]
    run(&stack, &[
        ("any peer",         6, &[],               true,  Admit),
        ("port-0 address",   6, &["198.51.100.1"], true,  Admit),
        ("any peer, no key", 6, &[],               false, Unauth),
    ]);
}

/// trusted_hops 1 behind use_remote_address: true: the rightmost entry is the one Envoy
/// appended, i.e. the TCP peer; whatever the client wrote is to its left.
#[test]
fn xff_one_hop_with_remote_address_uses_the_peer_envoy_appended() {
    let stack = Stack::start(&EnvoyConfig::new(policy(xff_rule(1), &["127.0.0.5/32"])));

    #[rustfmt::skip]
    run(&stack, &[
        ("no XFF",             5, &[],              true, Admit),
        ("client XFF ignored", 5, &["203.0.113.9"], true, Admit),
        ("forged XFF",         6, &["127.0.0.5"],   true, Forbid),
        ("other peer",         6, &[],              true, Forbid),
    ]);
}

/// trusted_hops 1 behind use_remote_address: false: the rightmost entry the caller (i.e. the
/// trusted proxy in front) sent.
#[test]
fn xff_one_hop_without_remote_address_uses_the_rightmost_entry() {
    let cfg = EnvoyConfig::new(policy(xff_rule(1), &["203.0.113.0/24"])).use_remote_address(false);
    let stack = Stack::start(&cfg);

    #[rustfmt::skip]
    run(&stack, &[
        ("rightmost allowed", 6, &["198.51.100.1, 203.0.113.7"], true,  Admit),
        ("single entry",      6, &["203.0.113.7"],               true,  Admit),
        ("forged leftmost",   6, &["203.0.113.7, 198.51.100.1"], true,  Forbid),
        ("no XFF: unknown",   6, &[],                            true,  Forbid),
        ("allowed, no key",   6, &["203.0.113.7"],               false, Unauth),
    ]);
}

/// trusted_hops 2 behind use_remote_address: true: the entry just left of the peer Envoy
/// appended (what one proxy in front of Envoy wrote).
#[test]
fn xff_two_hops_with_remote_address_uses_the_entry_left_of_the_peer() {
    let stack = Stack::start(&EnvoyConfig::new(policy(xff_rule(2), &["203.0.113.0/24"])));

    #[rustfmt::skip]
    run(&stack, &[
        ("proxy wrote client", 5, &["203.0.113.7"],               true, Admit),
        ("forged leftmost",    5, &["198.51.100.1, 203.0.113.7"], true, Admit),
        ("forged rightmost",   5, &["203.0.113.7, 198.51.100.1"], true, Forbid),
        ("too few entries",    5, &[],                            true, Forbid),
        ("garbage entry",      5, &["not-an-ip"],                 true, Forbid),
    ]);
}

#[test]
fn xff_two_hops_without_remote_address_uses_second_from_right() {
    let cfg = EnvoyConfig::new(policy(xff_rule(2), &["203.0.113.0/24"])).use_remote_address(false);
    let stack = Stack::start(&cfg);

    #[rustfmt::skip]
    run(&stack, &[
        ("second from right",     6, &["203.0.113.7, 10.0.0.1"],               true, Admit),
        ("forged leftmost",       6, &["198.51.100.1, 203.0.113.7, 10.0.0.1"], true, Admit),
        ("leftmost allowed only", 6, &["203.0.113.7, 198.51.100.1, 10.0.0.1"], true, Forbid),
        ("too few entries",       6, &["203.0.113.7"],                         true, Forbid),
        ("no XFF",                6, &[],                                      true, Forbid),
        ("garbage entry",         6, &["garbage, 10.0.0.1"],                   true, Forbid),
        // Several X-Forwarded-For headers count as one list, in order.
        ("two headers",           6, &["203.0.113.7", "10.0.0.1"],             true, Admit),
        ("two headers, swapped",  6, &["10.0.0.1", "203.0.113.7"],             true, Forbid),
    ]);
}

/// Entries may carry ports or IPv6 brackets; IPv4-mapped IPv6 matches IPv4 ranges.
#[test]
fn xff_entries_with_ports_brackets_and_mapped_addresses() {
    let cfg = EnvoyConfig::new(policy(xff_rule(1), &["203.0.113.0/24", "2001:db8::/32"]))
        .use_remote_address(false);
    let stack = Stack::start(&cfg);

    #[rustfmt::skip]
    run(&stack, &[
        ("v4 with port",           6, &["203.0.113.7:8443"],    true, Admit),
        ("v6",                     6, &["2001:db8::1"],         true, Admit),
        ("v6 bracketed",           6, &["[2001:db8::1]"],       true, Admit),
        ("v6 bracketed with port", 6, &["[2001:db8::1]:443"],   true, Admit),
        ("v4-mapped v6",           6, &["::ffff:203.0.113.7"],  true, Admit),
        ("v4-mapped outside",      6, &["::ffff:198.51.100.7"], true, Forbid),
        ("v6 outside",             6, &["2001:db9::1"],         true, Forbid),
        ("not an address",         6, &["bcsp.example"],        true, Forbid),
        ("v4 outside with port",   6, &["198.51.100.7:8443"],   true, Forbid),
    ]);
}

fn v6_loopback_request(stack: &Stack, id: &str) -> Reply {
    stack
        .request("/bots")
        .from("::1".parse().unwrap())
        .header("x-request-id", id)
        .header("x-bcsp-key", SECRET)
        .send()
}

#[test]
fn ipv6_loopback_listener_admits_allowed_v6_client() {
    let cfg = EnvoyConfig::new(policy(None, &["::1/128"])).listen_ip("::1".parse().unwrap());
    let stack = Stack::start(&cfg);
    assert!(
        stack.envoy.addr().is_ipv6(),
        "listener {}",
        stack.envoy.addr()
    );

    let reply = v6_loopback_request(&stack, &rid("v6"));
    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    assert_eq!(
        stack.upstream.last().header("x-bcsp-key-id"),
        Some("ip-key")
    );
}

#[test]
fn ipv6_loopback_client_outside_allowlist_is_refused() {
    let cfg = EnvoyConfig::new(policy(None, &["127.0.0.1/32", "2001:db8::/32"]))
        .listen_ip("::1".parse().unwrap());
    let stack = Stack::start(&cfg);

    let id = rid("v6-deny");
    let reply = v6_loopback_request(&stack, &id);
    assert_denied(&reply, 403, &id);
    assert_eq!(stack.upstream.count(), 0);
}

/// On a dual-stack listener (`::` with ipv4_compat) an IPv4 client arrives as an IPv4-mapped
/// IPv6 peer; it must match IPv4 ranges. (Envoy 1.36/1.40 already unmap it; the mapped form
/// itself is covered through X-Forwarded-For above.)
#[test]
fn dual_stack_listener_matches_ipv4_clients_against_ipv4_cidrs() {
    let cfg = EnvoyConfig::new(policy(None, &["127.0.0.5/32"]))
        .listen_ip("::".parse().unwrap())
        .ipv4_compat(true);
    let stack = Stack::start(&cfg);
    let v4 = std::net::SocketAddr::new(lo(1), stack.envoy.addr().port());

    for (peer, status) in [(5, 200), (6, 403)] {
        let reply = request("GET", "/bots")
            .to(v4)
            .from(lo(peer))
            .header("x-bcsp-key", SECRET)
            .send();
        assert_eq!(
            reply.status,
            status,
            "from 127.0.0.{peer}: {}",
            reply.text()
        );
    }
    assert_eq!(stack.upstream.count(), 1);
}
