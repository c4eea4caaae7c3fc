//! Webhook signatures and base64.

use super::*;

fn hook(secret: &[u8]) -> Webhook {
    Webhook {
        path_prefix: "/openmessaging".into(),
        header: "x-hub-signature-256".into(),
        secret: WebhookSecret::new(secret).unwrap(),
        source: SecretSource::Inline,
    }
}

fn reference_mac(secret: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The documented rule: `sha256=` in any case, then the canonical base64 of 32 bytes,
/// surrounding whitespace ignored; the right MAC or `Mismatch`, anything else `Malformed`.
fn reference_verify(value: &str, mac: &[u8]) -> Result<(), SignatureError> {
    let tag = value
        .trim()
        .split_once('=')
        .filter(|(alg, _)| alg.eq_ignore_ascii_case("sha256"))
        .and_then(|(_, t)| ref_b64_decode(t.as_bytes(), B64_STD, true))
        .filter(|t| t.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    if tag == mac {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Clone, Debug)]
enum SigValue {
    Good(&'static str, &'static str, &'static str),
    Mutated(Index, char, u8),
    OtherBody,
    Hex,
    Random(String),
}

fn sig_value() -> impl Strategy<Value = SigValue> {
    let ws = select(&["", " ", "\t", "\n", "\u{a0}", "\u{2003}"][..]);
    prop_oneof![
        2 => (select(&["sha256", "SHA256", "Sha256", "sha-256", "sha1", ""][..]), ws.clone(), ws)
            .prop_map(|(a, l, r)| SigValue::Good(a, l, r)),
        3 => (any::<Index>(), prop_oneof![select(&['=', '+', '/', 'A', 'B', 'a', 'Q', ' ', '\0', 'é'][..]), any::<char>()], 0u8..3)
            .prop_map(|(i, c, op)| SigValue::Mutated(i, c, op)),
        1 => Just(SigValue::OtherBody),
        1 => Just(SigValue::Hex),
        1 => "\\PC{0,60}".prop_map(SigValue::Random),
    ]
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Signatures agree with an independent HMAC-SHA256 + base64; any header value is
    /// accepted exactly when the reference accepts it, refused as the reference says, and
    /// parsing never panics.
    #[test]
    fn webhook_signature_header_parsing(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 0..200),
        value in sig_value(),
    ) {
        let h = hook(&secret);
        let mac = reference_mac(&secret, &body);
        let good = format!("sha256={}", ref_b64_encode(&mac, B64_STD, true));
        prop_assert_eq!(h.secret.sign(&body), good.clone());
        let text = match value {
            SigValue::Good(alg, l, r) => format!("{l}{alg}={}{r}", &good[7..]),
            SigValue::Mutated(at, c, op) => {
                let mut chars: Vec<char> = good.chars().collect();
                let i = at.index(chars.len() + 1);
                match op {
                    0 if i < chars.len() => chars[i] = c,
                    1 => chars.insert(i, c),
                    _ => { chars.truncate(i); }
                }
                chars.into_iter().collect()
            }
            SigValue::OtherBody => hook(&secret).secret.sign(b"another body"),
            SigValue::Hex => format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            SigValue::Random(s) => s,
        };
        prop_assert_eq!(h.verify(&text, &body), reference_verify(&text, &mac), "{:?}", text);
    }

    /// Standard base64 (padded) and base64url (unpadded) against the reference, both ways.
    #[test]
    fn base64_agrees_with_reference(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        text in prop_oneof!["[A-Za-z0-9+/=_-]{0,24}", "\\PC{0,16}"],
    ) {
        prop_assert_eq!(b64::encode(&bytes, Alphabet::Standard), ref_b64_encode(&bytes, B64_STD, true));
        prop_assert_eq!(b64::encode(&bytes, Alphabet::Url), ref_b64_encode(&bytes, B64_URL, false));
        prop_assert_eq!(b64::decode(text.as_bytes(), Alphabet::Standard), ref_b64_decode(text.as_bytes(), B64_STD, true), "{:?}", text);
        prop_assert_eq!(b64::decode(text.as_bytes(), Alphabet::Url), ref_b64_decode(text.as_bytes(), B64_URL, false), "{:?}", text);
    }
}
