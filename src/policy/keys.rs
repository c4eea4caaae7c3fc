//! Hashed credentials, their validity windows, and the constant-time match of a request's
//! credential headers against them. Secrets are hashed once on arrival and never kept.

use super::names::{NameIndex, Spelling};
use sha2::{Digest, Sha256};
use std::fmt;

/// A key's public name: 1–64 chars of `[A-Za-z0-9._-]`, safe to log and to send upstream.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(s: &str) -> Option<KeyId> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        ok.then(|| KeyId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// The SHA-256 of a secret. Debug never prints it: hashes of short secrets can be brute-forced.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// 64 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<SecretHash> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let hi = hex_val(*pair.first()?)?;
            let lo = hex_val(*pair.get(1)?)?;
            *o = (hi << 4) | lo;
        }
        Some(SecretHash(out))
    }

    pub fn of(secret: &[u8]) -> SecretHash {
        SecretHash(Sha256::digest(secret).into())
    }

    /// Constant time: the loop always runs over all 32 bytes, and the optimizer cannot
    /// short-circuit through `black_box`.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `not_before <= now < not_after`, in Unix milliseconds; open ends are unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub not_before_ms: Option<i64>,
    pub not_after_ms: Option<i64>,
}

impl Window {
    pub fn contains(&self, now_ms: i64) -> bool {
        self.not_before_ms.is_none_or(|nb| nb <= now_ms)
            && self.not_after_ms.is_none_or(|na| now_ms < na)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub id: KeyId,
    /// Index into [`KeySet::headers`].
    pub header: usize,
    /// When set, the header value must be `<scheme> <secret>`.
    pub scheme: Option<String>,
    pub hash: SecretHash,
    pub window: Window,
    /// The identity-token audience for requests this key admits (`upstream_token` default
    /// otherwise).
    pub audience: Option<String>,
}

/// All keys, and the distinct lower-case header names they are read from.
#[derive(Clone, Debug)]
pub struct KeySet {
    headers: Vec<String>,
    pub keys: Vec<Key>,
    /// `headers`, searchable per request header without a pass over every name.
    index: NameIndex,
    /// Per header, the indices of the keys read from it, in configuration order.
    by_header: Vec<Vec<usize>>,
}

/// What the credential headers of one request amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyMatch<'k> {
    Valid(&'k Key),
    /// No configured credential header was present.
    Missing,
    /// A configured credential header appeared more than once.
    Duplicate,
    /// A secret matched, but only keys outside their window.
    OutsideWindow(&'k Key),
    Invalid,
}

impl KeySet {
    /// `headers` are the distinct credential header names; `keys[].header` indexes them.
    pub fn new(headers: Vec<String>, keys: Vec<Key>) -> KeySet {
        let index = NameIndex::new(Spelling::CaseOnly, headers.iter().map(String::as_str));
        let mut by_header: Vec<Vec<usize>> = vec![Vec::new(); headers.len()];
        for (ki, k) in keys.iter().enumerate() {
            if let Some(list) = by_header.get_mut(k.header) {
                list.push(ki);
            }
        }
        KeySet {
            headers,
            keys,
            index,
            by_header,
        }
    }

    /// The credential header names, in configuration order.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// `headers` are the request's headers; names are compared case-insensitively.
    pub fn check<'k>(&'k self, headers: &[(&str, &str)], now_ms: i64) -> KeyMatch<'k> {
        // The configured headers this request carries (usually one), each with its value.
        let mut present: Vec<(usize, &str)> = Vec::with_capacity(2);
        for (name, value) in headers {
            let Some(i) = self.index.find(name) else {
                continue;
            };
            if present.iter().any(|(j, _)| *j == i) {
                return KeyMatch::Duplicate;
            }
            present.push((i, *value));
        }
        if present.is_empty() {
            return KeyMatch::Missing;
        }
        // Each header is hashed at most twice (whole value; after the scheme), whatever the
        // number of keys, and every key read from a presented header is compared, so timing
        // does not reveal which one matched. Keys of absent headers cannot match and cost
        // nothing; of several matches, the one configured first wins.
        let mut valid: Option<usize> = None;
        let mut outside: Option<usize> = None;
        for (i, value) in present {
            let mut whole: Option<SecretHash> = None;
            let mut after_scheme: Option<Option<SecretHash>> = None;
            for &ki in self.by_header.get(i).map_or(&[][..], Vec::as_slice) {
                let Some(key) = self.keys.get(ki) else {
                    continue;
                };
                let presented = match &key.scheme {
                    None => whole
                        .get_or_insert_with(|| SecretHash::of(value.as_bytes()))
                        .clone(),
                    Some(scheme) => {
                        if !scheme_matches(value, scheme) {
                            continue;
                        }
                        let h = after_scheme.get_or_insert_with(|| {
                            split_scheme(value).map(|(_, s)| SecretHash::of(s.as_bytes()))
                        });
                        let Some(h) = h.clone() else { continue };
                        h
                    }
                };
                if key.hash.ct_eq(&presented) {
                    let slot = if key.window.contains(now_ms) {
                        &mut valid
                    } else {
                        &mut outside
                    };
                    *slot = Some(slot.map_or(ki, |v| v.min(ki)));
                }
            }
        }
        let pick = |i: Option<usize>| i.and_then(|i| self.keys.get(i));
        match (pick(valid), pick(outside)) {
            (Some(k), _) => KeyMatch::Valid(k),
            (None, Some(k)) => KeyMatch::OutsideWindow(k),
            (None, None) => KeyMatch::Invalid,
        }
    }
}

/// `<scheme> SP+ <secret>`; the secret must be non-empty and is taken verbatim.
fn split_scheme(value: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = value.split_once(' ')?;
    let secret = rest.trim_start_matches(' ');
    (!scheme.is_empty() && !secret.is_empty()).then_some((scheme, secret))
}

fn scheme_matches(value: &str, scheme: &str) -> bool {
    split_scheme(value).is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_hash(secret: &str) -> SecretHash {
        SecretHash::of(secret.as_bytes())
    }

    fn key(id: &str, header: usize, scheme: Option<&str>, secret: &str, window: Window) -> Key {
        Key {
            id: KeyId::parse(id).unwrap(),
            header,
            scheme: scheme.map(str::to_owned),
            hash: secret_hash(secret),
            window,
            audience: None,
        }
    }

    fn set() -> KeySet {
        KeySet::new(
            vec!["x-bcsp-key".into(), "authorization".into()],
            vec![
                key(
                    "old",
                    0,
                    None,
                    "s-old",
                    Window {
                        not_before_ms: None,
                        not_after_ms: Some(1000),
                    },
                ),
                key(
                    "new",
                    0,
                    None,
                    "s-new",
                    Window {
                        not_before_ms: Some(500),
                        not_after_ms: None,
                    },
                ),
                key("bearer", 1, Some("Bearer"), "s-bearer", Window::default()),
            ],
        )
    }

    fn id<'a>(m: &KeyMatch<'a>) -> Option<&'a str> {
        match m {
            KeyMatch::Valid(k) | KeyMatch::OutsideWindow(k) => Some(k.id.as_str()),
            _ => None,
        }
    }

    #[test]
    fn windows_are_inclusive_at_start_and_exclusive_at_end() {
        let w = Window {
            not_before_ms: Some(500),
            not_after_ms: Some(1000),
        };
        assert!(!w.contains(499));
        assert!(w.contains(500));
        assert!(w.contains(999));
        assert!(!w.contains(1000));
        assert!(Window::default().contains(i64::MIN));
    }

    #[test]
    fn outcomes_by_header_set_and_time() {
        let s = set();
        type Case<'a> = (&'a [(&'a str, &'a str)], i64, &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (&[("x-bcsp-key", "s-old")], 0, "valid", Some("old")),
            (&[("x-bcsp-key", "s-old")], 1000, "outside", Some("old")),
            (&[("x-bcsp-key", "s-new")], 499, "outside", Some("new")),
            (&[("x-bcsp-key", "s-new")], 500, "valid", Some("new")),
            (&[("X-BCSP-Key", "s-new")], 700, "valid", Some("new")),
            (&[("x-bcsp-key", "wrong")], 700, "invalid", None),
            (&[("x-bcsp-key", "s-new ")], 700, "invalid", None),
            (&[("x-bcsp-key", "")], 700, "invalid", None),
            (&[("other", "s-new")], 700, "missing", None),
            (&[], 700, "missing", None),
            (
                &[("x-bcsp-key", "s-new"), ("x-bcsp-key", "s-new")],
                700,
                "duplicate",
                None,
            ),
            (
                &[("x-bcsp-key", "nope"), ("X-Bcsp-Key", "s-new")],
                700,
                "duplicate",
                None,
            ),
            (
                &[("authorization", "Bearer s-bearer")],
                0,
                "valid",
                Some("bearer"),
            ),
            (
                &[("authorization", "bearer s-bearer")],
                0,
                "valid",
                Some("bearer"),
            ),
            (
                &[("authorization", "Bearer   s-bearer")],
                0,
                "valid",
                Some("bearer"),
            ),
            (&[("authorization", "s-bearer")], 0, "invalid", None),
            (&[("authorization", "Basic s-bearer")], 0, "invalid", None),
            (&[("authorization", "Bearer")], 0, "invalid", None),
            (&[("authorization", "Bearer ")], 0, "invalid", None),
            (&[("authorization", "Bearers-bearer")], 0, "invalid", None),
            // A wrong value in one header does not spoil a valid key in another.
            (
                &[("authorization", "Bearer x"), ("x-bcsp-key", "s-new")],
                700,
                "valid",
                Some("new"),
            ),
        ];
        for (headers, now, want, want_id) in cases {
            let m = s.check(headers, *now);
            let got = match m {
                KeyMatch::Valid(_) => "valid",
                KeyMatch::Missing => "missing",
                KeyMatch::Duplicate => "duplicate",
                KeyMatch::OutsideWindow(_) => "outside",
                KeyMatch::Invalid => "invalid",
            };
            assert_eq!((got, id(&m)), (*want, *want_id), "{headers:?} at {now}");
        }
    }

    #[test]
    fn sixty_four_keys_each_with_its_own_header() {
        let headers: Vec<String> = (1..=64).map(|i| format!("x-bcsp-key-{i:02}")).collect();
        let keys = (1..=64)
            .map(|i| {
                key(
                    &format!("k{i}"),
                    i - 1,
                    None,
                    &format!("s{i}"),
                    Window::default(),
                )
            })
            .collect();
        let s = KeySet::new(headers, keys);
        let req = [("host", "h"), ("X-Bcsp-Key-64", "s64"), ("accept", "*/*")];
        assert_eq!(id(&s.check(&req, 0)), Some("k64"));
        // Another key's secret under this header is no key at all.
        assert_eq!(s.check(&[("x-bcsp-key-64", "s63")], 0), KeyMatch::Invalid);
        assert_eq!(
            s.check(&[("x-bcsp-key-64", "s64"), ("X-BCSP-KEY-64", "s64")], 0),
            KeyMatch::Duplicate
        );
        assert_eq!(s.check(&[("x-bcsp-key-65", "s64")], 0), KeyMatch::Missing);
        assert_eq!(s.check(&[("x_bcsp_key_64", "s64")], 0), KeyMatch::Missing);
    }

    #[test]
    fn a_valid_key_wins_over_one_outside_its_window_with_the_same_secret() {
        let s = KeySet::new(
            vec!["x-bcsp-key".into()],
            vec![
                key(
                    "a",
                    0,
                    None,
                    "same",
                    Window {
                        not_before_ms: None,
                        not_after_ms: Some(10),
                    },
                ),
                key("b", 0, None, "same", Window::default()),
            ],
        );
        assert_eq!(id(&s.check(&[("x-bcsp-key", "same")], 50)), Some("b"));
    }

    #[test]
    fn hex_hashes_parse_in_either_case_and_nothing_else() {
        let lower = secret_hash("x").to_hex();
        assert_eq!(SecretHash::from_hex(&lower), Some(secret_hash("x")));
        assert_eq!(
            SecretHash::from_hex(&lower.to_uppercase()),
            Some(secret_hash("x"))
        );
        assert_eq!(SecretHash::from_hex(&lower[..63]), None);
        assert_eq!(SecretHash::from_hex(&format!("{lower}0")), None);
        assert_eq!(
            SecretHash::from_hex(&lower.replacen('0', "g", 1).replacen('a', "g", 1)),
            None
        );
        assert_eq!(SecretHash::from_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn key_ids_follow_the_documented_alphabet() {
        assert!(KeyId::parse("genesys-2026q4.a_b").is_some());
        assert!(KeyId::parse(&"a".repeat(64)).is_some());
        for bad in ["", " a", "a b", "a/b", "ключ", &"a".repeat(65)] {
            assert!(KeyId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_hash() {
        let k = key("a", 0, None, "secret", Window::default());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&secret_hash("secret").to_hex()[..16]));
        assert!(dbg.contains("SecretHash(..)"));
    }
}
