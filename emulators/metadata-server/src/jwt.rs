//! JWT-shaped tokens: minting fake ones and reading claims back (no signatures).

use crate::json::{self, Value};

const HEADER: &str = r#"{"alg":"RS256","kid":"emulator","typ":"JWT"}"#;
const ISSUER: &str = "https://accounts.google.com";
/// The identity the emulated VM's default service account has.
pub(crate) const SA_EMAIL: &str = "bcsp-guard-emulator@emulator.iam.gserviceaccount.com";
pub(crate) const SA_ID: &str = "100000000000000000001";

/// The claims tests care about, decoded from a token's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// Empty when the token has none (real Google tokens carry no `jti`).
    pub jti: String,
}

/// What a minted token says.
pub(crate) struct Mint<'a> {
    pub(crate) audience: &'a str,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) serial: u64,
    /// `format=full` adds `email_verified`, as the real server does.
    pub(crate) full: bool,
}

pub(crate) fn mint(m: &Mint) -> String {
    let mut payload = format!(
        r#"{{"aud":{},"azp":{},"email":{},"#,
        json::quote(m.audience),
        json::quote(SA_ID),
        json::quote(SA_EMAIL)
    );
    if m.full {
        payload.push_str(r#""email_verified":true,"#);
    }
    payload.push_str(&format!(
        r#""exp":{},"iat":{},"iss":{},"jti":{},"sub":{}}}"#,
        m.exp,
        m.iat,
        json::quote(ISSUER),
        json::quote(&format!("emulator-{}", m.serial)),
        json::quote(SA_ID)
    ));
    format!(
        "{}.{}.{}",
        b64url(HEADER.as_bytes()),
        b64url(payload.as_bytes()),
        b64url(&fake_signature(m.serial))
    )
}

/// Decodes a token's payload; no signature check. `None` unless it has
/// three segments and a JSON payload with string `aud` and integer `iat`/`exp`.
pub fn decode_claims(jwt: &str) -> Option<Claims> {
    let mut parts = jwt.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = b64url_decode(payload)?;
    let members = json::parse_object(std::str::from_utf8(&bytes).ok()?)?;
    let find = |k: &str| members.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let (Some(Value::Str(aud)), Some(Value::Int(iat)), Some(Value::Int(exp))) =
        (find("aud"), find("iat"), find("exp"))
    else {
        return None;
    };
    let jti = match find("jti") {
        Some(Value::Str(j)) => j.clone(),
        _ => String::new(),
    };
    Some(Claims {
        aud: aud.clone(),
        iat: *iat,
        exp: *exp,
        jti,
    })
}

/// 32 bytes that look random and differ per token (splitmix64).
fn fake_signature(serial: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = serial ^ 0x5EED_0FE1_A70B_5E00;
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 7515 §2).
pub(crate) fn b64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * k) & 63) as usize]));
        }
    }
    out
}

/// Base64url, padding optional; `None` on any other byte.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_all_lengths() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        for len in 0..70u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(b64url_decode(&b64url(&data)).as_deref(), Some(&data[..]));
        }
        assert_eq!(b64url_decode("Zg=="), Some(b"f".to_vec()));
        assert_eq!(b64url_decode("Z"), None);
        assert_eq!(b64url_decode("Zm+v"), None);
    }

    #[test]
    fn minted_token_has_expected_shape() {
        let t = mint(&Mint {
            audience: "https://a.run.app",
            iat: 100,
            exp: 3700,
            serial: 7,
            full: true,
        });
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(b64url_decode(parts[0]).as_deref(), Some(HEADER.as_bytes()));
        assert_eq!(b64url_decode(parts[2]).map(|s| s.len()), Some(32));
        let payload = String::from_utf8(b64url_decode(parts[1]).expect("payload")).expect("utf8");
        assert!(payload.contains(r#""iss":"https://accounts.google.com""#));
        assert!(payload.contains(r#""email_verified":true"#));
        assert_eq!(
            decode_claims(&t),
            Some(Claims {
                aud: "https://a.run.app".into(),
                iat: 100,
                exp: 3700,
                jti: "emulator-7".into()
            })
        );
    }

    #[test]
    fn decode_rejects_non_tokens() {
        assert_eq!(decode_claims("not a token"), None);
        assert_eq!(decode_claims("a.b"), None);
        assert_eq!(decode_claims("a.b.c.d"), None);
        let no_exp = format!("x.{}.y", b64url(br#"{"aud":"a","iat":1}"#));
        assert_eq!(decode_claims(&no_exp), None);
        let no_jti = format!("x.{}.y", b64url(br#"{"aud":"a","iat":1,"exp":2}"#));
        assert_eq!(decode_claims(&no_jti).map(|c| c.jti), Some(String::new()));
    }
}
