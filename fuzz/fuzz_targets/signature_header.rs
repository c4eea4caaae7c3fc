//! Open Messaging webhook signatures: any secret, header value and body. Never panics, the
//! signer agrees with an independent HMAC-SHA256, and a value is accepted exactly when it is
//! `sha256=` (any case) and the one canonical base64 of that MAC, with surrounding whitespace.
#![no_main]

use bcsp_guard::policy::webhook::{SecretSource, SignatureError, Webhook, WebhookSecret};
use bcsp_guard_fuzz::fields;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

fn base64_standard(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [secret, value, body] = fields(data, 3)[..] else {
        return;
    };
    let hook = Webhook {
        path_prefix: "/openmessaging".into(),
        header: "x-hub-signature-256".into(),
        secret: WebhookSecret::new(secret).expect("HMAC takes any key"),
        source: SecretSource::Inline,
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    let want = base64_standard(&mac.finalize().into_bytes());
    assert_eq!(hook.secret.sign(body), format!("sha256={want}"));
    assert_eq!(hook.verify(&hook.secret.sign(body), body), Ok(()));

    let value = String::from_utf8_lossy(value);
    let got = hook.verify(&value, body);
    let ok = value
        .trim()
        .split_once('=')
        .is_some_and(|(alg, rest)| alg.eq_ignore_ascii_case("sha256") && rest == want);
    assert_eq!(got.is_ok(), ok, "{value:?}");
    if let Err(e) = got {
        assert!(matches!(
            e,
            SignatureError::Malformed | SignatureError::Mismatch
        ));
    }
    let values: Vec<&str> = value.split('\n').collect();
    match hook.presented(&values) {
        Ok(one) => assert_eq!(values, [one]),
        Err(e) => assert_eq!(e, SignatureError::Repeated),
    }
});
