//! Identity tokens as the metadata server sends them: shape, `exp` and header safety of a JWT.
//! A JWT segment is unpadded base64url ([`crate::base64`]).

use crate::base64::{self, Alphabet};
use std::fmt;

/// Largest token accepted. Google identity tokens are about 1 KB; Envoy's default limit for all
/// request headers together is 60 KB.
pub const MAX_TOKEN_LEN: usize = 8192;

/// A JWT that is safe to put in a header value and whose `exp` has been read.
/// The signature is not checked: the token comes straight from the metadata server and the
/// upstream verifies it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityToken {
    jwt: String,
    exp: i64,
}

impl IdentityToken {
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// Unix seconds.
    pub fn exp(&self) -> i64 {
        self.exp
    }
}

// By hand so that no log line or panic message can ever carry the token.
impl fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityToken")
            .field("jwt_len", &self.jwt.len())
            .field("exp", &self.exp)
            .finish()
    }
}

/// Why a metadata-server body is not a usable token. Carries no part of the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    NotUtf8,
    BadHeaderBytes,
    NotJwt,
    BadPayload,
    NoExp,
    Expired,
    TooLarge,
}

impl TokenError {
    /// A short, stable reason for logs.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::NotUtf8 => "token is not UTF-8",
            TokenError::BadHeaderBytes => "token has bytes not allowed in a header value",
            TokenError::NotJwt => "token is not three base64url segments",
            TokenError::BadPayload => "token payload is not a JSON object",
            TokenError::NoExp => "token payload has no integer exp",
            TokenError::Expired => "token is expired",
            TokenError::TooLarge => "token is larger than 8192 bytes",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TokenError {}

/// Validates a metadata-server body and reads its `exp`. Only one trailing `\n` or `\r\n` is
/// forgiven; any other whitespace is an error rather than something to trim, since a body
/// that is not exactly a token says the server sent something else.
pub fn parse_identity_token(body: &[u8], now_s: i64) -> Result<IdentityToken, TokenError> {
    let raw = body
        .strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(body);
    if raw.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    let text = std::str::from_utf8(raw).map_err(|_| TokenError::NotUtf8)?;
    if !raw.iter().all(|&b| is_header_byte(b)) {
        return Err(TokenError::BadHeaderBytes);
    }
    let payload = jwt_payload(raw).ok_or(TokenError::NotJwt)?;
    let payload = base64url_decode(payload).ok_or(TokenError::NotJwt)?;
    let exp = read_exp(&payload)?;
    if exp <= now_s {
        return Err(TokenError::Expired);
    }
    Ok(IdentityToken {
        jwt: text.to_owned(),
        exp,
    })
}

/// Whether `text` may be sent as a token: within the size limit, header-safe and JWT-shaped.
/// Cheap (no decoding), so cached records can be re-checked on every read.
pub(super) fn is_sendable_jwt(text: &[u8]) -> bool {
    text.len() <= MAX_TOKEN_LEN
        && text.iter().all(|&b| is_header_byte(b))
        && jwt_payload(text).is_some()
}

/// Visible ASCII only: no control bytes, no space, nothing a proxy could re-encode.
fn is_header_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

/// The payload segment, when `text` is exactly three non-empty, valid base64url segments.
fn jwt_payload(text: &[u8]) -> Option<&[u8]> {
    let mut segments = text.split(|&b| b == b'.');
    let header = segments.next()?;
    let payload = segments.next()?;
    let signature = segments.next()?;
    if segments.next().is_some() {
        return None;
    }
    [header, payload, signature]
        .iter()
        .all(|s| !s.is_empty() && is_base64url(s))
        .then_some(payload)
}

fn read_exp(payload: &[u8]) -> Result<i64, TokenError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| TokenError::BadPayload)?;
    let claims = value.as_object().ok_or(TokenError::BadPayload)?;
    // as_i64 is None for floats and for integers beyond i64: both are "no usable exp".
    claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or(TokenError::NoExp)
}

/// Valid unpadded base64url (see [`crate::base64`]), checked without allocating.
fn is_base64url(input: &[u8]) -> bool {
    base64::is_canonical(input, Alphabet::Url)
}

/// Decodes unpadded base64url. `None` for padding, any character outside the URL-safe
/// alphabet, an impossible length (len % 4 == 1) or non-zero unused bits in the last character.
pub fn base64url_decode(input: &[u8]) -> Option<Vec<u8>> {
    base64::decode(input, Alphabet::Url)
}

/// Encodes as unpadded base64url.
pub fn base64url_encode(input: &[u8]) -> String {
    base64::encode(input, Alphabet::Url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn jwt_with(payload: &str) -> String {
        format!(
            "{}.{}.{}",
            base64url_encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            base64url_encode(payload.as_bytes()),
            base64url_encode(b"signature-bytes")
        )
    }

    fn valid_jwt() -> String {
        jwt_with(&format!(
            r#"{{"aud":"https://bcsp.example","iat":{NOW},"exp":{}}}"#,
            NOW + 3600
        ))
    }

    /// A valid token of exactly `len` bytes: a long all-`A` signature (zero bits, so canonical)
    /// fills the space, and the payload pad moves its length off the impossible len % 4 == 1.
    fn jwt_of_len(len: usize) -> String {
        (0..4)
            .map(|pad| {
                let payload = format!(r#"{{"exp":{},"pad":"{}"}}"#, NOW + 60, "x".repeat(pad));
                let head = format!(
                    "{}.{}",
                    base64url_encode(br#"{"alg":"RS256"}"#),
                    base64url_encode(payload.as_bytes())
                );
                let sig_len = len - head.len() - 1;
                (sig_len, format!("{head}.{}", "A".repeat(sig_len)))
            })
            .find(|(sig_len, _)| sig_len % 4 != 1)
            .unwrap()
            .1
    }

    #[test]
    fn valid_token_is_accepted_with_its_exp() {
        let jwt = valid_jwt();
        let token = parse_identity_token(jwt.as_bytes(), NOW).unwrap();
        assert_eq!(token.jwt(), jwt);
        assert_eq!(token.exp(), NOW + 3600);
    }

    #[test]
    fn a_single_trailing_line_ending_is_trimmed() {
        let jwt = valid_jwt();
        for ending in ["\n", "\r\n"] {
            let token = parse_identity_token(format!("{jwt}{ending}").as_bytes(), NOW).unwrap();
            assert_eq!(token.jwt(), jwt, "ending {ending:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused_with_their_reason() {
        use TokenError::*;
        let good = valid_jwt();
        let (h, rest) = good.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let claim = |claim: &str| jwt_with(&format!(r#"{{"aud":"x",{claim}}}"#));
        let cases: Vec<(&str, String, TokenError)> = vec![
            ("empty body", String::new(), NotJwt),
            ("only a newline", "\n".into(), NotJwt),
            ("two segments", format!("{h}.{p}"), NotJwt),
            ("four segments", format!("{good}.{s}"), NotJwt),
            ("empty signature", format!("{h}.{p}."), NotJwt),
            ("empty header", format!(".{p}.{s}"), NotJwt),
            ("padding", format!("{h}.{p}.{s}=="), NotJwt),
            ("plus and slash", format!("{h}.{p}.ab+/"), NotJwt),
            ("impossible length", format!("{h}.{p}.abcde"), NotJwt),
            ("non-zero spare bits", format!("{h}.{p}.Zh"), NotJwt),
            ("payload not base64", format!("{h}.not*b64.{s}"), NotJwt),
            (
                "two trailing newlines",
                format!("{good}\n\n"),
                BadHeaderBytes,
            ),
            ("carriage return alone", format!("{good}\r"), BadHeaderBytes),
            ("leading space", format!(" {good}"), BadHeaderBytes),
            ("space inside", format!("{h}. {p}.{s}"), BadHeaderBytes),
            ("tab", format!("{good}\t"), BadHeaderBytes),
            ("NUL byte", format!("{h}.{p}\0.{s}"), BadHeaderBytes),
            ("DEL byte", format!("{good}\x7f"), BadHeaderBytes),
            ("newline inside", format!("{h}.{p}\n.{s}"), BadHeaderBytes),
            ("non-ASCII UTF-8", format!("{good}é"), BadHeaderBytes),
            ("payload not JSON", jwt_with("exp=1"), BadPayload),
            ("payload a JSON array", jwt_with("[1,2]"), BadPayload),
            ("payload a JSON number", jwt_with("1800000000"), BadPayload),
            (
                "payload truncated JSON",
                jwt_with(r#"{"exp":18"#),
                BadPayload,
            ),
            ("exp missing", claim(r#""iat":1"#), NoExp),
            ("exp a string", claim(r#""exp":"1800000000""#), NoExp),
            (
                "exp a float in exponent form",
                claim(r#""exp":1.8e9"#),
                NoExp,
            ),
            (
                "exp a float with a fraction",
                claim(r#""exp":1800000000.0"#),
                NoExp,
            ),
            ("exp null", claim(r#""exp":null"#), NoExp),
            (
                "exp beyond i64",
                claim(r#""exp":9223372036854775808"#),
                NoExp,
            ),
            ("exp only nested", claim(r#""c":{"exp":1800000000}"#), NoExp),
            ("exp negative", claim(r#""exp":-5"#), Expired),
            (
                "exp in the past",
                claim(&format!(r#""exp":{}"#, NOW - 1)),
                Expired,
            ),
            (
                "exp equal to now",
                claim(&format!(r#""exp":{NOW}"#)),
                Expired,
            ),
            ("8193 bytes", jwt_of_len(MAX_TOKEN_LEN + 1), TooLarge),
            ("huge garbage", " ".repeat(100_000), TooLarge),
        ];
        for (name, body, want) in cases {
            let got = parse_identity_token(body.as_bytes(), NOW).map(|t| t.exp());
            assert_eq!(got, Err(want), "{name}");
        }
    }

    #[test]
    fn body_that_is_not_utf8_is_refused() {
        let mut body = valid_jwt().into_bytes();
        body.insert(3, 0xff);
        assert_eq!(
            parse_identity_token(&body, NOW).unwrap_err(),
            TokenError::NotUtf8
        );
    }

    #[test]
    fn token_expiring_one_second_after_now_is_accepted() {
        let jwt = jwt_with(&format!(r#"{{"exp":{}}}"#, NOW + 1));
        assert_eq!(
            parse_identity_token(jwt.as_bytes(), NOW).unwrap().exp(),
            NOW + 1
        );
    }

    #[test]
    fn token_of_exactly_8192_bytes_is_accepted_even_with_a_newline() {
        let jwt = jwt_of_len(MAX_TOKEN_LEN);
        assert_eq!(jwt.len(), MAX_TOKEN_LEN);
        assert!(parse_identity_token(jwt.as_bytes(), NOW).is_ok());
        assert!(parse_identity_token(format!("{jwt}\r\n").as_bytes(), NOW).is_ok());
    }

    #[test]
    fn debug_and_errors_never_show_the_token() {
        let jwt = valid_jwt();
        let token = parse_identity_token(jwt.as_bytes(), NOW).unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains(&jwt) && !debug.contains(jwt.split('.').nth(1).unwrap()));
        assert!(
            debug.contains(&format!("jwt_len: {}", jwt.len())),
            "{debug}"
        );
        let expired = parse_identity_token(jwt.as_bytes(), NOW + 7200).unwrap_err();
        assert_eq!(expired.to_string(), "token is expired");
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        let vectors: [(&[u8], &str); 8] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff], "-_8"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64url_encode(plain), encoded);
            assert_eq!(
                base64url_decode(encoded.as_bytes()).as_deref(),
                Some(plain),
                "{encoded}"
            );
        }
    }

    #[test]
    fn base64url_decode_refuses_what_is_not_canonical_unpadded_base64url() {
        for bad in [
            "Zg==", "Zm8=", "Z", "Zm9vY", "Zm9v Yg", "Zm+v", "Zm/v", "Zh", "Zm9", "Zm\n9v",
        ] {
            assert_eq!(base64url_decode(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn every_error_has_a_short_reason() {
        use TokenError::*;
        for e in [
            NotUtf8,
            BadHeaderBytes,
            NotJwt,
            BadPayload,
            NoExp,
            Expired,
            TooLarge,
        ] {
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() < 60, "{text}");
        }
    }
}
