//! Open Messaging webhooks: deliveries under a path prefix are authenticated by
//! `X-Hub-Signature-256: sha256=<base64(HMAC-SHA256(secret, raw body))>`, the secret coming from
//! the Wasm VM's environment. Every test runs the real Envoy with the built filter.

mod harness;

use harness::*;
use serde_json::{json, Value};

const KEY: &str = "k3y-webhook-suite-4f1e9a";
const OM_SECRET: &str = "om-secret-from-the-vm-env-7c2d91";

fn filter(max_body: Option<u64>) -> Value {
    let mut f = json!({
        "keys": [key("k1", KEY)],
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
        "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_WEBHOOK_SECRET"}],
    });
    if let Some(n) = max_body {
        f["max_body_bytes"] = json!(n);
    }
    f
}

/// Envoy as the README configures it for webhooks: `allow_on_headers_stop_iteration: true`
/// (the harness default), no other filter.
fn stack(max_body: Option<u64>) -> Stack {
    Stack::start(
        &EnvoyConfig::new(filter(max_body))
            .path_normalization(true)
            .vm_env("OM_WEBHOOK_SECRET", OM_SECRET),
    )
}

#[test]
fn a_signed_delivery_split_across_chunks_reaches_the_upstream_whole() {
    let stack = stack(None);
    let body = om_event(4000);
    let sig = om_signature(OM_SECRET, &body);
    let parts: Vec<Vec<u8>> = body.chunks(1000).map(<[u8]>::to_vec).collect();
    assert_eq!(parts.len(), 4);

    let reply = request("POST", "/openmessaging/inbound")
        .to(stack.envoy.addr())
        .header("x-hub-signature-256", &sig)
        .header("x-bcsp-key-id", "forged")
        .chunked("application/json", parts)
        .send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.target, "/openmessaging/inbound");
    assert_eq!(seen.body, body, "the upstream gets the body byte for byte");
    assert!(
        seen.headers_named("x-bcsp-key-id").is_empty(),
        "no key matched, and the forged id is gone: {:?}",
        seen.headers
    );
    assert_eq!(stack.envoy.counter("bcsp_guard.webhook.accepted"), 1);

    // The same with a plain content-length body.
    let small = om_event(300);
    let reply = request("POST", "/openmessaging")
        .to(stack.envoy.addr())
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &small))
        .body("application/json", small.clone())
        .send();
    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    assert_eq!(stack.upstream.last().body, small);
    stack.envoy.assert_log_free_of(&[OM_SECRET, KEY], &[]);
}

#[test]
fn a_missing_or_wrong_signature_is_401_and_nothing_reaches_the_upstream() {
    let stack = stack(None);
    let body = om_event(2500);
    let good = om_signature(OM_SECRET, &body);
    let hex: String = hmac_sha256(OM_SECRET.as_bytes(), &body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    /// (case, headers, chunked body parts; `None`: the plain body)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Option<Vec<Vec<u8>>>);
    let cases: Vec<Case> = vec![
        ("missing", vec![], None),
        (
            "other secret",
            vec![(
                "x-hub-signature-256",
                om_signature("another-secret-0123456", &body),
            )],
            None,
        ),
        (
            "other body",
            vec![("x-hub-signature-256", om_signature(OM_SECRET, b"{}"))],
            None,
        ),
        (
            "hex, not base64",
            vec![("x-hub-signature-256", format!("sha256={hex}"))],
            None,
        ),
        (
            "no sha256= prefix",
            vec![(
                "x-hub-signature-256",
                good.trim_start_matches("sha256=").to_string(),
            )],
            None,
        ),
        (
            "repeated",
            vec![
                ("x-hub-signature-256", good.clone()),
                ("x-hub-signature-256", good.clone()),
            ],
            None,
        ),
        ("a key instead", vec![("x-bcsp-key", KEY.to_string())], None),
        (
            "tampered last chunk",
            vec![("x-hub-signature-256", good.clone())],
            Some({
                let mut parts: Vec<Vec<u8>> = body.chunks(1000).map(<[u8]>::to_vec).collect();
                let last = parts.last_mut().unwrap();
                last[0] ^= 1;
                parts
            }),
        ),
    ];
    let mut bodies = Vec::new();
    for (case, headers, chunks) in cases {
        let id = rid("wh");
        let mut req = request("POST", "/openmessaging/inbound")
            .to(stack.envoy.addr())
            .header("x-request-id", &id);
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let req = match chunks {
            Some(parts) => req.chunked("application/json", parts),
            None => req.body("application/json", body.clone()),
        };
        let reply = req.send();
        assert_unauthenticated(&reply, &id, "x-bcsp-key", &[OM_SECRET]);
        let mut b = reply.json();
        b["request_id"] = Value::Null;
        bodies.push((case, b));
    }
    for (case, b) in &bodies {
        assert_eq!(b, &bodies[0].1, "401 body for {case} differs");
    }
    assert_eq!(stack.upstream.count(), 0, "{:?}", stack.upstream.requests());
    assert_eq!(
        stack.envoy.counter("bcsp_guard.denied.webhook_signature"),
        8
    );
    let log = stack.envoy.settled_log();
    assert!(
        log.contains("webhook signature does not match the body on /openmessaging"),
        "{}",
        log
    );
    stack
        .envoy
        .assert_log_free_of(&[OM_SECRET, KEY], &[&good, &hex]);
}

#[test]
fn bodies_one_byte_over_max_body_bytes_are_refused_unread() {
    let stack = stack(Some(1000));
    let at_limit = om_event(1000);
    let over = om_event(1001);
    assert_eq!((at_limit.len(), over.len()), (1000, 1001));
    let post = |path: &str| request("POST", path).to(stack.envoy.addr());

    // Webhooks: a body too large to verify is refused unread, 413.
    let r = post("/openmessaging")
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &over))
        .body("application/json", over.clone())
        .send();
    assert_eq!(r.status, 413, "reply: {}", r.text());
    let r = post("/openmessaging")
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &over))
        .chunked(
            "application/json",
            over.chunks(400).map(<[u8]>::to_vec).collect(),
        )
        .send();
    assert_eq!(r.status, 413, "reply: {}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    let r = post("/openmessaging")
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &at_limit))
        .chunked(
            "application/json",
            at_limit.chunks(400).map(<[u8]>::to_vec).collect(),
        )
        .send();
    assert_eq!(r.status, 200, "reply: {}", r.text());

    // Key-authenticated requests: 413, whether the length is announced or streamed.
    let r = post("/botconnector/messages")
        .header("x-bcsp-key", KEY)
        .body("application/json", over.clone())
        .send();
    assert_eq!(r.status, 413, "reply: {}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    let r = post("/botconnector/messages")
        .header("x-bcsp-key", KEY)
        .chunked(
            "application/json",
            over.chunks(400).map(<[u8]>::to_vec).collect(),
        )
        .send();
    assert_eq!(r.status, 413, "reply: {}", r.text());
    let r = post("/botconnector/messages")
        .header("x-bcsp-key", KEY)
        .body("application/json", at_limit.clone())
        .send();
    assert_eq!(r.status, 200, "reply: {}", r.text());
    assert_eq!(stack.upstream.last().body, at_limit);
    assert_eq!(stack.envoy.counter("bcsp_guard.denied.body_too_large"), 4);
    // Only the two bodies at the limit were delivered whole.
    let whole: Vec<usize> = stack
        .upstream
        .requests()
        .iter()
        .filter(|s| s.body.len() > 1000)
        .map(|s| s.body.len())
        .collect();
    assert!(
        whole.is_empty(),
        "an over-limit body reached the upstream: {whole:?}"
    );
}

/// With the default 1 MiB limit, Envoy's own buffer limit must be raised above it so that the
/// filter (not Envoy's plain-text 413) answers; this is the setting the README documents.
#[test]
fn the_default_limit_is_enforced_by_the_filter_when_envoy_buffers_more() {
    let cfg = EnvoyConfig::new(filter(None))
        .vm_env("OM_WEBHOOK_SECRET", OM_SECRET)
        .buffer_limit_bytes(2 * 1024 * 1024);
    let stack = Stack::start(&cfg);
    let over = om_event(1024 * 1024 + 1);
    let parts: Vec<Vec<u8>> = over.chunks(256 * 1024).map(<[u8]>::to_vec).collect();
    let r = request("POST", "/openmessaging")
        .to(stack.envoy.addr())
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &over))
        .chunked("application/json", parts)
        .send();
    assert_eq!(r.status, 413, "reply: {}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    assert_eq!(stack.upstream.count(), 0);
}

/// With `upstream_token`, a verified delivery carries the identity token, set once the body is
/// verified while the headers are still held; the caller's own is dropped. The first delivery
/// may wait for the first token.
#[test]
fn a_verified_delivery_carries_the_identity_token_and_never_the_callers() {
    let emu = metadata_emulator::Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let mut f = filter(None);
    f["upstream_token"] = json!({"cluster": "gcp_metadata", "audience": "https://bcsp.a.run.app"});
    let cluster = format!(
        "  - name: gcp_metadata\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: gcp_metadata\n      endpoints:\n      - lb_endpoints:\n        - endpoint: \
         {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
        emu.addr().port()
    );
    let cfg = EnvoyConfig::new(f)
        .vm_env("OM_WEBHOOK_SECRET", OM_SECRET)
        .extra_clusters(&cluster);
    let stack = Stack::start(&cfg);
    let body = om_event(1500);
    for _ in 0..2 {
        let r = request("POST", "/openmessaging")
            .to(stack.envoy.addr())
            .header("x-hub-signature-256", &om_signature(OM_SECRET, &body))
            .header("authorization", "Bearer caller-chosen")
            .chunked(
                "application/json",
                body.chunks(500).map(<[u8]>::to_vec).collect(),
            )
            .send();
        assert_eq!(r.status, 200, "reply: {}", r.text());
        let seen = stack.upstream.last();
        let auth = seen.headers_named("authorization");
        assert_eq!(auth.len(), 1, "{:?}", seen.headers);
        assert!(
            auth[0].starts_with("Bearer ey") && !auth[0].contains("caller-chosen"),
            "{auth:?}"
        );
        assert_eq!(seen.body, body);
    }
    // A wrong signature: 401, and the token never left with it.
    let r = request("POST", "/openmessaging")
        .to(stack.envoy.addr())
        .header(
            "x-hub-signature-256",
            &om_signature("not-the-secret-012345", &body),
        )
        .chunked(
            "application/json",
            body.chunks(500).map(<[u8]>::to_vec).collect(),
        )
        .send();
    assert_eq!(r.status, 401, "reply: {}", r.text());
    assert_eq!(stack.upstream.count(), 2);
    assert_eq!(
        stack
            .envoy
            .upstream_rq_total()
            .expect("cluster.bcsp.upstream_rq_total"),
        2
    );
}

#[test]
fn a_secret_env_the_vm_does_not_have_stops_envoy_with_the_field_named() {
    let cfg = EnvoyConfig::new(filter(None));
    let (code, log) = Envoy::expect_config_failure(&cfg);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(
            "bcsp-guard: invalid configuration: webhooks[0].secret_env: environment variable \
             `OM_WEBHOOK_SECRET` is not set in the Wasm VM"
        ),
        "{}",
        log
    );
}
