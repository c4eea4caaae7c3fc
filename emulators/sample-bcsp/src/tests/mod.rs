//! Handler tests: requests are built in memory and handed to `App::handle_at`; one module per
//! concern, the request and token builders here.

mod caller;
mod logging;
mod messages;
mod routing;

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

/// Base64url without padding, as JWT segments are written.
fn base64url_unpadded(bytes: &[u8]) -> String {
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

fn jwt_with_fake_signature(payload: &Value) -> String {
    format!(
        "{}.{}.{}",
        base64url_unpadded(br#"{"alg":"RS256","typ":"JWT"}"#),
        base64url_unpadded(payload.to_string().as_bytes()),
        base64url_unpadded(b"not-a-real-signature-but-base64url")
    )
}

fn demo_token() -> String {
    jwt_with_fake_signature(
        &json!({"aud": AUD, "exp": NOW + 1800, "iat": NOW - 1800, "sub": "123"}),
    )
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
