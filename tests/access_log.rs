//! The audit trail: every request's decision in Envoy's JSON access log (key id, verdict,
//! reason, client and its source, route or webhook, audience, lockout), one request per
//! verdict, and no secret, hash, token or signature anywhere in the file. Runs against either
//! artifact (`BCSP_GUARD_ARTIFACT=dynamic-module`).

mod harness;

use harness::*;
use metadata_emulator::Emulator;
use serde_json::{json, Value};

const KEY: &str = "k3y-audit-suite-5e0c71";
const OLD_KEY: &str = "k3y-audit-suite-retired-93ab";
const OM_SECRET: &str = "om-secret-audit-suite-2b8f44";
const AUD: &str = "https://bcsp-audit-uc.a.run.app";

fn filter(max_wait_ms: u64) -> Value {
    json!({
        "keys": [
            key("k1", KEY),
            with(key("retired", OLD_KEY), json!({"not_after": rfc3339(now() - 3600)})),
        ],
        "allow_cidrs": ["127.0.0.0/26"],
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
        "max_body_bytes": 1000,
        "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_WEBHOOK_SECRET"}],
        "lockout": {"max_failures": 2, "window_s": 60, "cooldown_s": 60},
        "upstream_token": {"cluster": "gcp_metadata", "audience": AUD, "max_wait_ms": max_wait_ms},
    })
}

/// Envoy with the access log, in front of a metadata emulator (`None`: nothing answers).
fn start(emu: Option<&Emulator>) -> Stack {
    let metadata = emu.map_or_else(
        || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
        |e| Ok(e.addr()),
    );
    let cfg = EnvoyConfig::new(filter(if emu.is_some() { 5000 } else { 300 }))
        .access_log(true)
        .vm_env("OM_WEBHOOK_SECRET", OM_SECRET)
        .extra_clusters(&metadata_cluster(metadata.expect("an address")));
    Stack::start(&cfg)
}

/// The line's audit fields equal `expected`; every other audit field is unset.
fn assert_audit(line: &Value, expected: &[(&str, &str)]) {
    for field in AUDIT_FIELDS {
        let want = expected.iter().find(|(k, _)| *k == field).map(|(_, v)| *v);
        let got = &line[field];
        match want {
            Some(v) => assert_eq!(got, v, "{field} in {line}"),
            None => assert!(
                got.is_null() || got == "-",
                "{field} should be unset in {line}"
            ),
        }
    }
}

#[test]
fn every_verdict_is_one_access_log_line_with_its_fields() {
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let stack = start(Some(&emu));
    let at = stack.envoy.addr();
    let send = |tag: &str, from: u8, req: RequestBuilder| -> (u16, Value) {
        let id = rid(tag);
        let reply = req.to(at).from(lo(from)).header("x-request-id", &id).send();
        (reply.status, stack.envoy.access_log_line(&id))
    };
    let bots = || request("GET", "/botconnector/bots");
    let client = |n: u8| format!("127.0.0.{n}");

    let (status, line) = send("ok", 1, bots().header("x-bcsp-key", KEY));
    assert_eq!(status, 200);
    let c1 = client(1);
    assert_audit(
        &line,
        &[
            ("key_id", "k1"),
            ("verdict", "forwarded"),
            ("reason", "allowed"),
            ("client", &c1),
            ("client_source", "peer"),
            ("route", "GET /botconnector/bots"),
            ("audience", AUD),
            ("lockout", "clear"),
        ],
    );

    // 401s, one client each so none is locked out yet.
    let cases = [
        ("missing", 2, bots(), "denied.missing_key", None),
        (
            "wrong",
            3,
            bots().header("x-bcsp-key", "guess"),
            "denied.invalid_key",
            None,
        ),
        (
            "twice",
            4,
            bots().header("x-bcsp-key", KEY).header("x-bcsp-key", KEY),
            "denied.invalid_key",
            None,
        ),
        (
            "expired",
            5,
            bots().header("x-bcsp-key", OLD_KEY),
            "denied.expired_key",
            Some("retired"),
        ),
    ];
    for (tag, from, req, reason, key_id) in cases {
        let (status, line) = send(tag, from, req);
        assert_eq!(status, 401, "{tag}");
        let c = client(from);
        let mut want = vec![
            ("verdict", "401"),
            ("reason", reason),
            ("client", c.as_str()),
            ("client_source", "peer"),
            ("lockout", "counted"),
        ];
        if let Some(k) = key_id {
            want.push(("key_id", k));
        }
        assert_audit(&line, &want);
    }

    let (status, line) = send("outside", 100, bots().header("x-bcsp-key", KEY));
    assert_eq!(status, 403);
    let c100 = client(100);
    assert_audit(
        &line,
        &[
            ("verdict", "403"),
            ("reason", "denied.ip"),
            ("client", &c100),
            ("client_source", "peer"),
        ],
    );

    let keyed = |m: &str, p: &str| request(m, p).header("x-bcsp-key", KEY);
    let c6 = client(6);
    let refusals = [
        (
            "unknown",
            keyed("GET", "/botconnector/nope"),
            404,
            "denied.route",
            None,
        ),
        (
            "method",
            keyed("DELETE", "/botconnector/bots"),
            405,
            "denied.route",
            None,
        ),
        (
            "media",
            keyed("POST", "/botconnector/messages").body("text/plain", "hi"),
            415,
            "denied.media_type",
            Some("POST /botconnector/messages"),
        ),
        (
            "large",
            keyed("POST", "/botconnector/messages").body("application/json", vec![b' '; 2000]),
            413,
            "denied.body_too_large",
            Some("POST /botconnector/messages"),
        ),
    ];
    for (tag, req, code, reason, route) in refusals {
        let (status, line) = send(tag, 6, req);
        assert_eq!(status, code, "{tag}");
        let code = code.to_string();
        let mut want = vec![
            ("key_id", "k1"),
            ("verdict", code.as_str()),
            ("reason", reason),
            ("client", c6.as_str()),
            ("client_source", "peer"),
            ("lockout", "clear"),
        ];
        if let Some(r) = route {
            want.push(("route", r));
        }
        assert_audit(&line, &want);
    }

    // Webhooks: signed, then a bad signature.
    let body = om_event(300);
    let hook = |sig: &str| {
        request("POST", "/openmessaging/inbound")
            .header("x-hub-signature-256", sig)
            .body("application/json", body.clone())
    };
    let good = om_signature(OM_SECRET, &body);
    let (status, line) = send("hook-ok", 7, hook(&good));
    assert_eq!(status, 200);
    let c7 = client(7);
    assert_audit(
        &line,
        &[
            ("verdict", "forwarded"),
            ("reason", "webhook.accepted"),
            ("client", &c7),
            ("client_source", "peer"),
            ("route", "webhook /openmessaging"),
            ("audience", AUD),
            ("lockout", "clear"),
        ],
    );
    let bad = om_signature("not-the-secret", &body);
    let (status, line) = send("hook-bad", 8, hook(&bad));
    assert_eq!(status, 401);
    let c8 = client(8);
    assert_audit(
        &line,
        &[
            ("verdict", "401"),
            ("reason", "denied.webhook_signature"),
            ("client", &c8),
            ("client_source", "peer"),
            ("route", "webhook /openmessaging"),
            ("lockout", "counted"),
        ],
    );

    // Lockout: the 2nd failure starts it, then even the right key gets 429.
    let c9 = client(9);
    let (_, line) = send("guess1", 9, bots().header("x-bcsp-key", "guess"));
    assert_eq!(line["lockout"], "counted");
    let (_, line) = send("guess2", 9, bots().header("x-bcsp-key", "guess"));
    assert_eq!(line["lockout"], "started");
    let (status, line) = send("locked", 9, bots().header("x-bcsp-key", KEY));
    assert_eq!(status, 429);
    assert_audit(
        &line,
        &[
            ("verdict", "429"),
            ("reason", "denied.locked_out"),
            ("client", &c9),
            ("client_source", "peer"),
            ("lockout", "locked"),
        ],
    );

    assert_file_free_of_secrets(&stack, &[KEY, OLD_KEY, OM_SECRET, &good, &bad]);
    for l in stack.envoy.access_log(0) {
        println!("{l}");
    }
}

#[test]
fn a_request_refused_for_want_of_a_token_keeps_its_key_and_audience() {
    let stack = start(None);
    let id = rid("no-token");
    let reply = stack
        .request("/botconnector/bots")
        .from(lo(1))
        .header("x-bcsp-key", KEY)
        .header("x-request-id", &id)
        .send();
    assert_eq!(reply.status, 503, "{}", reply.text());
    let line = stack.envoy.access_log_line(&id);
    assert_audit(
        &line,
        &[
            ("key_id", "k1"),
            ("verdict", "503"),
            ("reason", "denied.no_token"),
            ("client", "127.0.0.1"),
            ("client_source", "peer"),
            ("route", "GET /botconnector/bots"),
            ("audience", AUD),
            ("lockout", "clear"),
        ],
    );
    println!("{line}");
    assert_file_free_of_secrets(&stack, &[KEY]);
}

/// A webhook delivery whose body stops half-way: 408 at the hold's deadline, logged with the
/// webhook it was for and the reason (both builds end a held delivery on their own timer).
#[test]
fn a_stalled_webhook_delivery_is_logged_as_incomplete() {
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let stack = start(Some(&emu));
    let body = om_event(900);
    let id = rid("hook-stall");
    let text = stalled_delivery(
        stack.envoy.addr(),
        "/openmessaging/inbound",
        &id,
        OM_SECRET,
        &body,
        300,
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let line = stack.envoy.access_log_line(&id);
    assert_audit(
        &line,
        &[
            ("verdict", "408"),
            ("reason", "denied.webhook_incomplete"),
            ("client", "127.0.0.1"),
            ("client_source", "peer"),
            ("route", "webhook /openmessaging"),
            ("lockout", "clear"),
        ],
    );
    println!("{line}");
    assert_file_free_of_secrets(&stack, &[KEY, OM_SECRET]);
}

#[test]
fn a_client_taken_from_x_forwarded_for_is_logged_with_its_hop() {
    let filter = json!({
        "keys": [key("k1", KEY)],
        "client_ip": {"from": "x-forwarded-for", "trusted_hops": 2},
        "allow_cidrs": ["203.0.113.0/24"],
    });
    let stack = Stack::start(&EnvoyConfig::new(filter).access_log(true));
    let send = |xff: &str, tag: &str| {
        let id = rid(tag);
        let reply = stack
            .request("/bots")
            .from(lo(1))
            .header("x-bcsp-key", KEY)
            .header("x-forwarded-for", xff)
            .header("x-request-id", &id)
            .send();
        (reply.status, stack.envoy.access_log_line(&id))
    };
    // Envoy appends the peer: the 2nd entry from the right is the one the caller's proxy added.
    let (status, line) = send("198.51.100.1, 203.0.113.7", "inside");
    assert_eq!(status, 200);
    assert_audit(
        &line,
        &[
            ("key_id", "k1"),
            ("verdict", "forwarded"),
            ("reason", "allowed"),
            ("client", "203.0.113.7"),
            ("client_source", "xff-2"),
        ],
    );
    let (status, line) = send("203.0.113.7, 198.51.100.1", "outside");
    assert_eq!(status, 403);
    assert_audit(
        &line,
        &[
            ("verdict", "403"),
            ("reason", "denied.ip"),
            ("client", "198.51.100.1"),
            ("client_source", "xff-2"),
        ],
    );
    assert_file_free_of_secrets(&stack, &[KEY]);
}

#[test]
fn audit_fields_false_leaves_the_fields_unset() {
    let filter = json!({"keys": [key("k1", KEY)], "audit_fields": false});
    let stack = Stack::start(&EnvoyConfig::new(filter).access_log(true));
    for (key_value, want) in [(KEY, 200), ("wrong", 401)] {
        let id = rid(&format!("off-{want}"));
        let reply = stack
            .request("/bots")
            .header("x-bcsp-key", key_value)
            .header("x-request-id", &id)
            .send();
        assert_eq!(reply.status, want);
        // The request is still logged by Envoy; only bcsp-guard's fields are absent.
        assert_audit(&stack.envoy.access_log_line(&id), &[]);
    }
}

/// No presented secret, key hash (either case), identity token or signature in any line.
fn assert_file_free_of_secrets(stack: &Stack, secrets: &[&str]) {
    let text = std::fs::read_to_string(stack.envoy.access_log_path()).expect("access log");
    assert!(!text.is_empty());
    for s in secrets {
        let h = sha256_hex(s);
        for bad in [s.to_string(), h.clone(), h.to_uppercase()] {
            assert!(!text.contains(&bad), "access log leaks {bad}:\n{text}");
        }
    }
    for bad in ["eyJ", "Bearer", "sha256="] {
        assert!(!text.contains(bad), "access log carries {bad}:\n{text}");
    }
}
