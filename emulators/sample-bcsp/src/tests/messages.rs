//! `POST /messages`: replies, and 400s that name what is wrong.

use super::*;

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
