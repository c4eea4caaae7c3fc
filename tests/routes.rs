//! Only the BCSP's own endpoints: the `routes` preset, 401 before 404/405/415, and every path
//! trick, both with the connection manager settings the shipped configs use (`normalize_path`,
//! `merge_slashes`, `path_with_escaped_slashes_action: REJECT_REQUEST`) and without them.

mod harness;

use harness::*;
use serde_json::json;

const KEY: &str = "k3y-routes-suite-77b0c1";

fn envoy_config(normalize: bool) -> EnvoyConfig {
    EnvoyConfig::new(json!({
        "keys": [key("k1", KEY)],
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
    }))
    .path_normalization(normalize)
}

/// What the upstream may ever see: exactly the three endpoints (one clean `{botId}` segment).
fn is_listed(method: &str, target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    let bot_id_ok = |id: &str| {
        !id.is_empty()
            && id != "."
            && id != ".."
            && id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    };
    match (method, path) {
        ("GET", "/botconnector/bots") | ("POST", "/botconnector/messages") => true,
        ("GET", p) => p.strip_prefix("/botconnector/bots/").is_some_and(bot_id_ok),
        _ => false,
    }
}

#[test]
fn the_preset_admits_exactly_the_three_endpoints_and_401_comes_first() {
    let stack = Stack::start(&envoy_config(true));
    let get = |path: &str| stack.request(path);
    let post = |path: &str| request("POST", path).to(stack.envoy.addr());
    let json_body = r#"{"botId":"b1","inputMessage":{"type":"Text","text":"hi"}}"#;

    for r in [
        get("/botconnector/bots").header("x-bcsp-key", KEY).send(),
        get("/botconnector/bots/b-1")
            .header("x-bcsp-key", KEY)
            .send(),
        post("/botconnector/messages")
            .header("x-bcsp-key", KEY)
            .body("application/json; charset=utf-8", json_body)
            .send(),
    ] {
        assert_eq!(r.status, 200, "reply: {}", r.text());
    }

    let id = rid("404");
    let r = get("/botconnector/admin")
        .header("x-bcsp-key", KEY)
        .header("x-request-id", &id)
        .send();
    assert_eq!(r.status, 404, "reply: {}", r.text());
    assert_eq!(r.json()["error"], "not_found");
    assert_eq!(r.json()["request_id"], id.as_str());

    let r = request("DELETE", "/botconnector/bots/b-1")
        .to(stack.envoy.addr())
        .header("x-bcsp-key", KEY)
        .send();
    assert_eq!(r.status, 405, "reply: {}", r.text());
    assert_eq!(r.header("allow"), Some("GET"));
    assert_eq!(r.json()["error"], "method_not_allowed");

    let r = post("/botconnector/messages")
        .header("x-bcsp-key", KEY)
        .body("text/plain", "hi")
        .send();
    assert_eq!(r.status, 415, "reply: {}", r.text());
    assert_eq!(r.json()["error"], "unsupported_media_type");

    // Unauthenticated callers get the same 401 on every path, listed or not.
    for (method, path) in [
        ("GET", "/botconnector/bots"),
        ("GET", "/botconnector/admin"),
        ("DELETE", "/botconnector/bots"),
        ("POST", "/botconnector/messages"),
        ("GET", "/admin/../botconnector/bots"),
    ] {
        let id = rid("unauth");
        let r = request(method, path)
            .to(stack.envoy.addr())
            .header("x-bcsp-key", "k3y-WRONG")
            .header("x-request-id", &id)
            .send();
        assert_unauthenticated(&r, &id, "x-bcsp-key", &[KEY]);
    }

    let seen: Vec<(String, String)> = stack
        .upstream
        .requests()
        .into_iter()
        .map(|s| (s.method, s.target))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(m, t)| is_listed(m, t)), "{seen:?}");
    assert_eq!(stack.envoy.counter("bcsp_guard.denied.route"), 2);
    assert_eq!(stack.envoy.counter("bcsp_guard.denied.media_type"), 1);
}

const TRICKS: &[&str] = &[
    "/botconnector/bots/../admin",
    "/botconnector/bots/%2e%2e/admin",
    "/botconnector/bots/%2E%2E/admin",
    "/botconnector/bots/.%2e/admin",
    "/botconnector/bots/..%2fadmin",
    "/botconnector/bots%2f..%2fadmin",
    "/botconnector/bots%5c..%5cadmin",
    "/botconnector/bots/%252e%252e/admin",
    "/botconnector/./admin",
    "/botconnector//admin",
    "//botconnector/admin",
    "/botconnector/bots;/../admin",
    "/botconnector/bots;x=1",
    "/botconnector/messages/..;/admin",
    "/botconnector/bots/b1/..",
    "/botconnector//bots",
    "/botconnector/bots/b1%00",
    "/botconnector/bots/b1?next=/../admin",
];

/// Every trick, with a valid key: refused (filter 404, or Envoy's own 400), or normalised by
/// Envoy into a listed endpoint, which is then exactly what the upstream sees. Without a key:
/// 401 (or Envoy's 400), never a hint about which paths exist.
fn assert_no_trick_reaches_an_unlisted_path(normalize: bool) {
    let stack = Stack::start(&envoy_config(normalize));
    let mut table = Vec::new();
    for &path in TRICKS {
        let r = stack.request(path).header("x-bcsp-key", KEY).send();
        let before = stack.upstream.count();
        match r.status {
            404 => assert_eq!(r.json()["error"], "not_found", "{path}"),
            400 => {}
            200 => {}
            s => panic!("{path}: unexpected {s}: {}", r.text()),
        }
        table.push(format!("{path} -> {}", r.status));
        let unauth = stack.request(path).send();
        assert!(
            matches!(unauth.status, 401 | 400),
            "{path} without a key: {} {}",
            unauth.status,
            unauth.text()
        );
        assert_eq!(
            stack.upstream.count(),
            before,
            "{path}: unauthenticated reached the upstream"
        );
    }
    eprintln!("normalize_path={normalize}:\n  {}", table.join("\n  "));
    for s in stack.upstream.requests() {
        assert!(
            is_listed(&s.method, &s.target),
            "normalize_path={normalize}: the upstream saw {} {}",
            s.method,
            s.target
        );
    }
}

#[test]
fn no_path_trick_reaches_an_unlisted_path_with_the_shipped_normalisation() {
    assert_no_trick_reaches_an_unlisted_path(true);
}

#[test]
fn no_path_trick_reaches_an_unlisted_path_even_without_normalisation() {
    assert_no_trick_reaches_an_unlisted_path(false);
}
