//! Credentials: which keys admit a request, what the upstream sees, and the one 401 for all
//! failures. Every test runs the real Envoy with the built filter.

mod harness;

use harness::*;
use serde_json::{json, Value};

const SECRET: &str = "k3y-CURRENT-b9f1c7e2a4d8";
const OTHER: &str = "k3y-NEXT-5e0a3d91c6f7";

fn one_key(id: &str, secret: &str) -> Value {
    json!({ "keys": [key(id, secret)] })
}

/// The upstream must never see any configured credential header, in any letter case.
fn assert_no_credential(seen: &Seen, header: &str, secrets: &[&str]) {
    assert!(
        seen.headers_named(header).is_empty(),
        "upstream saw the credential header {header}: {:?}",
        seen.headers
    );
    for (name, value) in &seen.headers {
        for s in secrets {
            assert!(
                !value.contains(s),
                "upstream saw a secret in header {name}: {value:?}"
            );
        }
    }
}

#[test]
fn valid_key_is_admitted_and_upstream_sees_key_id_but_no_credential() {
    let stack = Stack::start(&EnvoyConfig::new(one_key("genesys-2026q4", SECRET)));

    let reply = stack.request("/bots").header("x-bcsp-key", SECRET).send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    assert_eq!(stack.upstream.count(), 1);
    let seen = stack.upstream.last();
    assert_eq!(seen.target, "/bots");
    assert_no_credential(&seen, "x-bcsp-key", &[SECRET]);
    assert_eq!(seen.headers_named("x-bcsp-key-id"), vec!["genesys-2026q4"]);
    stack.envoy.assert_log_free_of(&[SECRET], &[]);
}

#[test]
fn post_with_body_is_admitted_and_body_reaches_upstream() {
    let stack = Stack::start(&EnvoyConfig::new(one_key("k1", SECRET)));
    let body = r#"{"botId":"b1","botSessionId":"s1","inputMessage":{"type":"Text","text":"hi"}}"#;

    let reply = request("POST", "/messages")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", SECRET)
        .body("application/json", body)
        .send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, body.as_bytes());
    assert_no_credential(&seen, "x-bcsp-key", &[SECRET]);
}

/// Missing, wrong, expired and not-yet-valid credentials: the same 401 (apart from the request
/// id), and the upstream sees none of them.
#[test]
fn missing_wrong_expired_and_future_keys_get_one_identical_401() {
    let t = now();
    let filter = json!({ "keys": [
        key("current", SECRET),
        with(key("expired", "k3y-EXPIRED-77aa01"), json!({
            "not_before": rfc3339(t - 86_400 * 30), "not_after": rfc3339(t - 60) })),
        with(key("future", "k3y-FUTURE-88bb02"), json!({
            "not_before": rfc3339(t + 3_600), "not_after": rfc3339(t + 86_400 * 90) })),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter));

    let cases: [(&str, Option<&str>); 5] = [
        ("missing", None),
        ("wrong", Some("k3y-WRONG-0000000000")),
        ("empty", Some("")),
        ("expired", Some("k3y-EXPIRED-77aa01")),
        ("future", Some("k3y-FUTURE-88bb02")),
    ];
    let mut bodies = Vec::new();
    let mut www = Vec::new();
    for (case, value) in cases {
        let id = rid(case);
        let mut req = stack.request("/messages").header("x-request-id", &id);
        if let Some(v) = value {
            req = req.header("x-bcsp-key", v);
        }
        let reply = req.send();
        assert_unauthenticated(
            &reply,
            &id,
            "x-bcsp-key",
            &[SECRET, "k3y-EXPIRED-77aa01", "k3y-FUTURE-88bb02"],
        );
        let mut body = reply.json();
        body["request_id"] = Value::Null;
        bodies.push((case, body));
        www.push((case, reply.header("www-authenticate").map(str::to_string)));
    }
    for (case, body) in &bodies[1..] {
        assert_eq!(
            body, &bodies[0].1,
            "401 body for {case} differs from {}",
            bodies[0].0
        );
    }
    for (case, w) in &www[1..] {
        assert_eq!(w, &www[0].1, "www-authenticate for {case} differs");
    }
    // A refused POST: neither its headers nor its body reach the upstream.
    let id = rid("post");
    let reply = request("POST", "/messages")
        .to(stack.envoy.addr())
        .header("x-request-id", &id)
        .header("x-bcsp-key", "k3y-WRONG-0000000000")
        .body(
            "application/json",
            r#"{"botId":"b1","inputMessage":{"text":"hi"}}"#,
        )
        .send();
    assert_unauthenticated(&reply, &id, "x-bcsp-key", &[SECRET]);
    assert_eq!(
        stack.upstream.count(),
        0,
        "a refused request reached the upstream: {:?}",
        stack.upstream.requests()
    );

    // The current key still works on the same Envoy.
    let ok = stack.request("/bots").header("x-bcsp-key", SECRET).send();
    assert_eq!(ok.status, 200, "reply: {}", ok.text());
    assert_eq!(
        stack.upstream.last().header("x-bcsp-key-id"),
        Some("current")
    );
    stack.envoy.assert_log_free_of(
        &[SECRET, "k3y-EXPIRED-77aa01", "k3y-FUTURE-88bb02"],
        &["k3y-WRONG-0000000000"],
    );
}

/// Rotation: the old and the new key overlap; both are admitted and named upstream.
#[test]
fn two_keys_valid_at_once_are_both_admitted() {
    let t = now();
    let filter = json!({ "keys": [
        with(key("genesys-2026q3", SECRET), json!({
            "not_before": rfc3339(t - 86_400 * 90), "not_after": rfc3339(t + 86_400) })),
        with(key("genesys-2026q4", OTHER), json!({
            "not_before": rfc3339(t - 3_600), "not_after": rfc3339(t + 86_400 * 90) })),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter));

    for (secret, id) in [(SECRET, "genesys-2026q3"), (OTHER, "genesys-2026q4")] {
        let reply = stack.request("/bots").header("x-bcsp-key", secret).send();
        assert_eq!(reply.status, 200, "{id}: {}", reply.text());
        let seen = stack.upstream.last();
        assert_eq!(seen.headers_named("x-bcsp-key-id"), vec![id]);
        assert_no_credential(&seen, "x-bcsp-key", &[SECRET, OTHER]);
    }
    assert_eq!(stack.upstream.count(), 2);
}

/// A window given with a numeric offset is the same instant as in `Z` form.
#[test]
fn window_with_numeric_offset_is_honoured() {
    let t = now();
    // not_after one hour ahead, written in +02:00: the same instant plus two hours of offset.
    let ahead = rfc3339(t + 3_600 + 7_200).replace('Z', "+02:00");
    // not_after one minute ago, written in -05:00.
    let behind = rfc3339(t - 60 - 18_000).replace('Z', "-05:00");
    let filter = json!({ "keys": [
        with(key("live", SECRET), json!({ "not_after": ahead })),
        with(key("gone", OTHER), json!({ "not_after": behind })),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter));

    let live = stack.request("/bots").header("x-bcsp-key", SECRET).send();
    assert_eq!(live.status, 200, "reply: {}", live.text());
    let id = rid("gone");
    let gone = stack
        .request("/bots")
        .header("x-bcsp-key", OTHER)
        .header("x-request-id", &id)
        .send();
    assert_unauthenticated(&gone, &id, "x-bcsp-key", &[OTHER]);
    assert_eq!(stack.upstream.count(), 1);
}

/// Two copies of the credential header, even both correct, are refused.
#[test]
fn duplicate_credential_header_is_refused() {
    let stack = Stack::start(&EnvoyConfig::new(one_key("k1", SECRET)));

    for (case, first, second) in [
        ("both-valid", SECRET, SECRET),
        ("valid-then-wrong", SECRET, "k3y-WRONG-1111"),
        ("wrong-then-valid", "k3y-WRONG-1111", SECRET),
    ] {
        let id = rid(case);
        let reply = stack
            .request("/bots")
            .header("x-request-id", &id)
            .header("x-bcsp-key", first)
            .header("X-BCSP-Key", second)
            .send();
        assert_unauthenticated(&reply, &id, "x-bcsp-key", &[SECRET]);
    }
    assert_eq!(stack.upstream.count(), 0, "{:?}", stack.upstream.requests());
    stack
        .envoy
        .assert_log_free_of(&[SECRET], &["k3y-WRONG-1111"]);
}

#[test]
fn bearer_scheme_on_authorization_is_admitted_in_any_scheme_case() {
    let filter = json!({ "keys": [
        with(key("genesys-bearer", SECRET), json!({ "header": "authorization", "scheme": "Bearer" })),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter));

    for value in [format!("Bearer {SECRET}"), format!("bearer {SECRET}")] {
        let reply = stack
            .request("/bots")
            .header("Authorization", &value)
            .send();
        assert_eq!(reply.status, 200, "{value:?}: {}", reply.text());
        let seen = stack.upstream.last();
        assert_no_credential(&seen, "authorization", &[SECRET]);
        assert_eq!(seen.headers_named("x-bcsp-key-id"), vec!["genesys-bearer"]);
    }

    let bare = SECRET.to_string();
    let basic = format!("Basic {SECRET}");
    let wrong = "Bearer k3y-WRONG-2222".to_string();
    for (case, value) in [("no-scheme", &bare), ("basic", &basic), ("wrong", &wrong)] {
        let id = rid(case);
        let reply = stack
            .request("/bots")
            .header("x-request-id", &id)
            .header("authorization", value)
            .send();
        assert_unauthenticated(&reply, &id, "authorization", &[SECRET]);
    }
    assert_eq!(stack.upstream.count(), 2);
    stack
        .envoy
        .assert_log_free_of(&[SECRET], &[&format!("Bearer {SECRET}"), "k3y-WRONG-2222"]);
}

#[test]
fn client_sent_key_id_header_is_overwritten() {
    let stack = Stack::start(&EnvoyConfig::new(one_key("real-id", SECRET)));

    let reply = stack
        .request("/bots")
        .header("x-bcsp-key-id", "forged-id")
        .header("X-BCSP-Key-Id", "forged-too")
        .header("x-bcsp-key", SECRET)
        .send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.headers_named("x-bcsp-key-id"), vec!["real-id"]);
}

#[test]
fn custom_key_id_header_name_is_used() {
    let filter = json!({ "keys": [key("k1", SECRET)], "key_id_header": "X-Caller-Key" });
    let stack = Stack::start(&EnvoyConfig::new(filter));

    let reply = stack
        .request("/bots")
        .header("x-caller-key", "forged")
        .header("x-bcsp-key", SECRET)
        .send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    let seen = stack.upstream.last();
    assert_eq!(seen.headers_named("x-caller-key"), vec!["k1"]);
    assert!(seen.headers_named("x-bcsp-key-id").is_empty());
}

/// The configured header name and the header on the wire match whatever their letter case.
#[test]
fn credential_header_in_other_letter_case_is_the_same_header() {
    let filter = json!({ "keys": [
        with(key("mixed", SECRET), json!({ "header": "X-Watson-Genesys-Verification-Token" })),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter));

    for name in [
        "x-watson-genesys-verification-token",
        "X-WATSON-GENESYS-VERIFICATION-TOKEN",
        "X-Watson-Genesys-Verification-Token",
    ] {
        let reply = stack.request("/bots").header(name, SECRET).send();
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_no_credential(
            &stack.upstream.last(),
            "x-watson-genesys-verification-token",
            &[SECRET],
        );
    }
    // The default header is not configured here, so it admits nothing.
    let id = rid("default-header");
    let reply = stack
        .request("/bots")
        .header("x-request-id", &id)
        .header("x-bcsp-key", SECRET)
        .send();
    assert_unauthenticated(
        &reply,
        &id,
        "x-watson-genesys-verification-token",
        &[SECRET],
    );
    assert_eq!(stack.upstream.count(), 3);
}

/// Every configured credential header is removed upstream, not only the one that matched.
#[test]
fn all_configured_credential_headers_are_stripped() {
    let filter = json!({ "keys": [
        key("a", SECRET),
        with(key("b", OTHER), json!({ "header": "x-other-key" })),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter));

    let reply = stack
        .request("/bots")
        .header("x-bcsp-key", SECRET)
        .header("x-other-key", "k3y-WRONG-3333")
        .send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    let seen = stack.upstream.last();
    assert_no_credential(&seen, "x-bcsp-key", &[SECRET, OTHER, "k3y-WRONG-3333"]);
    assert_no_credential(&seen, "x-other-key", &[SECRET, OTHER, "k3y-WRONG-3333"]);
    assert_eq!(seen.headers_named("x-bcsp-key-id"), vec!["a"]);
}

#[test]
fn hash_in_upper_case_hex_is_accepted() {
    let filter =
        json!({ "keys": [{ "id": "upper", "sha256": sha256_hex(SECRET).to_uppercase() }] });
    let stack = Stack::start(&EnvoyConfig::new(filter));

    let reply = stack.request("/bots").header("x-bcsp-key", SECRET).send();
    assert_eq!(reply.status, 200, "reply: {}", reply.text());
}

#[test]
fn empty_key_id_header_sets_nothing() {
    let filter = json!({ "keys": [key("quiet", SECRET)], "key_id_header": "" });
    let stack = Stack::start(&EnvoyConfig::new(filter));

    let reply = stack.request("/bots").header("x-bcsp-key", SECRET).send();

    assert_eq!(reply.status, 200, "reply: {}", reply.text());
    let seen = stack.upstream.last();
    assert!(
        seen.headers_named("x-bcsp-key-id").is_empty(),
        "{:?}",
        seen.headers
    );
    assert!(
        !seen.headers.iter().any(|(_, v)| v == "quiet"),
        "the key id reached the upstream: {:?}",
        seen.headers
    );
    assert_no_credential(&seen, "x-bcsp-key", &[SECRET]);
}
