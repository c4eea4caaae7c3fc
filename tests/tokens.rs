//! Upstream identity tokens in a real Envoy against the metadata emulator: injection, one
//! fetch for all workers, refresh ahead of expiry, and every fault failing closed.

mod harness;

use harness::*;
use metadata_emulator::{decode_claims, Emulator, Mode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "tok3n-suite-SECRET-41d2";
const AUD: &str = "https://bcsp-abc-uc.a.run.app";

fn filter(token: Value) -> Value {
    let mut upstream = json!({"cluster": "gcp_metadata", "audience": AUD});
    if let (Some(base), Some(extra)) = (upstream.as_object_mut(), token.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    json!({"keys": [{"id": "genesys", "sha256": sha256_hex(SECRET)}], "upstream_token": upstream})
}

struct TokenStack {
    emu: Emulator,
    stack: Stack,
}

fn start(
    lifetime_s: u64,
    token: Value,
    concurrency: u32,
    setup: impl FnOnce(&Emulator),
) -> TokenStack {
    let emu = Emulator::start("127.0.0.1:0", lifetime_s).expect("start metadata emulator");
    setup(&emu);
    let cfg = EnvoyConfig::new(filter(token))
        .concurrency(concurrency)
        .extra_clusters(&metadata_cluster(emu.addr()));
    let stack = Stack::start(&cfg);
    TokenStack { emu, stack }
}

impl TokenStack {
    fn call(&self) -> Reply {
        self.stack
            .request("/botconnector/bots")
            .header("x-bcsp-key", SECRET)
            .send()
    }

    /// Polls (bounded) until a call is admitted with 200.
    fn wait_for_200(&self, within: Duration) -> Reply {
        let deadline = Instant::now() + within;
        loop {
            let r = self.call();
            if r.status == 200 || Instant::now() > deadline {
                assert_eq!(r.status, 200, "no recovery within {within:?}: {}", r.text());
                return r;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every request the upstream ever saw carried one valid, unexpired token for AUD.
    fn assert_upstream_only_saw_valid_tokens(&self, header: &str) {
        for seen in self.stack.upstream.requests() {
            let values = seen.headers_named(header);
            assert_eq!(
                values.len(),
                1,
                "upstream request without exactly one {header}: {:?}",
                seen.headers
            );
            let jwt = values[0].strip_prefix("Bearer ").expect("Bearer scheme");
            let claims = decode_claims(jwt).expect("upstream token is an emulator JWT");
            assert_eq!(claims.aud, AUD);
            assert!(claims.exp > claims.iat, "token already expired when issued");
        }
    }
}

fn is_no_token_503(r: &Reply) -> bool {
    r.status == 503
        && r.json()["error"] == "upstream_token_unavailable"
        && r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
}

#[test]
fn admitted_request_carries_a_fresh_token_and_no_caller_identity() {
    let t = start(3600, json!({}), 1, |_| {});
    let before = now();
    let r = t
        .stack
        .request("/botconnector/messages")
        .header("x-bcsp-key", SECRET)
        .header("authorization", "Bearer forged-by-caller")
        .header("x-serverless-authorization", "Bearer forged-too")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = t.stack.upstream.last();
    assert!(seen.headers_named("x-serverless-authorization").is_empty());
    let auth = seen.headers_named("authorization");
    assert_eq!(auth.len(), 1, "{:?}", seen.headers);
    let jwt = auth[0].strip_prefix("Bearer ").unwrap();
    let claims = decode_claims(jwt).unwrap();
    assert_eq!(claims.aud, AUD);
    assert!(claims.exp >= before + 3500, "exp {} too early", claims.exp);
    // The metadata request had the flavor header and no X-Forwarded-For.
    assert_eq!(t.emu.rejected_count(), 0);
    assert_eq!(t.emu.fetch_count(AUD), 1);
    assert_eq!(t.stack.envoy.counter("bcsp_guard.token.fetch_ok"), 1);
    // The token's signature segment never shows up in Envoy's log.
    let sig = jwt.rsplit('.').next().unwrap();
    t.stack
        .envoy
        .assert_log_free_of(&[SECRET], &[jwt, sig, "forged-by-caller"]);
}

#[test]
fn x_serverless_authorization_mode_leaves_authorization_to_the_app() {
    let t = start(
        3600,
        json!({"header": "x-serverless-authorization"}),
        1,
        |_| {},
    );
    let r = t
        .stack
        .request("/x")
        .header("x-bcsp-key", SECRET)
        .header("x-serverless-authorization", "Bearer forged")
        .header("authorization", "Basic app-level")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = t.stack.upstream.last();
    assert_eq!(seen.headers_named("authorization"), vec!["Basic app-level"]);
    t.assert_upstream_only_saw_valid_tokens("x-serverless-authorization");
}

#[test]
fn four_workers_and_a_cold_burst_make_exactly_one_fetch() {
    // A slow metadata server keeps the burst waiting on the one fetch in flight.
    let t = start(3600, json!({"max_wait_ms": 5000}), 4, |emu| {
        emu.set_delay(Duration::from_millis(700))
    });
    let addr = t.stack.envoy.addr();
    let replies: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(move || {
                    request("GET", "/bots")
                        .to(addr)
                        .header("x-bcsp-key", SECRET)
                        .send()
                        .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(replies.iter().all(|s| *s == 200), "{replies:?}");
    assert_eq!(t.emu.fetch_count(AUD), 1, "fetches across 4 workers");
    assert_eq!(t.stack.upstream.count(), 16);
    t.assert_upstream_only_saw_valid_tokens("authorization");
    assert!(t.stack.envoy.counter("bcsp_guard.token.waited") >= 1);
}

#[test]
fn tokens_are_refreshed_ahead_of_expiry_under_steady_traffic() {
    let t = start(
        10,
        json!({"refresh_margin_s": 5, "expiry_skew_s": 1}),
        2,
        |_| {},
    );
    let started = Instant::now();
    let mut jtis = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_secs(30) {
        let sent_ms = now_ms();
        let r = t.call();
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = t.stack.upstream.last();
        let jwt = seen
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let claims = decode_claims(jwt).unwrap();
        // Forwarded at or after sent_ms, and only while now + skew < exp.
        assert!(
            claims.exp * 1000 > sent_ms + 1000,
            "token with exp {} forwarded at {sent_ms}",
            claims.exp
        );
        jtis.insert(claims.jti);
        std::thread::sleep(Duration::from_millis(250));
    }
    // Refresh every ~5 s (the later of exp - margin and mid-life): 30 s → 6 or 7 fetches.
    let fetches = t.emu.fetch_count(AUD);
    eprintln!(
        "fault-matrix | steady 30 s, 10 s tokens, 2 workers | fetches {fetches} | tokens used {}",
        jtis.len()
    );
    assert!((6..=8).contains(&fetches), "{fetches} fetches in 30 s");
    assert!(
        jtis.len() as u64 >= fetches - 1,
        "{} tokens used of {fetches}",
        jtis.len()
    );
}

#[test]
fn metadata_down_at_start_gives_503_then_recovers() {
    let t = start(3600, json!({"max_wait_ms": 800}), 1, |emu| {
        emu.set_mode(Mode::Down)
    });
    let begun = Instant::now();
    let r = t.call();
    assert!(is_no_token_503(&r), "{} {}", r.status, r.text());
    assert!(begun.elapsed() < Duration::from_secs(3));
    assert_eq!(t.stack.upstream.count(), 0, "forwarded without a token");
    assert!(t.stack.envoy.counter("bcsp_guard.denied.no_token") >= 1);
    t.emu.set_mode(Mode::Normal);
    t.wait_for_200(Duration::from_secs(20));
    t.assert_upstream_only_saw_valid_tokens("authorization");
    assert!(t.stack.envoy.counter("bcsp_guard.token.fetch_failed") >= 1);
    report("metadata down at start", &t);
}

#[test]
fn cached_token_serves_through_an_outage_until_the_skew_then_503_then_recovery() {
    // 6 s tokens, refresh from 3 s, never sent in the last 2 s.
    let t = start(
        6,
        json!({"refresh_margin_s": 3, "expiry_skew_s": 2, "max_wait_ms": 300}),
        1,
        |_| {},
    );
    let first = t.wait_for_200(Duration::from_secs(5));
    drop(first);
    let exp = decode_claims(
        t.stack
            .upstream
            .last()
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap(),
    )
    .unwrap()
    .exp;
    t.emu.set_mode(Mode::Down);
    let mut saw_503 = false;
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        let sent_ms = now_ms();
        let r = t.call();
        if r.status == 200 {
            assert!(!saw_503 || t.emu.fetch_count(AUD) > 0);
            assert!(
                sent_ms < (exp - 2) * 1000 + 1500 || saw_503,
                "served past the skew window"
            );
        } else {
            assert!(is_no_token_503(&r), "{} {}", r.status, r.text());
            assert!(
                now_ms() + 200 >= (exp - 2) * 1000,
                "503 while the cached token was still good"
            );
            saw_503 = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(saw_503, "never refused after the token aged out");
    t.emu.set_mode(Mode::Normal);
    t.wait_for_200(Duration::from_secs(40));
    t.assert_upstream_only_saw_valid_tokens("authorization");
    report("down after the first token", &t);
}

#[test]
fn slow_metadata_beyond_the_fetch_timeout_fails_closed_then_recovers() {
    let t = start(
        3600,
        json!({"fetch_timeout_ms": 300, "max_wait_ms": 1000}),
        1,
        |emu| emu.set_delay(Duration::from_millis(2000)),
    );
    let r = t.call();
    assert!(is_no_token_503(&r), "{} {}", r.status, r.text());
    assert_eq!(t.stack.upstream.count(), 0);
    t.emu.set_delay(Duration::ZERO);
    t.wait_for_200(Duration::from_secs(20));
    t.assert_upstream_only_saw_valid_tokens("authorization");
    report("slower than fetch_timeout_ms", &t);
}

#[test]
fn server_errors_garbage_and_expired_tokens_are_failed_fetches() {
    for (name, setup) in [
        (
            "500s",
            Box::new(|e: &Emulator| e.fail_next(2, 500)) as Box<dyn Fn(&Emulator)>,
        ),
        (
            "garbage",
            Box::new(|e: &Emulator| e.set_mode(Mode::Garbage)),
        ),
        (
            "expired",
            Box::new(|e: &Emulator| e.set_mode(Mode::Expired)),
        ),
    ] {
        let t = start(3600, json!({"max_wait_ms": 500}), 1, |e| setup(e));
        let r = t.call();
        assert!(is_no_token_503(&r), "{name}: {} {}", r.status, r.text());
        assert_eq!(
            t.stack.upstream.count(),
            0,
            "{name}: forwarded without a valid token"
        );
        t.emu.set_mode(Mode::Normal);
        t.wait_for_200(Duration::from_secs(20));
        assert!(t.emu.fetch_count(AUD) >= 2, "{name}");
        t.assert_upstream_only_saw_valid_tokens("authorization");
        report(name, &t);
    }
}

/// One row of the fault matrix, for the record (`--nocapture` shows it).
fn report(case: &str, t: &TokenStack) {
    let e = &t.stack.envoy;
    eprintln!(
        "fault-matrix | {case} | fetches {} | fetch_ok {} | fetch_failed {} | 503s {} | forwarded {}",
        t.emu.fetch_count(AUD),
        e.counter("bcsp_guard.token.fetch_ok"),
        e.counter("bcsp_guard.token.fetch_failed"),
        e.counter("bcsp_guard.denied.no_token"),
        t.stack.upstream.count(),
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn audience_follows_the_routed_cluster() {
    const EU: &str = "https://bcsp-eu-ew.a.run.app";
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("start metadata emulator");
    let eu_cluster = "  - name: bcsp_eu\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: bcsp_eu\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {UPSTREAM_PORT}}}}\n";
    let cfg = EnvoyConfig::new(filter(json!({"audience_by_cluster": {"bcsp_eu": EU}})))
        .route("/eu/", "bcsp_eu")
        .extra_clusters(&format!("{}{eu_cluster}", metadata_cluster(emu.addr())));
    let stack = Stack::start(&cfg);
    let aud_seen = |path: &str| {
        let r = stack.request(path).header("x-bcsp-key", SECRET).send();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let seen = stack.upstream.last();
        let jwt = seen
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        decode_claims(jwt).unwrap().aud
    };
    assert_eq!(aud_seen("/eu/botconnector/bots"), EU);
    assert_eq!(aud_seen("/botconnector/bots"), AUD);
    assert_eq!(emu.fetch_count(EU), 1);
    assert_eq!(emu.fetch_count(AUD), 1);
}
