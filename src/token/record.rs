//! The two records every worker shares through proxy-wasm shared data: the cached token and
//! the fetch state (lease, backoff). Owns their byte encodings, which are strict on decode.
//!
//! Encodings are ASCII, `;`-separated, start with a tag that names record and version, and
//! end with `;`. A fixed field count plus the terminator means any truncation is refused:
//!   `T1;<exp_s>;<refresh_at_ms>;<fetched_at_ms>;<jwt>;`
//!   `F1;<next_attempt_ms>;<failures>;<holder>:<until_ms> or -;`

use std::fmt;

use sha2::{Digest, Sha256};

use super::jwt::{is_sendable_jwt, IdentityToken};
use super::schedule::{refresh_at_ms, usable, Timing};

/// The prefix of every shared-data key one plugin configuration uses. Shared data belongs to
/// a `vm_id`, not to a plugin, and proxy-wasm offers no way to list its keys: naming the
/// plugin's root id and a digest of its whole configuration (which holds the key hashes)
/// keeps another plugin of the same `vm_id` from finding, reading or rewriting these records
/// unless it holds the same configuration. A new configuration starts with fresh records.
pub fn namespace(root_id: &str, config: &[u8]) -> String {
    let root: String = root_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest: String = Sha256::digest(config)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("bcsp_guard.v2.{root}.{digest}")
}

/// Where records live when no namespace was set (tests and single-plugin hosts).
pub const DEFAULT_NAMESPACE: &str = "bcsp_guard.v1";

/// A token as cached for all workers, with the times that drive its refresh.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub exp_s: i64,
    pub refresh_at_ms: u64,
    pub fetched_at_ms: u64,
    jwt: String,
}

impl CachedToken {
    pub fn new(token: &IdentityToken, fetched_at_ms: u64, t: &Timing) -> CachedToken {
        CachedToken {
            exp_s: token.exp(),
            refresh_at_ms: refresh_at_ms(fetched_at_ms, token.exp(), t),
            fetched_at_ms,
            jwt: token.jwt().to_owned(),
        }
    }

    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// Whether the token may be sent at `now_ms` (see `schedule::usable`).
    pub fn usable(&self, now_ms: u64, t: &Timing) -> bool {
        usable(now_ms, self.exp_s, t)
    }

    /// Whether this token should overwrite `current` in the cache. Two fetches only overlap
    /// when a lease expired under a slow fetcher; the later `exp` wins, so a slow answer
    /// cannot replace a fresher token.
    pub fn supersedes(&self, current: Option<&CachedToken>) -> bool {
        current.is_none_or(|c| self.exp_s >= c.exp_s)
    }

    pub fn encode(&self) -> Vec<u8> {
        format!(
            "T1;{};{};{};{};",
            self.exp_s, self.refresh_at_ms, self.fetched_at_ms, self.jwt
        )
        .into_bytes()
    }

    /// `None` for anything not written by `encode`. The JWT is re-checked (shape, size, header
    /// bytes) because it goes straight into a request header.
    pub fn decode(bytes: &[u8]) -> Option<CachedToken> {
        let mut fields = fields(bytes, b"T1")?;
        let exp_s = parse_i64(fields.next()?)?;
        let refresh_at_ms = parse_u64(fields.next()?)?;
        let fetched_at_ms = parse_u64(fields.next()?)?;
        let jwt = fields.next()?;
        if fields.next().is_some() || !is_sendable_jwt(jwt) {
            return None;
        }
        Some(CachedToken {
            exp_s,
            refresh_at_ms,
            fetched_at_ms,
            jwt: std::str::from_utf8(jwt).ok()?.to_owned(),
        })
    }
}

// By hand so that the JWT never reaches a log line.
impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("exp_s", &self.exp_s)
            .field("refresh_at_ms", &self.refresh_at_ms)
            .field("fetched_at_ms", &self.fetched_at_ms)
            .field("jwt_len", &self.jwt.len())
            .finish()
    }
}

/// Who may fetch and when: the single-flight lease and the failure backoff.
/// An absent record means `FetchState::default()`: no lease, no backoff.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FetchState {
    pub lease: Option<Lease>,
    pub next_attempt_ms: u64,
    pub failures: u32,
}

/// The right to fetch, held by one worker until `until_ms` (unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub until_ms: u64,
}

impl FetchState {
    pub fn encode(&self) -> Vec<u8> {
        let lease = self.lease.map_or_else(
            || "-".to_owned(),
            |l| format!("{}:{}", l.holder, l.until_ms),
        );
        format!("F1;{};{};{};", self.next_attempt_ms, self.failures, lease).into_bytes()
    }

    /// `None` for anything not written by `encode`.
    pub fn decode(bytes: &[u8]) -> Option<FetchState> {
        let mut fields = fields(bytes, b"F1")?;
        let next_attempt_ms = parse_u64(fields.next()?)?;
        let failures = u32::try_from(parse_u64(fields.next()?)?).ok()?;
        let lease = match fields.next()? {
            b"-" => None,
            lease => {
                let (holder, until) = split_once(lease, b':')?;
                Some(Lease {
                    holder: parse_u64(holder)?,
                    until_ms: parse_u64(until)?,
                })
            }
        };
        if fields.next().is_some() {
            return None;
        }
        Some(FetchState {
            lease,
            next_attempt_ms,
            failures,
        })
    }
}

/// The fields after `tag`, once the record's tag and terminator are checked.
fn fields<'a>(bytes: &'a [u8], tag: &[u8]) -> Option<impl Iterator<Item = &'a [u8]>> {
    let body = bytes.strip_suffix(b";")?;
    let mut fields = body.split(|&b| b == b';');
    (fields.next()? == tag).then_some(fields)
}

fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == sep)?;
    Some((bytes.get(..at)?, bytes.get(at + 1..)?))
}

/// Canonical decimal only (no sign, no leading zero), so each value has one encoding.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Canonical decimal with an optional `-` (never `-0`).
fn parse_i64(text: &[u8]) -> Option<i64> {
    match text.strip_prefix(b"-") {
        Some(magnitude) => {
            let m = parse_u64(magnitude)?;
            if m == 0 {
                return None;
            }
            i64::try_from(-i128::from(m)).ok()
        }
        None => i64::try_from(parse_u64(text)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::jwt::{base64url_encode, parse_identity_token};
    use super::*;

    #[test]
    fn namespace_names_the_root_id_and_the_whole_configuration() {
        let a = namespace("bcsp_guard", br#"{"keys":[1]}"#);
        assert!(a.starts_with("bcsp_guard.v2.bcsp_guard."), "{a}");
        assert_eq!(a.len(), "bcsp_guard.v2.bcsp_guard.".len() + 32);
        assert_eq!(a, namespace("bcsp_guard", br#"{"keys":[1]}"#));
        assert_ne!(a, namespace("bcsp_guard", br#"{"keys":[2]}"#));
        assert_ne!(a, namespace("other", br#"{"keys":[1]}"#));
        // A root id cannot add key separators of its own.
        assert!(namespace("a.b;c", b"").starts_with("bcsp_guard.v2.a_b_c."));
        assert_ne!(a, DEFAULT_NAMESPACE);
    }

    const NOW_MS: u64 = 1_700_000_000_000;

    fn token(exp_s: i64) -> IdentityToken {
        let jwt = format!(
            "{}.{}.{}",
            base64url_encode(br#"{"alg":"RS256"}"#),
            base64url_encode(format!(r#"{{"exp":{exp_s}}}"#).as_bytes()),
            base64url_encode(b"sig")
        );
        parse_identity_token(jwt.as_bytes(), 0).unwrap()
    }

    fn cached() -> CachedToken {
        CachedToken::new(&token(1_700_003_600), NOW_MS, &Timing::default())
    }

    #[test]
    fn new_token_record_computes_its_refresh_time() {
        let c = cached();
        assert_eq!(c.exp_s, 1_700_003_600);
        assert_eq!(c.fetched_at_ms, NOW_MS);
        assert_eq!(c.refresh_at_ms, NOW_MS + 3_300_000);
        assert_eq!(c.jwt(), token(1_700_003_600).jwt());
    }

    #[test]
    fn token_record_round_trips() {
        let mut c = cached();
        assert_eq!(CachedToken::decode(&c.encode()), Some(c.clone()));
        (c.exp_s, c.refresh_at_ms, c.fetched_at_ms) = (i64::MIN, u64::MAX, 0);
        assert_eq!(CachedToken::decode(&c.encode()), Some(c.clone()));
        c.exp_s = i64::MAX;
        assert_eq!(CachedToken::decode(&c.encode()), Some(c));
    }

    #[test]
    fn token_record_is_compact_ascii() {
        let c = cached();
        let bytes = c.encode();
        assert!(bytes.iter().all(|b| (0x21..=0x7e).contains(b)));
        assert!(bytes.len() <= c.jwt().len() + 60, "{}", bytes.len());
        assert!(bytes.starts_with(b"T1;1700003600;1700003300000;1700000000000;"));
    }

    #[test]
    fn fetch_state_round_trips() {
        let states = [
            FetchState::default(),
            FetchState {
                lease: None,
                next_attempt_ms: 17,
                failures: 3,
            },
            FetchState {
                lease: Some(Lease {
                    holder: 0,
                    until_ms: 0,
                }),
                next_attempt_ms: 0,
                failures: 0,
            },
            FetchState {
                lease: Some(Lease {
                    holder: u64::MAX,
                    until_ms: u64::MAX,
                }),
                next_attempt_ms: u64::MAX,
                failures: u32::MAX,
            },
        ];
        for s in states {
            assert_eq!(FetchState::decode(&s.encode()), Some(s.clone()), "{s:?}");
        }
        assert_eq!(FetchState::default().encode(), b"F1;0;0;-;");
    }

    #[test]
    fn every_truncation_of_a_record_is_refused() {
        let state = FetchState {
            lease: Some(Lease {
                holder: 12345,
                until_ms: NOW_MS,
            }),
            next_attempt_ms: NOW_MS,
            failures: 2,
        }
        .encode();
        for len in 0..state.len() {
            assert_eq!(FetchState::decode(&state[..len]), None, "{len}");
        }
        let token = cached().encode();
        for len in 0..token.len() {
            assert_eq!(CachedToken::decode(&token[..len]), None, "{len}");
        }
    }

    #[test]
    fn malformed_fetch_states_are_refused() {
        let bad: &[&[u8]] = &[
            b"",
            b";",
            b"F1",
            b"F1;",
            b"F1;0;0;-",
            b"F1;0;0;-;;",
            b"F1;0;0;;",
            b"F2;0;0;-;",
            b"f1;0;0;-;",
            b"T1;0;0;-;",
            b"F1;00;0;-;",
            b"F1;+1;0;-;",
            b"F1;-1;0;-;",
            b"F1; 1;0;-;",
            b"F1;1;4294967296;-;",
            b"F1;18446744073709551616;0;-;",
            b"F1;0;0;5;",
            b"F1;0;0;5:;",
            b"F1;0;0;:5;",
            b"F1;0;0;5:6:7;",
            b"F1;0;0;-:5;",
            b"F1;0;0;-;-;",
            b"F1;0;0;-;\n",
            b"F1;0;0;-;x",
        ];
        for bytes in bad {
            assert_eq!(
                FetchState::decode(bytes),
                None,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn malformed_token_records_are_refused() {
        let jwt = cached().jwt().to_owned();
        let bad = [
            format!("T1;1;2;3;{jwt}"),
            format!("T2;1;2;3;{jwt};"),
            format!("F1;1;2;3;{jwt};"),
            format!("T1;1;2;{jwt};"),
            format!("T1;1;2;3;4;{jwt};"),
            format!("T1;-0;2;3;{jwt};"),
            format!("T1;01;2;3;{jwt};"),
            format!("T1;1;-2;3;{jwt};"),
            format!("T1;9223372036854775808;2;3;{jwt};"),
            format!("T1;-9223372036854775809;2;3;{jwt};"),
            "T1;1;2;3;;".to_owned(),
            format!("T1;1;2;3;{jwt}.x;"),
            format!("T1;1;2;3;{jwt} ;"),
            format!("T1;1;2;3;{jwt}=;"),
            "T1;1;2;3;a.b;".to_owned(),
            format!("T1;1;2;3;{};", "A".repeat(9000)),
        ];
        for text in &bad {
            assert_eq!(CachedToken::decode(text.as_bytes()), None, "{text}");
        }
        assert!(
            CachedToken::decode(format!("T1;-9223372036854775808;2;3;{jwt};").as_bytes()).is_some()
        );
    }

    #[test]
    fn debug_of_a_record_shows_the_token_length_only() {
        let c = cached();
        let debug = format!("{c:?}");
        assert!(!debug.contains(c.jwt()) && debug.contains(&format!("jwt_len: {}", c.jwt().len())));
    }

    #[test]
    fn usable_follows_exp_and_skew() {
        let c = cached();
        let t = Timing::default();
        assert!(c.usable(NOW_MS + 3_570_000 - 1, &t));
        assert!(!c.usable(NOW_MS + 3_570_000, &t));
    }

    #[test]
    fn a_later_exp_supersedes_and_an_earlier_one_does_not() {
        let t = Timing::default();
        let old = CachedToken::new(&token(1_700_000_100), NOW_MS, &t);
        let new = CachedToken::new(&token(1_700_003_600), NOW_MS, &t);
        assert!(new.supersedes(None));
        assert!(new.supersedes(Some(&old)));
        assert!(new.supersedes(Some(&new)));
        assert!(!old.supersedes(Some(&new)));
    }
}
