//! The native build (`libbcsp_guard_envoy.so`) loaded by a real Envoy 1.40 through
//! `envoy.filters.http.dynamic_modules`, with the same JSON configuration as the Wasm build:
//! keys, client IP, limits, token injection, config errors and counters. Every ABI callback the
//! module declares is exercised here (docs/DYNAMIC_MODULE.md maps each one to its test).
//! Skipped, with a message, on any Envoy other than 1.40 (the 1.36 ABI differs). Webhooks:
//! tests/dynamic_module_webhooks.rs.

mod harness;

use harness::*;
use metadata_emulator::{decode_claims, Emulator, Mode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "k3y-dynmod-suite-CURRENT-3c1e";
const AUD: &str = "https://bcsp-dyn-uc.a.run.app";
const AUD_OTHER: &str = "https://other-dyn-uc.a.run.app";

fn native(filter: Value) -> EnvoyConfig {
    EnvoyConfig::new(filter).artifact(Artifact::DynamicModule)
}

/// A second route target, so the routed cluster picks the token audience.
fn other_cluster() -> &'static str {
    "  - name: other\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: other\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: {UPSTREAM_PORT}}}}\n"
}

fn prom_value(prom: &str, name: &str) -> Option<u64> {
    prom_counter(prom, &prom_name(name))
}

#[test]
fn valid_key_is_admitted_stripped_and_stamped_and_counted() {
    if !dynmod_supported() {
        return;
    }
    let stack = Stack::start(&native(json!({"keys": [key("genesys-q4", SECRET)]})));
    let id = rid("ok");
    let r = stack
        .request("/bots")
        .header("x-bcsp-key", SECRET)
        .header("x-request-id", &id)
        .header("x-bcsp-key-id", "forged-by-caller")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.upstream.last();
    assert!(
        seen.headers_named("x-bcsp-key").is_empty(),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.headers_named("x-bcsp-key-id"), vec!["genesys-q4"]);
    for (name, value) in &seen.headers {
        assert!(!value.contains(SECRET), "upstream saw the secret in {name}");
    }
    // The core's startup summary went through the log callback.
    let log = stack.envoy.wait_for_log("bcsp-guard");
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched"),
        "{}",
        log
    );
    stack.envoy.assert_log_free_of(&[SECRET], &[]);

    let prom = stack.envoy.stats_prometheus();
    assert_eq!(prom_value(&prom, "bcsp_guard.allowed"), Some(1), "{prom}");
    assert_eq!(
        prom_value(&prom, "bcsp_guard.key.genesys-q4.accepted"),
        Some(1)
    );
}

#[test]
fn missing_wrong_repeated_and_expired_keys_get_the_same_401() {
    if !dynmod_supported() {
        return;
    }
    let t = now();
    let expired = "k3y-dynmod-EXPIRED-9f0b";
    let filter = json!({"keys": [
        key("current", SECRET),
        with(key("old", expired), json!({"not_after": rfc3339(t - 60)})),
    ]});
    let stack = Stack::start(&native(filter));
    let cases: [(&str, Vec<&str>); 4] = [
        ("missing", vec![]),
        ("wrong", vec!["k3y-not-configured"]),
        // Two values of the credential header, read separately from Envoy's map: refused.
        ("repeated", vec![SECRET, SECRET]),
        ("expired", vec![expired]),
    ];
    for (tag, values) in cases {
        let id = rid(tag);
        let mut req = stack.request("/bots").header("x-request-id", &id);
        for v in values {
            req = req.header("x-bcsp-key", v);
        }
        let r = req.send();
        assert_unauthenticated(&r, &id, "x-bcsp-key", &[SECRET, expired]);
    }
    assert_eq!(
        stack.upstream.count(),
        0,
        "a refused request reached the upstream"
    );
    let log = stack.envoy.wait_for_log("bcsp-guard: denied 401");
    assert!(log.contains("bcsp-guard: denied 401"), "{log}");
    stack.envoy.assert_log_free_of(&[SECRET, expired], &[]);
    let prom = stack.envoy.stats_prometheus();
    assert_eq!(
        prom_value(&prom, "bcsp_guard.denied.missing_key"),
        Some(1),
        "{prom}"
    );
    assert_eq!(prom_value(&prom, "bcsp_guard.denied.invalid_key"), Some(2));
    assert_eq!(prom_value(&prom, "bcsp_guard.denied.expired_key"), Some(1));
    // The key-expiry gauge (defined and set at config time) is there too.
    assert_eq!(prom_value(&prom, "bcsp_guard.key.days_left_min"), Some(0));
}

#[test]
fn allowlist_uses_the_peer_address_and_spoofed_forwarded_for_does_not_help() {
    if !dynmod_supported() {
        return;
    }
    let filter = json!({
        "keys": [key("k", SECRET)],
        "client_ip": {"from": "downstream"},
        "allow_cidrs": ["127.0.0.2/32"],
    });
    let stack = Stack::start(&native(filter));
    let ok = stack
        .request("/bots")
        .from(lo(2))
        .header("x-bcsp-key", SECRET)
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text());

    let id = rid("spoof");
    let spoofed = stack
        .request("/bots")
        .from(lo(3))
        .header("x-bcsp-key", SECRET)
        .header("x-forwarded-for", "127.0.0.2")
        .header("x-request-id", &id)
        .send();
    assert_denied(&spoofed, 403, &id);
    assert_eq!(stack.upstream.count(), 1);
    assert_eq!(
        prom_value(&stack.envoy.stats_prometheus(), "bcsp_guard.denied.ip"),
        Some(1)
    );
    drop(stack);

    // Without use_remote_address Envoy's `source.address` would come from X-Forwarded-For; the
    // module reads the connection's direct peer instead, so the rule still holds: the real peer
    // is admitted whatever it forwards, a forged entry from another peer changes nothing.
    let filter = json!({
        "keys": [key("k", SECRET)],
        "client_ip": {"from": "downstream"},
        "allow_cidrs": ["127.0.0.2/32"],
    });
    let stack = Stack::start(&native(filter).use_remote_address(false));
    let ok = stack
        .request("/bots")
        .from(lo(2))
        .header("x-bcsp-key", SECRET)
        .header("x-forwarded-for", "198.51.100.9")
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let id = rid("spoof-no-ura");
    let spoofed = stack
        .request("/bots")
        .from(lo(3))
        .header("x-bcsp-key", SECRET)
        .header("x-forwarded-for", "127.0.0.2")
        .header("x-request-id", &id)
        .send();
    assert_denied(&spoofed, 403, &id);
    assert_eq!(stack.upstream.count(), 1);
    // The refusal names the peer the module saw: the TCP peer, not the forged entry.
    let log = stack.envoy.wait_for_log("bcsp-guard: denied 403");
    let line = log
        .lines()
        .find(|l| l.contains("bcsp-guard: denied 403"))
        .unwrap_or_default();
    assert!(line.contains("127.0.0.3"), "{line}");
    assert!(!log.contains("came from X-Forwarded-For"), "{log}");
    assert!(log.contains("is the connection's direct TCP peer"), "{log}");
}

#[test]
fn forwarded_for_rule_counts_hops_from_the_right() {
    if !dynmod_supported() {
        return;
    }
    // One trusted proxy in front: the client is the entry that proxy appended.
    let filter = json!({
        "keys": [key("k", SECRET)],
        "client_ip": {"from": "x-forwarded-for", "trusted_hops": 1},
        "allow_cidrs": ["203.0.113.7/32"],
    });
    let stack = Stack::start(&native(filter).use_remote_address(false));
    let ok = stack
        .request("/bots")
        .header("x-bcsp-key", SECRET)
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let id = rid("xff");
    let spoofed = stack
        .request("/bots")
        .header("x-bcsp-key", SECRET)
        .header("x-forwarded-for", "203.0.113.7, 198.51.100.1")
        .header("x-request-id", &id)
        .send();
    assert_denied(&spoofed, 403, &id);
}

#[test]
fn routes_and_body_limits_answer_like_the_wasm_build() {
    if !dynmod_supported() {
        return;
    }
    let filter = json!({
        "keys": [key("k", SECRET)],
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
        "max_body_bytes": 64,
    });
    // The JSON as a string, and written as a Struct (Envoy hands over the JSON it prints).
    for cfg in [
        native(filter.clone()),
        native(filter.clone()).struct_config(),
    ] {
        routes_and_body_limits(&Stack::start(&cfg));
    }
}

fn routes_and_body_limits(stack: &Stack) {
    let nf = stack
        .request("/botconnector/admin")
        .header("x-bcsp-key", SECRET)
        .send();
    assert_eq!(nf.status, 404, "{}", nf.text());
    assert_eq!(nf.json()["error"], "not_found");

    let small = r#"{"botId":"b"}"#;
    let ok = request("POST", "/botconnector/messages")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", SECRET)
        .body("application/json", small)
        .send();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(stack.upstream.last().body, small.as_bytes());

    // Declared too large: refused from the headers.
    let big = format!(r#"{{"botId":"{}"}}"#, "b".repeat(100));
    let r = request("POST", "/botconnector/messages")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", SECRET)
        .body("application/json", big.clone())
        .send();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");

    // Streamed without a length: counted chunk by chunk from the body size Envoy reports.
    let parts = vec![big.as_bytes()[..40].to_vec(), big.as_bytes()[40..].to_vec()];
    let r = request("POST", "/botconnector/messages")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", SECRET)
        .chunked("application/json", parts)
        .send();
    assert_eq!(r.status, 413, "{}", r.text());
    let prom = stack.envoy.stats_prometheus();
    assert_eq!(
        prom_value(&prom, "bcsp_guard.denied.body_too_large"),
        Some(2),
        "{prom}"
    );
    assert_eq!(prom_value(&prom, "bcsp_guard.denied.route"), Some(1));
}

#[test]
fn lockout_is_shared_by_every_worker() {
    if !dynmod_supported() {
        return;
    }
    let filter = json!({
        "keys": [key("k", SECRET)],
        "client_ip": {"from": "downstream"},
        "lockout": {"max_failures": 3, "window_s": 60, "cooldown_s": 60},
    });
    let stack = Stack::start(&native(filter).concurrency(2).exact_balance(true));
    // Separate connections land on both workers; their failures add up.
    for _ in 0..3 {
        let r = stack
            .request("/bots")
            .from(lo(9))
            .header("x-bcsp-key", "k3y-guess")
            .send();
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = stack
        .request("/bots")
        .from(lo(9))
        .header("x-bcsp-key", SECRET)
        .send();
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let other = stack
        .request("/bots")
        .from(lo(10))
        .header("x-bcsp-key", SECRET)
        .send();
    assert_eq!(other.status, 200, "another client is not locked out");
    let prom = stack.envoy.stats_prometheus();
    assert_eq!(
        prom_value(&prom, "bcsp_guard.lockout.started"),
        Some(1),
        "{prom}"
    );
    assert_eq!(prom_value(&prom, "bcsp_guard.denied.locked_out"), Some(1));
}

fn token_filter(extra: Value) -> Value {
    let upstream = with(json!({"cluster": "gcp_metadata", "audience": AUD}), extra);
    json!({"keys": [key("genesys", SECRET)], "upstream_token": upstream})
}

fn wait_for_status(stack: &Stack, path: &str, status: u16, within: Duration) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let r = stack.request(path).header("x-bcsp-key", SECRET).send();
        if r.status == status || Instant::now() > deadline {
            assert_eq!(
                r.status,
                status,
                "not {status} within {within:?}: {}",
                r.text()
            );
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn token_is_injected_once_per_refresh_for_all_workers_and_chosen_by_routed_cluster() {
    if !dynmod_supported() {
        return;
    }
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let filter = token_filter(json!({"audience_by_cluster": {"other": AUD_OTHER}}));
    let cfg = native(filter)
        .concurrency(4)
        .route("/other", "other")
        .extra_clusters(other_cluster())
        .metadata_hop(emu.addr());
    let stack = Stack::start(&cfg);
    wait_for_status(&stack, "/bots", 200, Duration::from_secs(10));
    let r = stack
        .request("/bots")
        .header("x-bcsp-key", SECRET)
        .header("authorization", "Bearer forged-by-caller")
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.upstream.last();
    let auth = seen.headers_named("authorization");
    assert_eq!(auth.len(), 1, "{:?}", seen.headers);
    let jwt = auth[0].strip_prefix("Bearer ").expect("Bearer scheme");
    assert_eq!(decode_claims(jwt).expect("emulator JWT").aud, AUD);

    let r = wait_for_status(&stack, "/other/bots", 200, Duration::from_secs(10));
    drop(r);
    let seen = stack.upstream.last();
    let jwt = seen.headers_named("authorization")[0]
        .strip_prefix("Bearer ")
        .expect("Bearer scheme")
        .to_owned();
    assert_eq!(decode_claims(&jwt).expect("emulator JWT").aud, AUD_OTHER);

    // Four workers, a 100 ms timer: still one fetch per audience.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(emu.fetch_count(AUD), 1);
    assert_eq!(emu.fetch_count(AUD_OTHER), 1);
    assert_eq!(
        emu.rejected_count(),
        0,
        "the metadata server refused a fetch"
    );
    let prom = stack.envoy.stats_prometheus();
    assert_eq!(
        prom_value(&prom, "bcsp_guard.token.fetch_ok"),
        Some(2),
        "{prom}"
    );
    let left = prom_value(&prom, "bcsp_guard.token.seconds_left").unwrap_or(0);
    assert!(left > 3000, "token.seconds_left gauge: {left}");
    let log = stack.envoy.wait_for_log("identity token refreshed");
    assert!(
        log.contains("identity token refreshed for audience"),
        "{log}"
    );
    stack.envoy.assert_log_free_of(&[SECRET, &jwt], &[]);
}

#[test]
fn graceful_shutdown_releases_the_config_and_its_timer() {
    if !dynmod_supported() {
        return;
    }
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let cfg = native(token_filter(json!({})))
        .concurrency(2)
        .metadata_hop(emu.addr());
    let mut stack = Stack::start(&cfg);
    wait_for_status(&stack, "/bots", 200, Duration::from_secs(10));
    assert_eq!(stack.envoy.quit(), Some(0), "{}", stack.envoy.log());
    let log = stack.envoy.log();
    assert!(log.contains("bcsp-guard: configuration released"), "{log}");
}

#[test]
fn no_token_means_503_and_nothing_upstream() {
    if !dynmod_supported() {
        return;
    }
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    emu.set_mode(Mode::Down);
    let cfg = native(token_filter(json!({}))).metadata_hop(emu.addr());
    let stack = Stack::start(&cfg);
    let id = rid("down");
    let r = stack
        .request("/bots")
        .header("x-bcsp-key", SECRET)
        .header("x-request-id", &id)
        .send();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_token_unavailable");
    assert_eq!(r.json()["request_id"], id.as_str());
    assert!(r
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|s| s >= 1));
    assert_eq!(stack.upstream.count(), 0);
    let log = stack
        .envoy
        .wait_for_log("identity token fetch for audience");
    assert!(log.contains("metadata server answered 503"), "{log}");

    // The metadata server comes back: the backed-off fetcher recovers on its own.
    emu.set_mode(Mode::Normal);
    wait_for_status(&stack, "/bots", 200, Duration::from_secs(10));
    let prom = stack.envoy.stats_prometheus();
    assert!(
        prom_value(&prom, "bcsp_guard.token.fetch_failed").unwrap_or(0) >= 1,
        "{prom}"
    );
    assert!(prom_value(&prom, "bcsp_guard.denied.no_token").unwrap_or(0) >= 1);
    // A metadata cluster Envoy does not know fails the fetch too, never opens the gate.
    let cfg = native(token_filter(json!({"cluster": "no_such_cluster"})));
    let stack = Stack::start(&cfg);
    let r = stack.request("/bots").header("x-bcsp-key", SECRET).send();
    assert_eq!(r.status, 503, "{}", r.text());
    let log = stack.envoy.wait_for_log("could not dispatch");
    assert!(log.contains("cluster not found"), "{log}");
}

#[test]
fn request_before_the_first_token_waits_for_it_or_gets_503_at_max_wait() {
    if !dynmod_supported() {
        return;
    }
    // A slow metadata server: the first request arrives before any token and is held,
    // body and all, until the token comes.
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    emu.set_delay(Duration::from_millis(800));
    let cfg = native(token_filter(json!({"max_wait_ms": 5000}))).metadata_hop(emu.addr());
    let stack = Stack::start(&cfg);
    let body = r#"{"botId":"b1","inputMessage":{"type":"Text","text":"hi"}}"#;
    let r = request("POST", "/messages")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", SECRET)
        .body("application/json", body)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.body, body.as_bytes());
    assert_eq!(
        seen.headers_named("authorization").len(),
        1,
        "{:?}",
        seen.headers
    );
    let prom = stack.envoy.stats_prometheus();
    assert!(
        prom_value(&prom, "bcsp_guard.token.waited").unwrap_or(0) >= 1,
        "{prom}"
    );
    drop(stack);

    // Slower than max_wait_ms: 503 once the wait runs out, nothing upstream.
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    emu.set_delay(Duration::from_millis(1500));
    let cfg = native(token_filter(json!({"max_wait_ms": 300}))).metadata_hop(emu.addr());
    let stack = Stack::start(&cfg);
    let started = Instant::now();
    let id = rid("wait");
    let r = request("POST", "/messages")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", SECRET)
        .header("x-request-id", &id)
        .body("application/json", body)
        .send();
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["request_id"], id.as_str());
    assert!(
        waited >= Duration::from_millis(250),
        "refused after {waited:?}"
    );
    assert!(waited < Duration::from_millis(1400), "held for {waited:?}");
    assert_eq!(stack.upstream.count(), 0);
}

/// The error line a build logs for `filter`, from an Envoy that refused to start.
fn refusal(cfg: &EnvoyConfig) -> String {
    let (code, log) = Envoy::expect_config_failure(cfg);
    assert_ne!(code, 0, "Envoy started with a bad config:\n{log}");
    log.lines()
        .find(|l| l.contains("bcsp-guard: invalid configuration:"))
        .map(|l| {
            let at = l.find("bcsp-guard: invalid").unwrap_or(0);
            l[at..].to_owned()
        })
        .unwrap_or_else(|| panic!("no configuration error line:\n{log}"))
}

#[test]
fn bad_config_is_refused_naming_the_field_like_the_wasm_build() {
    if !dynmod_supported() {
        return;
    }
    let bad = json!({"keys": [{"id": "k", "sha256": "not-hex"}]});
    let native_line = refusal(&native(bad.clone()));
    assert!(native_line.contains("keys[0].sha256"), "{native_line}");
    let wasm_line = refusal(&EnvoyConfig::new(bad));
    assert_eq!(
        native_line, wasm_line,
        "the two builds word the error differently"
    );

    let line = refusal(&native(Value::String("{not json".into())));
    assert!(line.contains("invalid configuration"), "{line}");

    // Webhook secrets come from Envoy's environment; a missing one is refused by name.
    let hooks = json!({
        "keys": [key("k", SECRET)],
        "webhooks": [{"path_prefix": "/hooks", "secret_env": "BCSP_DYNMOD_UNSET_SECRET"}],
    });
    let native_line = refusal(&native(hooks.clone()));
    assert!(
        native_line.contains("webhooks[0].secret_env"),
        "{native_line}"
    );
    assert_eq!(native_line, refusal(&EnvoyConfig::new(hooks)));
}

#[test]
fn a_bad_struct_config_is_refused_with_the_json_strings_line() {
    if !dynmod_supported() {
        return;
    }
    let bad = json!({"keys": [{"id": "k", "sha256": "not-hex"}]});
    let line = refusal(&native(bad.clone()).struct_config());
    assert!(line.contains("keys[0].sha256"), "{line}");
    assert_eq!(line, refusal(&native(bad)));
}
