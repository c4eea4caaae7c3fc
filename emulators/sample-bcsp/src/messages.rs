//! `POST {base}/messages`: validate a Genesys bot turn and answer it.

use http_stub::Response;
use serde_json::{json, Map, Value};

use crate::ordered::Json;

use crate::bots::{DEMO_BOT_ID, DEMO_BOT_VERSION, INTENT, SUPPORTED_LANGUAGES};
use crate::{error, reply};

/// Why a turn was refused: a Genesys `errorInfo`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: &'static str,
    pub message: String,
}

fn fail(code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// The answer to one turn: 200 with the bot's reply, or 400 with `botState: Failed`.
pub(crate) fn handle(body: &[u8], caller: Json) -> Response {
    match answer(body) {
        Ok(turn) => reply(200, turn.with("caller", caller)),
        Err(f) => error(400, f.code, &f.message, caller),
    }
}

/// The reply fields for a valid turn (without `caller`).
pub(crate) fn answer(body: &[u8]) -> Result<Json, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(fail(
            "InvalidRequest",
            "request body is empty; expected a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        fail(
            "InvalidJson",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(msg) = value else {
        return Err(fail("InvalidRequest", "request body must be a JSON object"));
    };

    let bot_id = required_str(&msg, "botId")?;
    required_str(&msg, "botSessionId")?;
    required_str(&msg, "messageId")?;
    let language = required_str(&msg, "languageCode")?;
    let bot_version = optional_str(&msg, "botVersion")?;
    optional_str(&msg, "genesysConversationId")?;
    if let Some(timeout) = msg.get("botSessionTimeout") {
        if !timeout.is_u64() {
            return Err(fail(
                "InvalidField",
                "botSessionTimeout must be a non-negative integer",
            ));
        }
    }
    if let Some(params) = msg.get("parameters") {
        if !params.is_object() {
            return Err(fail("InvalidField", "parameters must be an object"));
        }
    }
    let text = input_text(&msg)?;

    if bot_id != DEMO_BOT_ID {
        return Err(fail(
            "BotNotFound",
            format!("no bot with that botId; this BCSP hosts {DEMO_BOT_ID:?}"),
        ));
    }
    if let Some(version) = bot_version {
        if version != DEMO_BOT_VERSION {
            return Err(fail(
                "BotVersionNotFound",
                format!("{DEMO_BOT_ID} has only version {DEMO_BOT_VERSION:?}"),
            ));
        }
    }
    if !SUPPORTED_LANGUAGES
        .iter()
        .any(|l| l.eq_ignore_ascii_case(language))
    {
        return Err(fail(
            "UnsupportedLanguage",
            format!("languageCode not supported; supported: {SUPPORTED_LANGUAGES:?}"),
        ));
    }

    let state = if says_goodbye(&text) {
        "Complete"
    } else {
        "MoreData"
    };
    let reply_text = format!("You said: {text}");
    Ok(Json::object(vec![
        ("botState", Json::value(state)),
        (
            "replyMessages",
            Json::Array(vec![Json::object(vec![
                ("type", Json::value("Text")),
                ("text", Json::value(reply_text)),
            ])]),
        ),
        ("intent", Json::value(INTENT)),
        ("confidence", Json::value(1.0)),
        ("entities", Json::value(json!([]))),
        ("parameters", Json::value(json!({}))),
    ]))
}

/// The text of `inputMessage`: required for `Text`, optional for `Structured`.
fn input_text(msg: &Map<String, Value>) -> Result<String, Failure> {
    let input = match msg.get("inputMessage") {
        None | Some(Value::Null) => return Err(fail("MissingField", "inputMessage is required")),
        Some(Value::Object(input)) => input,
        Some(_) => return Err(fail("InvalidField", "inputMessage must be an object")),
    };
    let kind = match input.get("type") {
        None | Some(Value::Null) => {
            return Err(fail("MissingField", "inputMessage.type is required"))
        }
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(fail("InvalidField", "inputMessage.type must be a string")),
    };
    let text = match input.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(fail("InvalidField", "inputMessage.text must be a string")),
    };
    match kind {
        "Text" => text.ok_or_else(|| {
            fail(
                "MissingField",
                "inputMessage.text is required when type is Text",
            )
        }),
        "Structured" => {
            let items = match input.get("content") {
                None | Some(Value::Null) => 0,
                Some(Value::Array(items)) => items.len(),
                Some(_) => {
                    return Err(fail(
                        "InvalidField",
                        "inputMessage.content must be an array",
                    ))
                }
            };
            Ok(text.unwrap_or_else(|| format!("a structured message ({items} content items)")))
        }
        _ => Err(fail(
            "InvalidField",
            "inputMessage.type must be \"Text\" or \"Structured\"",
        )),
    }
}

fn required_str<'a>(msg: &'a Map<String, Value>, field: &str) -> Result<&'a str, Failure> {
    match optional_str(msg, field)? {
        Some(s) => Ok(s),
        None => Err(fail("MissingField", format!("{field} is required"))),
    }
}

/// A field that, when present and not null, must be a non-empty string.
fn optional_str<'a>(msg: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Failure> {
    match msg.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
        Some(_) => Err(fail(
            "InvalidField",
            format!("{field} must be a non-empty string"),
        )),
    }
}

/// True when the text contains the word "bye" or "goodbye" (any case).
pub(crate) fn says_goodbye(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("bye") || word.eq_ignore_ascii_case("goodbye"))
}
