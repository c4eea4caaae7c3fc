//! Open Messaging webhooks: requests under a path prefix are authenticated by
//! `sha256=<base64(HMAC-SHA256(secret, raw body))>` instead of a key, compared in constant time.

use crate::base64::{self, Alphabet};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::{Arc, RwLock};

pub const DEFAULT_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The HMAC key, ready to sign. Debug never prints it. Clones share one key, which a host may
/// replace while it runs (a secret Envoy delivers over SDS); a pending key (none delivered
/// yet) verifies nothing, so its deliveries are refused.
#[derive(Clone)]
pub struct WebhookSecret(Arc<RwLock<Option<Hmac<Sha256>>>>);

impl WebhookSecret {
    /// `None` only if the HMAC refuses the key, which it never does for HMAC-SHA256.
    pub fn new(secret: &[u8]) -> Option<WebhookSecret> {
        Hmac::<Sha256>::new_from_slice(secret)
            .ok()
            .map(|mac| WebhookSecret(Arc::new(RwLock::new(Some(mac)))))
    }

    /// A key still to come: every delivery is refused until [`WebhookSecret::replace`].
    pub fn pending() -> WebhookSecret {
        WebhookSecret(Arc::new(RwLock::new(None)))
    }

    /// Swaps in a new key for every clone; false (and the old key kept) if the HMAC refuses it.
    pub fn replace(&self, secret: &[u8]) -> bool {
        let Ok(mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(mac);
        true
    }

    fn current(&self) -> Option<Hmac<Sha256>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `sha256=<base64>` for `body`: what a correct sender puts in the header (`sha256=` alone
    /// while the key is pending).
    pub fn sign(&self, body: &[u8]) -> String {
        let Some(mut mac) = self.current() else {
            return "sha256=".to_owned();
        };
        mac.update(body);
        format!(
            "sha256={}",
            base64::encode(&mac.finalize().into_bytes(), Alphabet::Standard)
        )
    }

    /// Constant-time check of a raw 32-byte MAC against `body`.
    fn verify(&self, body: &[u8], tag: &[u8]) -> bool {
        let Some(mut mac) = self.current() else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// Where the secret came from: logged at startup (the name of the variable, never its value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    /// An Envoy generic secret, by name (dynamic module only).
    Generic(String),
    /// An Envoy generic secret delivered (and replaced) over SDS, by name (dynamic module only).
    GenericSds(String),
    Inline,
}

#[derive(Clone, Debug)]
pub struct Webhook {
    /// A clean path; requests equal to it or below it are webhook deliveries.
    pub path_prefix: String,
    /// Lower-case header carrying the signature.
    pub header: String,
    pub secret: WebhookSecret,
    pub source: SecretSource,
}

/// Why a delivery's signature was refused (for the log; the caller sees one 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Repeated,
    /// Not `sha256=` followed by canonical base64 of 32 bytes.
    Malformed,
    Mismatch,
    /// The body was larger than `max_body_bytes`, so it was never read.
    BodyTooLarge,
}

impl SignatureError {
    pub fn describe(self) -> &'static str {
        match self {
            SignatureError::Missing => "no webhook signature header",
            SignatureError::Repeated => "webhook signature header repeated",
            SignatureError::Malformed => "webhook signature is not sha256=<base64>",
            SignatureError::Mismatch => "webhook signature does not match the body",
            SignatureError::BodyTooLarge => "webhook body over max_body_bytes, not verified",
        }
    }
}

impl Webhook {
    /// The signature header's single value, checked before any body is read.
    pub fn presented<'h>(&self, values: &[&'h str]) -> Result<&'h str, SignatureError> {
        match values {
            [] => Err(SignatureError::Missing),
            [one] => Ok(one),
            _ => Err(SignatureError::Repeated),
        }
    }

    /// Verifies `value` (the header) over the raw `body`.
    pub fn verify(&self, value: &str, body: &[u8]) -> Result<(), SignatureError> {
        let tag = value
            .trim()
            .split_once('=')
            .filter(|(alg, _)| alg.eq_ignore_ascii_case("sha256"))
            .and_then(|(_, b64)| base64::decode(b64.as_bytes(), Alphabet::Standard))
            .filter(|t| t.len() == 32)
            .ok_or(SignatureError::Malformed)?;
        if self.secret.verify(body, &tag) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(secret: &str) -> Webhook {
        Webhook {
            path_prefix: "/openmessaging".into(),
            header: DEFAULT_SIGNATURE_HEADER.into(),
            secret: WebhookSecret::new(secret.as_bytes()).unwrap(),
            source: SecretSource::Inline,
        }
    }

    #[test]
    fn signature_matches_an_independent_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let h = hook("Jefe");
        let sig = h.secret.sign(b"what do ya want for nothing?");
        let hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            sig,
            format!("sha256={}", base64::encode(&bytes, Alphabet::Standard))
        );
        assert_eq!(h.verify(&sig, b"what do ya want for nothing?"), Ok(()));
    }

    #[test]
    fn wrong_or_malformed_signatures_are_refused() {
        let h = hook("om-secret-0123456789");
        let body = br#"{"id":"m1","channel":{"platform":"Open"}}"#;
        let good = h.secret.sign(body);
        let b64 = good.trim_start_matches("sha256=");
        let hex_sig: String = base64::decode(b64.as_bytes(), Alphabet::Standard)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cases = [
            (good.clone(), Ok(())),
            (format!("SHA256={b64}"), Ok(())),
            (
                hook("other-secret-0123456").secret.sign(body),
                Err(SignatureError::Mismatch),
            ),
            (format!("sha256={hex_sig}"), Err(SignatureError::Malformed)),
            (b64.to_string(), Err(SignatureError::Malformed)),
            (format!("sha1={b64}"), Err(SignatureError::Malformed)),
            (
                format!("sha256={}", &b64[..b64.len() - 1]),
                Err(SignatureError::Malformed),
            ),
            (
                format!("sha256={}", base64::encode(&[0u8; 31], Alphabet::Standard)),
                Err(SignatureError::Malformed),
            ),
            ("sha256=".into(), Err(SignatureError::Malformed)),
        ];
        for (value, want) in cases {
            assert_eq!(h.verify(&value, body), want, "{value}");
        }
        assert_eq!(
            h.verify(&good, br#"{"id":"m1","channel":{"platform":"open"}}"#),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn one_header_value_is_required() {
        let h = hook("s");
        assert_eq!(h.presented(&[]), Err(SignatureError::Missing));
        assert_eq!(h.presented(&["a", "b"]), Err(SignatureError::Repeated));
        assert_eq!(h.presented(&["a"]), Ok("a"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let h = hook("super-secret-value");
        assert!(!format!("{h:?}").contains("super-secret"));
    }
}
