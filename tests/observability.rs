//! What operators see: counters in Envoy's admin `/stats/prometheus` and `/stats`, the startup
//! summary, the per-denial log line, and logs that never hold a secret, a hash or a header value.

mod harness;

use harness::*;
use serde_json::{json, Value};

const CURRENT: &str = "obs-CURRENT-2f8e61d0c9";
const OLD: &str = "obs-OLD-a71b44e5f2";
const RETIRED: &str = "obs-RETIRED-093cc1d7b8";
const WRONG: &str = "obs-WRONG-5d5d5d5d5d";
const BEARER: &str = "obs-BEARER-e3e3a9a9f1";

/// Three ids that exercise Prometheus name sanitising: `-`, `.`, `_`.
fn rotation_policy(cidrs: &[&str]) -> Value {
    let t = now();
    json!({
        "keys": [
            key("genesys-2026q4", CURRENT),
            with(key("genesys.2026q3", OLD), json!({ "not_after": rfc3339(t + 86_400) })),
            with(key("retired_2026q2", RETIRED), json!({
                "not_before": rfc3339(t - 86_400 * 200), "not_after": rfc3339(t - 86_400) })),
            with(key("bearer", BEARER), json!({ "header": "authorization", "scheme": "Bearer" })),
        ],
        "allow_cidrs": cidrs,
    })
}

fn send(stack: &Stack, from: u8, headers: &[(&str, &str)]) -> Reply {
    let mut req = stack.request("/messages").from(lo(from));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send()
}

#[test]
fn counters_count_every_outcome_and_each_key() {
    let cfg = EnvoyConfig::new(rotation_policy(&["127.0.0.5/32"])).concurrency(2);
    let stack = Stack::start(&cfg);

    let admitted = [
        send(&stack, 5, &[("x-bcsp-key", CURRENT)]),
        send(&stack, 5, &[("x-bcsp-key", CURRENT)]),
        send(&stack, 5, &[("x-bcsp-key", OLD)]),
    ];
    for r in &admitted {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(send(&stack, 5, &[]).status, 401);
    assert_eq!(send(&stack, 5, &[("x-bcsp-key", WRONG)]).status, 401);
    assert_eq!(send(&stack, 5, &[("x-bcsp-key", RETIRED)]).status, 401);
    assert_eq!(send(&stack, 5, &[("x-bcsp-key", RETIRED)]).status, 401);
    assert_eq!(send(&stack, 6, &[("x-bcsp-key", CURRENT)]).status, 403);

    let e = &stack.envoy;
    let expect = [
        ("bcsp_guard.allowed", 3),
        ("bcsp_guard.denied.ip", 1),
        ("bcsp_guard.denied.missing_key", 1),
        ("bcsp_guard.denied.invalid_key", 1),
        ("bcsp_guard.denied.expired_key", 2),
        ("bcsp_guard.key.genesys-2026q4.accepted", 2),
        ("bcsp_guard.key.genesys.2026q3.accepted", 1),
        ("bcsp_guard.key.retired_2026q2.accepted", 0),
        ("bcsp_guard.key.bearer.accepted", 0),
    ];
    let got: Vec<(&str, u64)> = expect.iter().map(|(n, _)| (*n, e.counter(n))).collect();
    assert_eq!(got, expect.to_vec(), "counters in /stats/prometheus");

    // The same counters in /stats, under Envoy's prefix for the build: `wasmcustom.`, or
    // `dynamicmodulescustom.` for the dynamic module (Prometheus names are the same for both).
    let prefix = match cfg.artifact {
        Artifact::Wasm => "wasmcustom",
        Artifact::DynamicModule => "dynamicmodulescustom",
    };
    let stats = e.admin_get("/stats?filter=bcsp_guard");
    for (name, value) in expect {
        let line = format!("{prefix}.{name}: {value}");
        assert!(
            stats.lines().any(|l| l == line),
            "/stats lacks {line:?}:\n{stats}"
        );
    }
    e.assert_log_free_of(&[CURRENT, OLD, RETIRED, BEARER], &[WRONG]);
}

/// Counters exist (at zero) before the first request, so dashboards and alerts can use them.
#[test]
fn counters_exist_at_zero_before_traffic() {
    let stack = Stack::start(&EnvoyConfig::new(rotation_policy(&[])));
    for name in [
        "bcsp_guard.allowed",
        "bcsp_guard.denied.ip",
        "bcsp_guard.denied.missing_key",
        "bcsp_guard.denied.invalid_key",
        "bcsp_guard.denied.expired_key",
        "bcsp_guard.key.genesys-2026q4.accepted",
        "bcsp_guard.key.retired_2026q2.accepted",
    ] {
        assert_eq!(stack.envoy.counter(name), 0, "{name}");
    }
}

/// Exactly one policy summary at start (even with two workers), naming every key id.
#[test]
fn startup_log_has_one_summary_line_with_key_ids() {
    let stack = Stack::start(&EnvoyConfig::new(rotation_policy(&["127.0.0.5/32"])).concurrency(2));
    // A request guarantees every worker has configured its VM before we read the log.
    assert_eq!(send(&stack, 5, &[("x-bcsp-key", CURRENT)]).status, 200);

    let log = stack.envoy.settled_log();
    let ids = [
        "genesys-2026q4",
        "genesys.2026q3",
        "retired_2026q2",
        "bearer",
    ];
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| ids.iter().all(|id| l.contains(id)))
        .collect();
    assert_eq!(
        summaries.len(),
        1,
        "want one startup line naming all key ids, got {summaries:#?}"
    );
    stack
        .envoy
        .assert_log_free_of(&[CURRENT, OLD, RETIRED, BEARER], &[]);
}

/// Each denial logs one line with the reason, the client address and the request id; for a
/// key outside its window, also the key id. Never the presented value.
#[test]
fn denial_log_line_names_client_request_id_and_expired_key() {
    let stack = Stack::start(&EnvoyConfig::new(rotation_policy(&["127.0.0.5/32"])));

    let cases = [
        ("missing", 5, None, 401),
        ("wrong", 5, Some(("x-bcsp-key", WRONG)), 401),
        ("expired", 5, Some(("x-bcsp-key", RETIRED)), 401),
        ("ip", 6, Some(("x-bcsp-key", CURRENT)), 403),
    ];
    let mut ids = Vec::new();
    for (case, from, header, status) in cases {
        let id = rid(case);
        let mut headers = vec![("x-request-id", id.as_str())];
        headers.extend(header);
        assert_eq!(send(&stack, from, &headers).status, status, "{case}");
        ids.push((case, from, id));
    }

    let log = stack.envoy.wait_for_log(&ids.last().unwrap().2);
    for (case, from, id) in &ids {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(id.as_str())).collect();
        assert_eq!(
            lines.len(),
            1,
            "{case}: want one log line with {id}: {lines:#?}"
        );
        let client = format!("127.0.0.{from}");
        assert!(
            lines[0].contains(&client),
            "{case}: no client address: {}",
            lines[0]
        );
        if *case == "expired" {
            assert!(
                lines[0].contains("retired_2026q2"),
                "{case}: no key id: {}",
                lines[0]
            );
        }
    }
    stack
        .envoy
        .assert_log_free_of(&[CURRENT, OLD, RETIRED, BEARER], &[WRONG]);
}

/// A full mix of traffic, then the log is searched for every secret, its hash (either case)
/// and every credential header value sent.
#[test]
fn logs_never_contain_secrets_hashes_or_header_values() {
    let stack = Stack::start(&EnvoyConfig::new(rotation_policy(&[])));
    let bearer = format!("Bearer {BEARER}");
    let wrong_bearer = format!("Bearer {WRONG}");
    let traffic: [&[(&str, &str)]; 8] = [
        &[("x-bcsp-key", CURRENT)],
        &[("x-bcsp-key", OLD)],
        &[("x-bcsp-key", RETIRED)],
        &[("x-bcsp-key", WRONG)],
        &[("x-bcsp-key", CURRENT), ("x-bcsp-key", WRONG)],
        &[("authorization", &bearer)],
        &[("authorization", &wrong_bearer)],
        &[("authorization", BEARER)],
    ];
    let want = [200, 200, 401, 401, 401, 200, 401, 401];
    for (headers, status) in traffic.iter().zip(want) {
        assert_eq!(send(&stack, 5, headers).status, status, "{headers:?}");
    }
    stack.envoy.assert_log_free_of(
        &[CURRENT, OLD, RETIRED, BEARER],
        &[WRONG, &bearer, &wrong_bearer],
    );
}
