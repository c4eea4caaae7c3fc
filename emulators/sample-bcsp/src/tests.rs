//! Handler tests: requests are built in memory and handed to `App::handle_at`.

use std::net::{Ipv4Addr, SocketAddr};

use http_stub::{Request, Response};
use serde_json::{json, Value};

use crate::caller::bearer_jwt_claims;
use crate::messages::says_goodbye;
use crate::{log_line, App};

const NOW: u64 = 1_700_000_000;
const AUD: &str = "https://bcsp-demo.a.run.app";

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Request {
    Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
        trailers: Vec::new(),
        peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
    }
}

fn app() -> App {
    match App::new("/botconnector") {
        Ok(app) => app,
        Err(e) => panic!("default base path refused: {e}"),
    }
}

fn call(req: &Request) -> (u16, Value) {
    let resp = app().handle_at(req, NOW);
    (resp.status, body_json(&resp))
}

fn body_json(resp: &Response) -> Value {
    match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&resp.body)
        ),
    }
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn jwt(payload: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(payload.to_string().as_bytes()),
        b64url(b"not-a-real-signature-but-base64url")
    )
}

fn demo_token() -> String {
    jwt(&json!({"aud": AUD, "exp": NOW + 1800, "iat": NOW - 1800, "sub": "123"}))
}

fn message(text: &str) -> String {
    json!({
        "botId": "demo-bot",
        "botVersion": "1",
        "botSessionId": "s-1",
        "messageId": "m-1",
        "inputMessage": {"type": "Text", "text": text},
        "languageCode": "en-us",
        "botSessionTimeout": 60,
        "genesysConversationId": "c-1",
        "parameters": {},
    })
    .to_string()
}

fn post_message(body: &str) -> (u16, Value) {
    call(&request(
        "POST",
        "/botconnector/messages",
        &[("content-type", "application/json")],
        body,
    ))
}

/// Asserts a 400 Genesys failure with `code`, and returns its message.
fn assert_failed(body: &str, code: &str) -> String {
    let (status, reply) = post_message(body);
    assert_eq!(status, 400, "{body} -> {reply}");
    assert_eq!(reply["botState"], "Failed", "{reply}");
    assert_eq!(reply["errorInfo"]["errorCode"], code, "{body} -> {reply}");
    assert!(reply["caller"].is_object(), "{reply}");
    match reply["errorInfo"]["errorMessage"].as_str() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => panic!("no errorMessage in {reply}"),
    }
}

// ---- routing -------------------------------------------------------------------------

#[test]
fn healthz_answers_200() {
    let (status, body) = call(&request("GET", "/healthz", &[], ""));
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[test]
fn lists_the_demo_bot_in_the_genesys_shape() {
    let (status, body) = call(&request("GET", "/botconnector/bots", &[], ""));
    assert_eq!(status, 200);
    let bots = body["entities"].as_array().cloned().unwrap_or_default();
    assert_eq!(bots.len(), 1, "{body}");
    let bot = &bots[0];
    assert_eq!(bot["id"], "demo-bot");
    assert!(bot["name"].is_string() && bot["description"].is_string());
    assert_eq!(
        bot["versions"],
        json!([{
            "version": "1",
            "supportedLanguages": ["en-us"],
            "intents": [{"name": "Greeting", "entities": []}],
        }])
    );
    assert!(body["caller"].is_object(), "{body}");
}

#[test]
fn gets_one_bot_and_404s_an_unknown_one() {
    let (status, body) = call(&request("GET", "/botconnector/bots/demo-bot", &[], ""));
    assert_eq!(status, 200);
    assert_eq!(body["id"], "demo-bot");
    assert_eq!(body["versions"][0]["version"], "1");
    assert!(body["caller"].is_object());

    let (status, body) = call(&request("GET", "/botconnector/bots/nope", &[], ""));
    assert_eq!(status, 404);
    assert_eq!(body["errorInfo"]["errorCode"], "BotNotFound");
}

#[test]
fn query_strings_and_a_trailing_slash_on_bots_are_fine() {
    assert_eq!(
        call(&request("GET", "/botconnector/bots?x=1", &[], "")).0,
        200
    );
    assert_eq!(call(&request("GET", "/botconnector/bots/", &[], "")).0, 200);
}

#[test]
fn unknown_paths_are_404_with_a_hint() {
    for target in [
        "/",
        "/bots",
        "/botconnector",
        "/botconnectorx/bots",
        "/botconnector/bots/demo-bot/extra",
        "/botconnector/message",
    ] {
        let (status, body) = call(&request("GET", target, &[], ""));
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["errorInfo"]["errorCode"], "NotFound", "{target}");
        let hint = body["errorInfo"]["errorMessage"].as_str().unwrap_or("");
        assert!(hint.contains("/botconnector/messages"), "{hint}");
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    for (method, target, allow) in [
        ("POST", "/botconnector/bots", "GET, HEAD"),
        ("DELETE", "/botconnector/bots/demo-bot", "GET, HEAD"),
        ("GET", "/botconnector/messages", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ] {
        let resp = app().handle_at(&request(method, target, &[], ""), NOW);
        assert_eq!(resp.status, 405, "{method} {target}");
        assert!(
            resp.headers.iter().any(|(n, v)| n == "allow" && v == allow),
            "{:?}",
            resp.headers
        );
        assert_eq!(body_json(&resp)["botState"], "Failed");
    }
}

#[test]
fn base_path_is_configurable_and_normalised() {
    let ok = |p: &str| match App::new(p) {
        Ok(app) => app,
        Err(e) => panic!("{p}: {e}"),
    };
    let custom = ok("/v2/genesys/");
    assert_eq!(custom.base_path(), "/v2/genesys");
    let get = |app: &App, target: &str| app.handle_at(&request("GET", target, &[], ""), NOW);
    assert_eq!(get(&custom, "/v2/genesys/bots").status, 200);
    assert_eq!(get(&custom, "/botconnector/bots").status, 404);

    let root = ok("/");
    assert_eq!(root.base_path(), "/");
    assert_eq!(get(&root, "/bots").status, 200);
    assert_eq!(get(&root, "/bots/demo-bot").status, 200);
    assert_eq!(get(&root, "/healthz").status, 200);

    for bad in ["", "botconnector", "/a b", "/a?b", "/a//b", "/a#b"] {
        assert!(App::new(bad).is_err(), "{bad:?} accepted");
    }
}

// ---- caller identity -----------------------------------------------------------------

#[test]
fn without_identity_the_caller_is_empty() {
    let (_, body) = call(&request("GET", "/botconnector/bots", &[], ""));
    assert_eq!(
        body["caller"],
        json!({
            "key_id": null,
            "token": {"present": false, "header": null, "aud": null, "exp": null, "seconds_left": null},
            "credential_headers_seen": [],
        })
    );
}

#[test]
fn reports_the_key_id_and_the_decoded_token_but_never_the_token() {
    let token = demo_token();
    let bearer = format!("Bearer {token}");
    let req = request(
        "POST",
        "/botconnector/messages",
        &[
            ("x-bcsp-key-id", "demo-genesys"),
            ("authorization", &bearer),
        ],
        &message("hello"),
    );
    let resp = app().handle_at(&req, NOW);
    assert_eq!(resp.status, 200);
    let body = body_json(&resp);
    assert_eq!(
        body["caller"],
        json!({
            "key_id": "demo-genesys",
            "token": {"present": true, "header": "authorization", "aud": AUD,
                      "exp": NOW + 1800, "seconds_left": 1800},
            "credential_headers_seen": [],
        })
    );
    let raw = String::from_utf8_lossy(&resp.body);
    for (i, segment) in token.split('.').enumerate() {
        assert!(!raw.contains(segment), "token segment {i} echoed: {raw}");
    }
    let line = log_line(&req, &resp);
    assert!(!line.contains(&token), "{line}");
    assert!(
        line.contains("demo-genesys") && line.contains("200"),
        "{line}"
    );
}

#[test]
fn an_expired_token_shows_negative_seconds_left() {
    let token = jwt(&json!({"aud": AUD, "exp": NOW - 5}));
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[("authorization", &format!("bearer {token}"))],
        "",
    ));
    assert_eq!(body["caller"]["token"]["seconds_left"], -5);
}

#[test]
fn x_serverless_authorization_wins_like_on_cloud_run() {
    let serverless = jwt(&json!({"aud": "https://serverless", "exp": NOW + 60}));
    let plain = jwt(&json!({"aud": AUD, "exp": NOW + 30}));
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[
            ("authorization", &format!("Bearer {plain}")),
            (
                "x-serverless-authorization",
                &format!("Bearer {serverless}"),
            ),
        ],
        "",
    ));
    let token = &body["caller"]["token"];
    assert_eq!(token["header"], "x-serverless-authorization");
    assert_eq!(token["aud"], "https://serverless");
    assert_eq!(token["seconds_left"], 60);
    assert_eq!(body["caller"]["credential_headers_seen"], json!([]));
}

#[test]
fn an_audience_list_is_reported_as_a_list() {
    let token = jwt(&json!({"aud": ["a", "b"], "exp": NOW}));
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    ));
    assert_eq!(body["caller"]["token"]["aud"], json!(["a", "b"]));
    assert_eq!(body["caller"]["token"]["seconds_left"], 0);
}

#[test]
fn leaked_credentials_are_named_but_their_values_never_echoed() {
    let secret = "demo-secret-change-me";
    let static_bearer = "Bearer static-genesys-secret";
    let req = request(
        "GET",
        "/botconnector/bots",
        &[
            ("x-bcsp-key", secret),
            ("authorization", static_bearer),
            ("x-serverless-authorization", "Basic dXNlcjpwYXNz"),
            ("x-watson-genesys-verification-token", "watson-secret"),
        ],
        "",
    );
    let resp = app().handle_at(&req, NOW);
    let body = body_json(&resp);
    assert_eq!(
        body["caller"]["credential_headers_seen"],
        json!([
            "x-bcsp-key",
            "x-watson-genesys-verification-token",
            "x-serverless-authorization",
            "authorization"
        ])
    );
    assert_eq!(body["caller"]["token"]["present"], false);
    let raw = String::from_utf8_lossy(&resp.body);
    let line = log_line(&req, &resp);
    for value in [
        secret,
        "static-genesys-secret",
        "dXNlcjpwYXNz",
        "watson-secret",
    ] {
        assert!(!raw.contains(value), "{value} echoed in {raw}");
        assert!(!line.contains(value), "{value} logged in {line}");
    }
}

#[test]
fn a_jwt_next_to_a_static_authorization_is_still_reported() {
    let token = demo_token();
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[
            ("authorization", "Bearer static"),
            ("authorization", &format!("Bearer {token}")),
        ],
        "",
    ));
    assert_eq!(body["caller"]["token"]["present"], true);
    assert_eq!(
        body["caller"]["credential_headers_seen"],
        json!(["authorization"])
    );
}

#[test]
fn several_key_ids_are_all_shown() {
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[
            ("x-bcsp-key-id", "forged"),
            ("x-bcsp-key-id", "demo-genesys"),
        ],
        "",
    ));
    assert_eq!(body["caller"]["key_id"], json!(["forged", "demo-genesys"]));
}

#[test]
fn only_bearer_jwts_count_as_tokens() {
    let good = demo_token();
    assert!(bearer_jwt_claims(&format!("Bearer {good}")).is_some());
    assert!(bearer_jwt_claims(&format!("BEARER  {good} ")).is_some());
    let (h, p, _) = {
        let mut it = good.split('.');
        (
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
        )
    };
    for bad in [
        good.clone(),
        format!("Basic {good}"),
        format!("Bearer {h}.{p}"),
        format!("Bearer {h}.{p}."),
        format!("Bearer {h}.{p}.sig.extra"),
        format!("Bearer {h}.!!!.sig"),
        format!("Bearer {h}.{}.sig", b64url(b"[1,2]")),
        format!("Bearer {}.{p}.sig", b64url(b"not json")),
        "Bearer".to_string(),
        "Bearer opaque-token".to_string(),
    ] {
        assert!(bearer_jwt_claims(&bad).is_none(), "{bad}");
    }
}

// ---- POST /messages ------------------------------------------------------------------

#[test]
fn a_text_message_gets_a_reply() {
    let (status, body) = post_message(&message("hello there"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["botState"], "MoreData");
    assert_eq!(
        body["replyMessages"],
        json!([{"type": "Text", "text": "You said: hello there"}])
    );
    assert_eq!(body["intent"], "Greeting");
    assert_eq!(body["confidence"], 1.0);
    assert_eq!(body["entities"], json!([]));
    assert_eq!(body["parameters"], json!({}));
    assert!(body["caller"].is_object());
    assert!(body.get("errorInfo").is_none());
}

#[test]
fn goodbye_completes_the_session() {
    for text in ["Goodbye!", "ok bye", "BYE", "thanks, bye-bye"] {
        let (status, body) = post_message(&message(text));
        assert_eq!(status, 200);
        assert_eq!(body["botState"], "Complete", "{text}");
    }
    for text in ["maybe", "byelaw", "goodbyes", ""] {
        assert!(!says_goodbye(text), "{text}");
    }
}

#[test]
fn only_the_required_fields_are_needed() {
    let body = json!({
        "botId": "demo-bot", "botSessionId": "s", "messageId": "m",
        "inputMessage": {"type": "Text", "text": "hi"}, "languageCode": "en-US",
    });
    assert_eq!(post_message(&body.to_string()).0, 200);
}

#[test]
fn structured_messages_are_answered() {
    let body = json!({
        "botId": "demo-bot", "botSessionId": "s", "messageId": "m", "languageCode": "en-us",
        "inputMessage": {"type": "Structured", "content": [{"contentType": "ButtonResponse"}]},
    });
    let (status, reply) = post_message(&body.to_string());
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["replyMessages"][0]["text"],
        "You said: a structured message (1 content items)"
    );
}

#[test]
fn malformed_bodies_are_400_invalid_json() {
    for body in ["{", "{\"botId\":", "not json", "{\"a\":1}}", "\u{0}"] {
        assert_failed(body, "InvalidJson");
    }
    let mut bytes = message("hi").into_bytes();
    bytes.push(0xff);
    let resp = app().handle_at(
        &Request {
            body: bytes,
            ..request("POST", "/botconnector/messages", &[], "")
        },
        NOW,
    );
    assert_eq!(resp.status, 400);
    assert_eq!(body_json(&resp)["errorInfo"]["errorCode"], "InvalidJson");
}

#[test]
fn empty_and_non_object_bodies_are_400_invalid_request() {
    for body in ["", "  \n", "[]", "\"text\"", "42", "null"] {
        assert_failed(body, "InvalidRequest");
    }
}

#[test]
fn each_missing_required_field_is_named() {
    let full = json!({
        "botId": "demo-bot", "botSessionId": "s", "messageId": "m",
        "inputMessage": {"type": "Text", "text": "hi"}, "languageCode": "en-us",
    });
    for field in [
        "botId",
        "botSessionId",
        "messageId",
        "inputMessage",
        "languageCode",
    ] {
        let mut body = full.clone();
        if let Some(map) = body.as_object_mut() {
            map.remove(field);
        }
        let msg = assert_failed(&body.to_string(), "MissingField");
        assert!(msg.contains(field), "{field}: {msg}");
        if let Some(map) = body.as_object_mut() {
            map.insert(field.to_string(), Value::Null);
        }
        assert_failed(&body.to_string(), "MissingField");
    }
    for input in [json!({"text": "hi"}), json!({"type": "Text"})] {
        let mut body = full.clone();
        body["inputMessage"] = input;
        assert_failed(&body.to_string(), "MissingField");
    }
}

#[test]
fn wrongly_typed_fields_are_400_invalid_field() {
    let full = json!({
        "botId": "demo-bot", "botSessionId": "s", "messageId": "m",
        "inputMessage": {"type": "Text", "text": "hi"}, "languageCode": "en-us",
    });
    for (field, value) in [
        ("botId", json!(7)),
        ("botId", json!("")),
        ("botSessionId", json!(["s"])),
        ("messageId", json!({})),
        ("languageCode", json!(true)),
        ("botVersion", json!(1)),
        ("genesysConversationId", json!(1)),
        ("botSessionTimeout", json!("60")),
        ("botSessionTimeout", json!(-1)),
        ("parameters", json!([])),
        ("inputMessage", json!("hi")),
        ("inputMessage", json!({"type": "Audio", "text": "hi"})),
        ("inputMessage", json!({"type": 1, "text": "hi"})),
        ("inputMessage", json!({"type": "Text", "text": 5})),
        ("inputMessage", json!({"type": "Structured", "content": {}})),
    ] {
        let mut body = full.clone();
        body[field] = value.clone();
        let msg = assert_failed(&body.to_string(), "InvalidField");
        let named = field.split('.').next().unwrap_or(field);
        assert!(msg.contains(named), "{field}={value}: {msg}");
    }
}

#[test]
fn unknown_bot_version_or_language_are_400() {
    let mut body: Value = match serde_json::from_str(&message("hi")) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    body["botId"] = json!("other-bot");
    assert_failed(&body.to_string(), "BotNotFound");
    body["botId"] = json!("demo-bot");
    body["botVersion"] = json!("2");
    assert_failed(&body.to_string(), "BotVersionNotFound");
    body["botVersion"] = json!("1");
    body["languageCode"] = json!("fr-fr");
    assert_failed(&body.to_string(), "UnsupportedLanguage");
}

#[test]
fn failures_still_report_the_caller() {
    let token = demo_token();
    let (status, body) = call(&request(
        "POST",
        "/botconnector/messages",
        &[
            ("x-bcsp-key-id", "demo-genesys"),
            ("authorization", &format!("Bearer {token}")),
        ],
        "{oops",
    ));
    assert_eq!(status, 400);
    assert_eq!(body["caller"]["key_id"], "demo-genesys");
    assert_eq!(body["caller"]["token"]["aud"], AUD);
}

// ---- logging -------------------------------------------------------------------------

#[test]
fn log_lines_name_method_path_key_and_status_only() {
    let req = request(
        "GET",
        "/botconnector/bots?secret=query",
        &[("x-bcsp-key-id", "demo-genesys")],
        "",
    );
    let resp = app().handle_at(&req, NOW);
    assert_eq!(
        log_line(&req, &resp),
        "sample-bcsp: GET /botconnector/bots key_id=demo-genesys -> 200"
    );
    let anon = request("GET", "/nope", &[("x-bcsp-key-id", "a\nb")], "");
    let resp = app().handle_at(&anon, NOW);
    assert_eq!(
        log_line(&anon, &resp),
        "sample-bcsp: GET /nope key_id=a\\nb -> 404"
    );
}

#[test]
fn replies_read_in_a_natural_order() {
    let resp = app().handle_at(
        &request("POST", "/botconnector/messages", &[], &message("hi")),
        NOW,
    );
    let raw = String::from_utf8_lossy(&resp.body);
    assert!(
        raw.starts_with(r#"{"botState":"MoreData","replyMessages":"#),
        "{raw}"
    );
    assert!(
        raw.contains(r#","caller":{"key_id":null,"token":{"present":false,"#),
        "{raw}"
    );
    let resp = app().handle_at(&request("GET", "/botconnector/bots", &[], ""), NOW);
    let raw = String::from_utf8_lossy(&resp.body);
    assert!(
        raw.starts_with(r#"{"entities":[{"id":"demo-bot","name":"#),
        "{raw}"
    );
    let resp = app().handle_at(&request("POST", "/botconnector/messages", &[], "{"), NOW);
    let raw = String::from_utf8_lossy(&resp.body);
    assert!(
        raw.starts_with(r#"{"botState":"Failed","errorInfo":{"errorCode":"InvalidJson","#),
        "{raw}"
    );
}
