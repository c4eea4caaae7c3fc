//! Which identity reached us: the key id bcsp-guard set, the identity token's decoded
//! audience and expiry, and the names of any credential headers that should have been
//! stripped on the way. Header values other than the key id are never copied out.

use http_stub::Request;
use serde_json::{Map, Value};

use crate::base64url;
use crate::ordered::Json;

/// Set by bcsp-guard to the id of the key that matched.
pub const KEY_ID_HEADER: &str = "x-bcsp-key-id";

/// Headers that may carry the identity token, in the order Cloud Run checks them:
/// when `x-serverless-authorization` is present it is the one verified.
const TOKEN_HEADERS: [&str; 2] = ["x-serverless-authorization", "authorization"];

/// Static credential headers a Genesys integration sends; bcsp-guard must strip them.
const STATIC_CREDENTIAL_HEADERS: [&str; 2] = ["x-bcsp-key", "x-watson-genesys-verification-token"];

/// The `caller` object.
pub(crate) fn report(req: &Request, now: u64) -> Json {
    let key_ids = req.headers_named(KEY_ID_HEADER);
    let key_id = match key_ids.as_slice() {
        [] => Value::Null,
        [one] => Value::from(*one),
        // Several values means something upstream appended instead of replacing: show all.
        many => Value::from(many.to_vec()),
    };

    let mut token: Option<(&str, Map<String, Value>)> = None;
    let mut seen: Vec<&str> = Vec::new();
    for name in STATIC_CREDENTIAL_HEADERS {
        if req.header(name).is_some() {
            seen.push(name);
        }
    }
    for name in TOKEN_HEADERS {
        for value in req.headers_named(name) {
            match bearer_jwt_claims(value) {
                Some(claims) if token.is_none() => token = Some((name, claims)),
                Some(_) => {}
                None => {
                    if !seen.contains(&name) {
                        seen.push(name);
                    }
                }
            }
        }
    }

    Json::object(vec![
        ("key_id", Json::value(key_id)),
        ("token", token_report(token, now)),
        ("credential_headers_seen", Json::value(seen)),
    ])
}

fn token_report(token: Option<(&str, Map<String, Value>)>, now: u64) -> Json {
    let Some((header, claims)) = token else {
        return Json::object(vec![
            ("present", Json::value(false)),
            ("header", Json::value(Value::Null)),
            ("aud", Json::value(Value::Null)),
            ("exp", Json::value(Value::Null)),
            ("seconds_left", Json::value(Value::Null)),
        ]);
    };
    let aud = match claims.get("aud") {
        Some(aud @ (Value::String(_) | Value::Array(_))) => aud.clone(),
        _ => Value::Null,
    };
    let exp = claims.get("exp").and_then(Value::as_i64);
    let seconds_left = exp.map(|exp| exp.saturating_sub(i64::try_from(now).unwrap_or(i64::MAX)));
    Json::object(vec![
        ("present", Json::value(true)),
        ("header", Json::value(header)),
        ("aud", Json::value(aud)),
        ("exp", Json::value(exp)),
        ("seconds_left", Json::value(seconds_left)),
    ])
}

/// The claims of `Bearer <JWT>`, if the value is exactly that: three base64url segments
/// whose header and payload are JSON objects. The signature is not checked.
pub(crate) fn bearer_jwt_claims(value: &str) -> Option<Map<String, Value>> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut parts = token.trim().split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || signature.is_empty() || base64url::decode(signature).is_none() {
        return None;
    }
    json_object(header)?;
    json_object(payload)
}

fn json_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = base64url::decode(segment)?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}
