//! Identity-token bodies from the metadata server: never panics; an accepted token is
//! header-safe, JWT-shaped, within 8192 bytes, unexpired, and its `exp` is the payload's.
//! Input whose first byte is odd is used as the payload JSON itself (wrapped in a JWT), so
//! the claims parser is reached without the fuzzer having to learn base64url.
#![no_main]

use bcsp_guard::token::{base64url_encode, parse_identity_token};
use libfuzzer_sys::fuzz_target;

const NOW_S: i64 = 1_700_000_000;

/// Unpadded base64url, written out independently of the filter's decoder.
fn b64url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    if s.len() % 4 == 1 {
        return None;
    }
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for &c in s {
        bits = (bits << 6) | val(c)?;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    (bits == 0).then_some(out)
}

fn reference_exp(payload: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.as_object()?.get("exp")?.as_i64()
}

fuzz_target!(|data: &[u8]| {
    let (body, wrapped) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => (
            format!(
                "{}.{}.{}",
                base64url_encode(br#"{"alg":"RS256","typ":"JWT"}"#),
                base64url_encode(rest),
                base64url_encode(b"sig")
            )
            .into_bytes(),
            Some(rest),
        ),
        _ => (data.to_vec(), None),
    };
    let result = parse_identity_token(&body, NOW_S);
    if let Some(payload) = wrapped {
        let want = reference_exp(payload).filter(|&e| e > NOW_S && body.len() <= 8192);
        assert_eq!(result.as_ref().ok().map(|t| t.exp()), want, "{result:?}");
    }
    let Ok(token) = result else { return };
    let raw = body
        .strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(&body);
    assert_eq!(token.jwt().as_bytes(), raw);
    assert!(raw.len() <= 8192);
    assert!(raw.iter().all(|b| (0x21..=0x7e).contains(b)));
    let segments: Vec<&[u8]> = raw.split(|&b| b == b'.').collect();
    assert_eq!(segments.len(), 3);
    assert!(segments
        .iter()
        .all(|s| !s.is_empty() && b64url_decode(s).is_some()));
    let payload = b64url_decode(segments[1]).unwrap();
    assert_eq!(reference_exp(&payload), Some(token.exp()));
    assert!(token.exp() > NOW_S);
});
