//! The credential decision: never admits without a matching valid key.

use super::client_ip::{downstream, joined, reference_xff, xff_values, XffValues};
use super::*;

const BASE_MS: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z
const KEY_HEADERS: &[&str] = &["x-bcsp-key", "authorization", "x-api-key"];
const SCHEMES: &[Option<&str>] = &[None, Some("Bearer"), Some("Token")];
pub(super) const SECRETS: &[&str] = &[
    "s3cret",
    "other-secret",
    "tok en",
    "Bearer s3cret",
    "ünï",
    "x",
];
const ALLOW_POOL: &[(&str, RefNet)] = &[
    ("10.0.0.0/8", RefNet::V4(0x0a00_0000, 8)),
    ("2001:db8::/32", RefNet::V6(0x2001_0db8 << 96, 32)),
    ("192.0.2.1", RefNet::V4(0xc000_0201, 32)),
    ("::ffff:198.51.100.0/120", RefNet::V4(0xc633_6400, 24)),
    ("::/0", RefNet::V6(0, 0)),
];

#[derive(Clone, Debug)]
pub(super) struct GenKey {
    pub(super) header: usize,
    pub(super) scheme: Option<&'static str>,
    pub(super) secret: &'static str,
    not_before: Option<i64>,
    not_after: Option<i64>,
}

/// `BASE_MS + off` as RFC 3339, in UTC or at +01:00 (written out here, not by the filter).
fn stamp(off: i64, plus_one: bool) -> String {
    let ms = 8 * 3_600_000 + off + if plus_one { 3_600_000 } else { 0 };
    format!(
        "2027-01-15T{:02}:{:02}:{:02}.{:03}{}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000,
        if plus_one { "+01:00" } else { "Z" }
    )
}

fn gen_key() -> impl Strategy<Value = GenKey> {
    (
        0..KEY_HEADERS.len(),
        select(SCHEMES),
        select(SECRETS),
        prop::option::of(-3000i64..3000),
        prop::option::of(-3000i64..3000),
    )
        .prop_map(|(header, scheme, secret, nb, na)| {
            let (not_before, not_after) = match (nb, na) {
                (Some(b), Some(a)) if b == a => (Some(b), None),
                (Some(b), Some(a)) => (Some(b.min(a)), Some(b.max(a))),
                other => other,
            };
            GenKey {
                header,
                scheme,
                secret,
                not_before,
                not_after,
            }
        })
}

/// A header value: some key's credential (scheme in any case, spaces or tabs), a bare secret,
/// another scheme, or junk.
#[derive(Clone, Debug)]
enum GenValue {
    KeyCredential(Index, u8, &'static str),
    Secret(&'static str),
    Scheme(&'static str, &'static str, usize),
    Junk(String),
}

fn gen_value() -> impl Strategy<Value = GenValue> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>(), select(&[" ", " ", "  ", "   ", " \t", "\t", "\t "][..]))
            .prop_map(|(i, c, s)| GenValue::KeyCredential(i, c, s)),
        2 => select(SECRETS).prop_map(GenValue::Secret),
        1 => (select(&["Bearer", "bearer", "Token", "Basic", "Bearer\t", "Bearer \t", "token\t "][..]), select(SECRETS), 0usize..3)
            .prop_map(|(sc, s, n)| GenValue::Scheme(sc, s, n)),
        1 => "[ -~]{0,12}".prop_map(GenValue::Junk),
    ]
}

fn mixed_case(s: &str, mask: u8) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 8) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[derive(Clone, Debug)]
pub(super) struct DecisionCase {
    pub(super) keys: Vec<GenKey>,
    allow: Option<Vec<usize>>,
    hops: Option<u8>,
    pub(super) downstream: (Option<String>, Result<IpAddr, Unknown>),
    xff: XffValues,
    /// (name index into KEY_HEADERS + extras, letter-case mask, value)
    headers: Vec<(usize, u8, GenValue)>,
    now: (i64, Option<Index>),
    plus_one: bool,
}

pub(super) fn decision_case() -> impl Strategy<Value = DecisionCase> {
    (
        prop::collection::vec(gen_key(), 1..5),
        prop::option::of(prop::collection::vec(0..ALLOW_POOL.len(), 1..3)),
        prop::option::of(1u8..4),
        downstream(),
        xff_values(),
        prop::collection::vec((0..KEY_HEADERS.len() + 2, any::<u8>(), gen_value()), 0..6),
        (-3500i64..3500, prop::option::weighted(0.3, any::<Index>())),
        any::<bool>(),
    )
        .prop_map(
            |(keys, allow, hops, downstream, xff, headers, now, plus_one)| DecisionCase {
                keys,
                allow,
                hops,
                downstream,
                xff,
                headers,
                now,
                plus_one,
            },
        )
}

impl DecisionCase {
    pub(super) fn policy(&self) -> Policy {
        compile(self.document().to_string().as_bytes()).expect("generated policy compiles")
    }

    /// The policy as a JSON document, for callers that add to it.
    pub(super) fn document(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut o = json!({
                    "id": format!("key-{i}"),
                    "header": mixed_case(KEY_HEADERS[k.header], i as u8 * 37),
                    "sha256": sha256_hex(k.secret.as_bytes()),
                });
                if let Some(s) = k.scheme {
                    o["scheme"] = s.into();
                }
                if let Some(b) = k.not_before {
                    o["not_before"] = stamp(b, self.plus_one).into();
                }
                if let Some(a) = k.not_after {
                    o["not_after"] = stamp(a, !self.plus_one).into();
                }
                o
            })
            .collect();
        let mut doc = json!({ "keys": keys });
        if let Some(allow) = &self.allow {
            doc["allow_cidrs"] = allow
                .iter()
                .map(|&i| ALLOW_POOL[i].0)
                .collect::<Vec<_>>()
                .into();
        }
        if let Some(n) = self.hops {
            doc["client_ip"] = json!({"from": "x-forwarded-for", "trusted_hops": n});
        }
        doc
    }

    pub(super) fn now_ms(&self) -> i64 {
        let boundaries: Vec<i64> = self
            .keys
            .iter()
            .flat_map(|k| [k.not_before, k.not_after])
            .flatten()
            .collect();
        match self.now.1 {
            Some(i) if !boundaries.is_empty() => BASE_MS + boundaries[i.index(boundaries.len())],
            _ => BASE_MS + self.now.0,
        }
    }

    pub(super) fn headers(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, mask, value) in &self.headers {
            let name = match *name {
                i if i < KEY_HEADERS.len() => KEY_HEADERS[i],
                i if i == KEY_HEADERS.len() => "x-bcsp-key-id",
                _ => "other",
            };
            let value = match value {
                GenValue::KeyCredential(i, case, separator) => {
                    let k = &self.keys[i.index(self.keys.len())];
                    match k.scheme {
                        None => k.secret.to_owned(),
                        Some(s) => format!("{}{separator}{}", mixed_case(s, *case), k.secret),
                    }
                }
                GenValue::Secret(s) => (*s).to_owned(),
                GenValue::Scheme(sc, s, n) => format!("{sc}{}{s}", " ".repeat(*n)),
                GenValue::Junk(j) => j.clone(),
            };
            out.push((mixed_case(name, *mask), value));
        }
        for (i, v) in joined(&self.xff).into_iter().enumerate() {
            let name = if i % 2 == 0 {
                "x-forwarded-for"
            } else {
                "X-Forwarded-For"
            };
            out.insert(i.min(out.len()), (name.to_owned(), v));
        }
        out
    }

    /// The documented verdict: `Ok(key index)` or the denial.
    pub(super) fn reference(
        &self,
        headers: &[(String, String)],
        now: i64,
    ) -> Result<usize, DenyReason> {
        if let Some(allow) = &self.allow {
            let client = match self.hops {
                None => self.downstream.1,
                Some(n) => reference_xff(&self.xff, usize::from(n)),
            };
            match client {
                Err(u) => return Err(DenyReason::ClientUnknown(u)),
                Ok(ip) if !allow.iter().any(|&i| ALLOW_POOL[i].1.contains(ip)) => {
                    return Err(DenyReason::ClientNotAllowed)
                }
                Ok(_) => {}
            }
        }
        let values = |h: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let used: Vec<&str> = self.keys.iter().map(|k| KEY_HEADERS[k.header]).collect();
        if used.iter().any(|h| values(h).len() > 1) {
            return Err(DenyReason::DuplicateHeader);
        }
        if used.iter().all(|h| values(h).is_empty()) {
            return Err(DenyReason::MissingKey);
        }
        let matching: Vec<usize> = (0..self.keys.len())
            .filter(|&i| {
                let k = &self.keys[i];
                values(KEY_HEADERS[k.header])
                    .first()
                    .is_some_and(|v| presents(v, k.scheme, k.secret))
            })
            .collect();
        let open = |k: &GenKey| {
            k.not_before.is_none_or(|b| BASE_MS + b <= now)
                && k.not_after.is_none_or(|a| now < BASE_MS + a)
        };
        if let Some(&i) = matching.iter().find(|&&i| open(&self.keys[i])) {
            return Ok(i);
        }
        Err(if matching.is_empty() {
            DenyReason::InvalidKey
        } else {
            DenyReason::KeyOutsideWindow
        })
    }
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Random keys (headers, schemes, secrets, windows), allowlists, client-IP rules,
    /// X-Forwarded-For lists and header sets: an admitted request always carried exactly one
    /// value of each credential header, one of which presents the admitted key's secret (with
    /// its scheme), inside its window, from an allowed client; and every verdict is the
    /// reference's.
    #[test]
    fn decision_never_admits_without_a_matching_valid_key(case in decision_case()) {
        let policy = case.policy();
        let headers = case.headers();
        let pairs = bcsp_guard::pipeline::header_map::borrowed(&headers);
        let now = case.now_ms();
        let view = RequestView {
            headers: &pairs,
            downstream: case.downstream.0.as_deref(),
            now_ms: now,
        };
        let got = decide(&policy, &view);
        if let Decision::Admit(key) = &got {
            let i: usize = key.id.as_str().strip_prefix("key-").unwrap().parse().unwrap();
            let k = &case.keys[i];
            let header = KEY_HEADERS[k.header];
            prop_assert!(
                headers.iter().any(|(n, v)| n.eq_ignore_ascii_case(header) && presents(v, k.scheme, k.secret)),
                "admitted key-{} without its secret: {:?}", i, headers
            );
            prop_assert!(k.not_before.is_none_or(|b| BASE_MS + b <= now), "admitted before not_before");
            prop_assert!(k.not_after.is_none_or(|a| now < BASE_MS + a), "admitted at or after not_after");
            for h in policy.keys.headers() {
                prop_assert!(headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(h)).count() <= 1, "{} repeated", h);
            }
            if let Some(allow) = &case.allow {
                let ip = bcsp_guard::policy::decide::client_of(&policy, &view).expect("admitted an unknown client");
                prop_assert!(allow.iter().any(|&j| ALLOW_POOL[j].1.contains(ip)), "admitted {}", ip);
            }
        }
        let got = match got {
            Decision::Admit(k) => Ok(k.id.as_str().strip_prefix("key-").unwrap().parse::<usize>().unwrap()),
            Decision::Deny(d) => Err(d.reason),
        };
        prop_assert_eq!(got, case.reference(&headers, now), "headers {:?} at {}", headers, now);
    }
}
