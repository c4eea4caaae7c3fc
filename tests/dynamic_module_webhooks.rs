//! Open Messaging webhooks in the native build: the module holds a delivery's headers and
//! buffers its body itself (no `envoy.filters.http.buffer` in the chain), verifies the
//! signature over the whole body, then releases it or answers 401. Envoy 1.40 only.

mod harness;

use harness::*;
use metadata_emulator::{decode_claims, Emulator};
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "k3y-dynmod-webhooks-71c0";
const OM_SECRET: &str = "om-dynmod-secret-2b9e61d0";

fn filter(max_body: Option<u64>) -> Value {
    let mut f = json!({
        "keys": [key("genesys", KEY)],
        "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_DYNMOD_SECRET"}],
    });
    if let Some(n) = max_body {
        f["max_body_bytes"] = json!(n);
    }
    f
}

/// No buffer filter: only the module stands between a delivery and the upstream.
fn stack(max_body: Option<u64>) -> Stack {
    Stack::start(
        &EnvoyConfig::new(filter(max_body))
            .artifact(Artifact::DynamicModule)
            .vm_env("OM_DYNMOD_SECRET", OM_SECRET),
    )
}

#[test]
fn signed_delivery_in_chunks_reaches_the_upstream_whole() {
    if !dynmod_supported() {
        return;
    }
    let stack = stack(None);
    let body = om_event(4000);
    let parts: Vec<Vec<u8>> = body.chunks(1000).map(<[u8]>::to_vec).collect();
    let r = request("POST", "/openmessaging/inbound")
        .to(stack.envoy.addr())
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &body))
        .header("x-bcsp-key-id", "forged")
        .chunked("application/json", parts)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.body, body, "the upstream gets the body byte for byte");
    assert!(
        seen.headers_named("x-bcsp-key-id").is_empty(),
        "{:?}",
        seen.headers
    );

    let small = om_event(300);
    let r = request("POST", "/openmessaging")
        .to(stack.envoy.addr())
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &small))
        .body("application/json", small.clone())
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stack.upstream.last().body, small);
    assert_eq!(stack.envoy.counter("bcsp_guard.webhook.accepted"), 2);
    stack.envoy.assert_log_free_of(&[OM_SECRET], &[]);
}

#[test]
fn bad_missing_or_oversized_signatures_never_reach_the_upstream() {
    if !dynmod_supported() {
        return;
    }
    let stack = stack(Some(2048));
    let body = om_event(1500);
    let wrong = om_signature("not-the-secret", &body);
    let parts: Vec<Vec<u8>> = body.chunks(500).map(<[u8]>::to_vec).collect();
    for (tag, sig) in [("wrong", Some(wrong.as_str())), ("missing", None)] {
        let id = rid(tag);
        let mut req = request("POST", "/openmessaging/inbound")
            .to(stack.envoy.addr())
            .header("x-request-id", &id);
        if let Some(s) = sig {
            req = req.header("x-hub-signature-256", s);
        }
        let r = req.chunked("application/json", parts.clone()).send();
        assert_eq!(r.status, 401, "{tag}: {}", r.text());
        assert_eq!(r.json()["error"], "unauthenticated");
        assert_eq!(r.json()["request_id"], id.as_str());
    }
    // Larger than max_body_bytes, streamed: refused unread (413), as the Wasm build does.
    let big = om_event(5000);
    let r = request("POST", "/openmessaging/inbound")
        .to(stack.envoy.addr())
        .header("x-hub-signature-256", &om_signature(OM_SECRET, &big))
        .chunked(
            "application/json",
            big.chunks(1000).map(<[u8]>::to_vec).collect(),
        )
        .send();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "payload_too_large");
    // Nothing was even started towards the upstream: the headers were held in the module.
    assert_eq!(
        stack
            .envoy
            .upstream_rq_total()
            .expect("cluster.bcsp.upstream_rq_total"),
        0
    );
    assert_eq!(stack.upstream.count(), 0);
    assert_eq!(
        stack.envoy.counter("bcsp_guard.denied.webhook_signature"),
        2
    );
    assert_eq!(stack.envoy.counter("bcsp_guard.denied.body_too_large"), 1);
    let log = stack
        .envoy
        .wait_for_log("webhook signature does not match the body");
    assert!(
        log.contains("webhook signature does not match the body on /openmessaging"),
        "{log}"
    );
}

#[test]
fn a_delivery_ended_by_trailers_is_still_verified_before_release() {
    if !dynmod_supported() {
        return;
    }
    let stack = Stack::start(
        &EnvoyConfig::new(filter(None))
            .artifact(Artifact::DynamicModule)
            .vm_env("OM_DYNMOD_SECRET", OM_SECRET)
            .trailers(true),
    );
    let body = om_event(600);
    let raw = |sig: &str| {
        let mut r = format!(
            "POST /openmessaging/inbound HTTP/1.1\r\nhost: bcsp.test\r\ncontent-type: application/json\r\n\
             x-hub-signature-256: {sig}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r.extend_from_slice(b"\r\n0\r\nx-trace: t1\r\n\r\n");
        r
    };
    let bad = send_raw(
        stack.envoy.addr(),
        None,
        &raw(&om_signature("wrong", &body)),
    )
    .expect("send");
    assert_eq!(bad.status, 401, "{}", bad.text());
    assert_eq!(
        stack
            .envoy
            .upstream_rq_total()
            .expect("cluster.bcsp.upstream_rq_total"),
        0,
        "unverified headers went upstream"
    );
    let good = send_raw(
        stack.envoy.addr(),
        None,
        &raw(&om_signature(OM_SECRET, &body)),
    )
    .expect("send");
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(stack.upstream.last().body, body);
}

#[test]
fn a_delivery_before_the_first_token_waits_for_token_and_signature() {
    if !dynmod_supported() {
        return;
    }
    let aud = "https://bcsp-hooks-uc.a.run.app";
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    emu.set_delay(Duration::from_millis(600));
    let mut f = filter(None);
    f["upstream_token"] = json!({"cluster": "gcp_metadata", "audience": aud});
    let stack = Stack::start(
        &EnvoyConfig::new(f)
            .artifact(Artifact::DynamicModule)
            .vm_env("OM_DYNMOD_SECRET", OM_SECRET)
            .metadata_hop(emu.addr()),
    );
    let body = om_event(2000);
    let send = |sig: &str| {
        request("POST", "/openmessaging/inbound")
            .to(stack.envoy.addr())
            .header("x-hub-signature-256", sig)
            .header("authorization", "Bearer caller-chosen")
            .chunked(
                "application/json",
                body.chunks(700).map(<[u8]>::to_vec).collect(),
            )
            .send()
    };
    let r = send(&om_signature(OM_SECRET, &body));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.body, body);
    let auth = seen.headers_named("authorization");
    assert_eq!(auth.len(), 1, "{:?}", seen.headers);
    let jwt = auth[0].strip_prefix("Bearer ").expect("Bearer scheme");
    assert_eq!(decode_claims(jwt).expect("emulator JWT").aud, aud);

    let r = send(&om_signature("wrong", &body));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(stack.upstream.count(), 1);
}

/// A webhook secret held by Envoy itself, as a generic secret in the bootstrap: the module reads
/// it while its configuration is created; nothing in the filter JSON or the environment.
#[test]
fn webhook_secret_from_an_envoy_generic_secret() {
    if !dynmod_supported() {
        return;
    }
    let hooks = json!({
        "keys": [key("genesys", KEY)],
        "webhooks": [{"path_prefix": "/openmessaging", "secret_generic": "om-webhook"}],
    });
    let cfg = EnvoyConfig::new(hooks.clone())
        .artifact(Artifact::DynamicModule)
        .generic_secret("om-webhook", OM_SECRET);
    let stack = Stack::start(&cfg);
    let body = om_event(600);
    let signed = |secret: &str| {
        request("POST", "/openmessaging")
            .to(stack.envoy.addr())
            .header("x-hub-signature-256", &om_signature(secret, &body))
            .body("application/json", body.clone())
            .send()
    };
    let r = signed(OM_SECRET);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stack.upstream.last().body, body);
    assert_eq!(signed("some-other-secret-value-123").status, 401);
    assert_eq!(stack.upstream.count(), 1);
    let log = stack.envoy.wait_for_log("Envoy generic secret om-webhook");
    assert!(log.contains("Envoy generic secret om-webhook"), "{log}");
    stack.envoy.assert_log_free_of(&[OM_SECRET], &[]);
    drop(stack);

    // A name Envoy does not hold: the configuration is refused, naming the field.
    let (code, log) = Envoy::expect_config_failure(
        &EnvoyConfig::new(hooks.clone()).artifact(Artifact::DynamicModule),
    );
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("bcsp-guard: invalid configuration: webhooks[0].secret_generic: Envoy has no generic secret `om-webhook`"),
        "{log}"
    );
    // The Wasm build cannot read Envoy's secrets, and says so by field.
    let (code, log) = Envoy::expect_config_failure(
        &EnvoyConfig::new(hooks)
            .artifact(Artifact::Wasm)
            .generic_secret("om-webhook", OM_SECRET),
    );
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains(
            "webhooks[0].secret_generic: Envoy generic secrets reach only the dynamic-module build"
        ),
        "{log}"
    );
}

/// The SDS file Envoy reads: one generic secret named `om-webhook`.
fn sds_file(dir: &std::path::Path, secret: &str) -> std::path::PathBuf {
    let path = dir.join("sds.json");
    let resource = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": "om-webhook",
        "generic_secret": {"secret": {"inline_string": secret}},
    }]});
    // Written aside and moved into place: Envoy reloads a path source on the move.
    let tmp = dir.join("sds.json.tmp");
    std::fs::write(&tmp, resource.to_string()).expect("write SDS file");
    std::fs::rename(&tmp, &path).expect("move SDS file");
    path
}

/// Polls until a delivery signed with `secret` gets `status` (bounded).
fn wait_for_delivery(stack: &Stack, secret: &str, status: u16) -> u16 {
    let body = om_event(400);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = request("POST", "/openmessaging")
            .to(stack.envoy.addr())
            .header("x-hub-signature-256", &om_signature(secret, &body))
            .body("application/json", body.clone())
            .send()
            .status;
        if got == status || std::time::Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A webhook secret Envoy gets over SDS (here a watched file) is swapped in while Envoy runs:
/// deliveries signed with the new secret pass, the old one is refused, no restart.
#[test]
fn webhook_secret_over_sds_rotates_without_a_restart() {
    if !dynmod_supported() {
        return;
    }
    const NEXT: &str = "om-dynmod-rotated-secret-5d1e";
    let dir = TempDir::new("sds");
    let path = sds_file(dir.path(), OM_SECRET);
    let hooks = json!({
        "keys": [key("genesys", KEY)],
        "webhooks": [{
            "path_prefix": "/openmessaging",
            "secret_generic": "om-webhook",
            "secret_generic_sds": {
                "path_config_source": {"path": path.display().to_string()},
                "resource_api_version": "V3",
            },
        }],
    });
    let stack = Stack::start(
        &EnvoyConfig::new(hooks)
            .artifact(Artifact::DynamicModule)
            .node("bcsp-guard-sds-test"),
    );
    assert_eq!(wait_for_delivery(&stack, OM_SECRET, 200), 200);
    assert_eq!(wait_for_delivery(&stack, NEXT, 401), 401);

    sds_file(dir.path(), NEXT);
    assert_eq!(wait_for_delivery(&stack, NEXT, 200), 200, "the new secret");
    assert_eq!(
        wait_for_delivery(&stack, OM_SECRET, 401),
        401,
        "the old secret"
    );
    let in_use = "Envoy generic secret om-webhook, over SDS) is now in use";
    let log = stack.envoy.wait_for_log_count(in_use, 2);
    assert!(log.matches(in_use).count() >= 2, "{log}");
    stack.envoy.assert_log_free_of(&[OM_SECRET, NEXT], &[]);
}
