//! Configuration: the reader accepts exactly what a reference accepts, and never panics.

use super::*;

/// Field names and values the configuration uses, so random documents get deep.
const FIELDS: &[&str] = &[
    "keys",
    "id",
    "header",
    "scheme",
    "sha256",
    "not_before",
    "not_after",
    "client_ip",
    "from",
    "trusted_hops",
    "allow_cidrs",
    "key_id_header",
    "upstream_token",
    "cluster",
    "audience",
    "audience_by_cluster",
    "authority",
    "path",
    "refresh_margin_s",
    "expiry_skew_s",
    "max_wait_ms",
    "fetch_timeout_ms",
    "genesys_ip_ranges",
    "document",
    "entities",
    "cidr",
    "service",
    "region",
    "services",
    "regions",
    "routes",
    "preset",
    "base_path",
    "method",
    "max_body_bytes",
    "webhooks",
    "path_prefix",
    "secret_env",
    "secret",
    "lockout",
    "max_failures",
    "window_s",
    "cooldown_s",
    "unknown",
];

const HEX_A: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

const STRINGS: &[&str] = &[
    "",
    "a",
    "genesys-2026q4",
    HEX_A,
    "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B",
    "x-bcsp-key",
    "authorization",
    "Bearer",
    "host",
    "downstream",
    "x-forwarded-for",
    "10.0.0.0/8",
    "10.0.0.1/8",
    "::ffff:1.2.3.0/120",
    "2600:1f18:4a3:6900::/56",
    "2026-10-01T00:00:00Z",
    "2027-01-15T00:00:00+02:00",
    "2026-02-29T00:00:00Z",
    "gcp_metadata",
    "https://bcsp.example",
    "digital-bot-connector-v2",
    "/botconnector",
    "/openmessaging",
    "/",
    "GET",
    "POST",
    "/bots/*",
    "OM_SECRET",
    "0123456789abcdef",
    "bot-connector",
    "us-east-1",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..70).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(Value::from),
        select(STRINGS).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ]
}

fn json_object(inner: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    prop::collection::vec((select(FIELDS), inner), 0..6)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

fn jsonish() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            json_object(inner),
        ]
    })
}

/// Mostly valid values (12 : 1), so that all-valid configurations are common and so are
/// configurations with exactly one thing wrong.
fn weighted<T: Clone + std::fmt::Debug + 'static>(
    pool: &'static [T],
    valid: fn(&T) -> bool,
) -> impl Strategy<Value = T> {
    let good: Vec<T> = pool.iter().filter(|t| valid(t)).cloned().collect();
    let bad: Vec<T> = pool.iter().filter(|t| !valid(t)).cloned().collect();
    prop_oneof![12 => select(good), 1 => select(bad)]
}

const IDS: &[(&str, bool)] = &[
    ("a", true),
    ("genesys-2026q4", true),
    ("k.1", true),
    ("k_1", true),
    ("k-1", true),
    ("Z9", true),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        true,
    ),
    ("bad id", false),
    ("", false),
    ("ключ", false),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        false,
    ),
];
/// (configured header, valid, the lower-case name it becomes)
const HEADERS: &[(Option<&str>, bool, &str)] = &[
    (None, true, "x-bcsp-key"),
    (Some("x-bcsp-key"), true, "x-bcsp-key"),
    (Some("Authorization"), true, "authorization"),
    (Some("X-Api-Key"), true, "x-api-key"),
    (Some("Host"), false, ""),
    (Some("x-forwarded-for"), false, ""),
    (Some("bad header"), false, ""),
    (Some(""), false, ""),
];
const KEY_SCHEMES: &[(Option<&str>, bool)] = &[
    (None, true),
    (Some("Bearer"), true),
    (Some("Token"), true),
    (Some("two words"), false),
    (Some(""), false),
];
const HASHES: &[(&str, bool)] = &[
    (HEX_A, true),
    (
        "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B",
        true,
    ),
    ("2bb80d537b1da3e3", false),
    (
        "gbb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
        false,
    ),
];
/// (text, Unix ms): `None` ms: not a timestamp.
const STAMPS: &[(Option<&str>, Option<i64>)] = &[
    (None, None),
    (None, None),
    (None, None),
    (Some("2026-10-01T00:00:00Z"), Some(1_790_812_800_000)),
    (Some("2026-10-01T02:00:00+02:00"), Some(1_790_812_800_000)),
    (Some("2027-01-15T08:00:00.250Z"), Some(1_800_000_000_250)),
    (Some("2030-01-01T00:00:00Z"), Some(1_893_456_000_000)),
    (Some("2026-02-29T00:00:00Z"), None),
    (Some("tomorrow"), None),
];

/// A key object; `.1` says whether it is valid on its own, `.2` its id for the uniqueness
/// rules, `.3` its lower-case header.
fn config_key() -> impl Strategy<Value = (Value, bool, String, String)> {
    let stamp_ok = |s: &(Option<&str>, Option<i64>)| s.0.is_none() || s.1.is_some();
    (
        weighted(IDS, |i| i.1),
        weighted(HEADERS, |h| h.1),
        weighted(KEY_SCHEMES, |s| s.1),
        weighted(HASHES, |h| h.1),
        weighted(STAMPS, stamp_ok),
        weighted(STAMPS, stamp_ok),
        prop::bool::weighted(0.03),
    )
        .prop_map(|(id, header, scheme, hash, nb, na, unknown)| {
            let mut o = json!({"id": id.0, "sha256": hash.0});
            let mut valid = id.1 && header.1 && scheme.1 && hash.1 && !unknown;
            if let Some(h) = header.0 {
                o["header"] = h.into();
            }
            if let Some(s) = scheme.0 {
                o["scheme"] = s.into();
            }
            for (field, (text, ms)) in [("not_before", nb), ("not_after", na)] {
                if let Some(t) = text {
                    o[field] = t.into();
                    valid &= ms.is_some();
                }
            }
            if let (Some(b), Some(a)) = (nb.1, na.1) {
                valid &= b < a;
            }
            if unknown {
                o["not_after_"] = "2030-01-01T00:00:00Z".into();
            }
            (o, valid, id.0.to_owned(), header.2.to_owned())
        })
}

/// An optional top-level section from a pool: (value, valid on its own).
type Pool = &'static [(Option<&'static str>, bool)];

const CLIENT_IP: Pool = &[
    (None, true),
    (Some(r#"{"from":"downstream"}"#), true),
    (Some(r#"{"from":"x-forwarded-for","trusted_hops":1}"#), true),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":32}"#),
        true,
    ),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":0}"#),
        false,
    ),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":33}"#),
        false,
    ),
    (
        Some(r#"{"from":"x-forwarded-for","trusted_hops":-1}"#),
        false,
    ),
    (Some(r#"{"from":"x-forwarded-for"}"#), false),
    (Some(r#"{"from":"downstream","trusted_hops":1}"#), false),
    (Some(r#"{"from":"forwarded"}"#), false),
    (Some(r#"{"from":"downstream","hops":1}"#), false),
];
const ALLOW: Pool = &[
    (None, true),
    (Some("[]"), true),
    (Some(r#"["10.0.0.0/8"]"#), true),
    (
        Some(r#"["2600:1f18::/32","::ffff:1.2.3.0/120","192.0.2.1"]"#),
        true,
    ),
    (Some(r#"["10.0.0.1/8"]"#), false),
    (Some(r#"["10.0.0.0/33"]"#), false),
    (Some(r#"["garbage"]"#), false),
    (Some(r#""10.0.0.0/8""#), false),
];
const MAX_BODY: Pool = &[
    (None, true),
    (Some("1"), true),
    (Some("1048576"), true),
    (Some("16777216"), true),
    (Some("0"), false),
    (Some("16777217"), false),
    (Some("-1"), false),
    (Some("1.5"), false),
    (Some(r#""10""#), false),
];
const LOCKOUT: Pool = &[
    (None, true),
    (Some("{}"), true),
    (
        Some(r#"{"max_failures":5,"window_s":86400,"cooldown_s":1}"#),
        true,
    ),
    (Some(r#"{"max_failures":10001}"#), false),
    (Some(r#"{"window_s":0}"#), false),
    (Some(r#"{"cooldown_s":86401}"#), false),
    (Some(r#"{"extra":1}"#), false),
];

/// key_id_header: (value, valid name, lower-case name it takes).
const KEY_ID: &[(Option<&str>, bool, Option<&str>)] = &[
    (None, true, Some("x-bcsp-key-id")),
    (Some(""), true, None),
    (Some("X-Bcsp-Key-Id"), true, Some("x-bcsp-key-id")),
    (Some("x-api-key"), true, Some("x-api-key")),
    (Some("Authorization"), true, Some("authorization")),
    (Some("host"), false, None),
    (Some("bad header"), false, None),
];

/// Sections with no reference: (pools only, for the round trip).
const UPSTREAM: Pool = &[
    (None, true),
    (
        Some(r#"{"cluster":"gcp_metadata","audience":"https://bcsp.example"}"#),
        true,
    ),
    (
        Some(
            r#"{"cluster":"m","audience":"https://a.example/x?y=1","audience_by_cluster":{"c2":"http://b.example"},"header":"X-Serverless-Authorization","authority":"metadata:8080","path":"/id","refresh_margin_s":60,"expiry_skew_s":59,"max_wait_ms":1,"fetch_timeout_ms":100}"#,
        ),
        true,
    ),
    (Some(r#"{"cluster":"m","audience":"ftp://x"}"#), false),
    (
        Some(r#"{"cluster":"m","audience":"https://a","expiry_skew_s":300}"#),
        false,
    ),
];
const ROUTES: Pool = &[
    (None, true),
    (Some(r#"{"preset":"digital-bot-connector-v2"}"#), true),
    (
        Some(r#"{"preset":"digital-bot-connector-v2","base_path":"/botconnector"}"#),
        true,
    ),
    (
        Some(r#"{"preset":"digital-bot-connector-v2","base_path":"/"}"#),
        true,
    ),
    (
        Some(r#"{"preset":"digital-bot-connector-v2","base_path":"/x/"}"#),
        false,
    ),
    (Some(r#"{"preset":"v3"}"#), false),
    (
        Some(r#"[{"method":"GET","path":"/bots/*"},{"method":"POST","path":"/"}]"#),
        true,
    ),
    (
        Some(r#"[{"method":"GET","path":"/a"},{"method":"GET","path":"/a"}]"#),
        false,
    ),
    (Some(r#"[{"method":"get","path":"/a"}]"#), false),
    (Some("[]"), false),
];
const WEBHOOKS: Pool = &[
    (None, true),
    (Some("[]"), true),
    (
        Some(r#"[{"path_prefix":"/openmessaging","secret_env":"OM_SECRET"}]"#),
        true,
    ),
    (
        Some(
            r#"[{"path_prefix":"/om/hook","header":"X-Sig","secret":"0123456789abcdef"},{"path_prefix":"/om2","secret_env":"OM_SECRET"}]"#,
        ),
        true,
    ),
    (
        Some(r#"[{"path_prefix":"/botconnector","secret_env":"OM_SECRET"}]"#),
        true,
    ),
    (
        Some(r#"[{"path_prefix":"/","secret_env":"OM_SECRET"}]"#),
        false,
    ),
    (Some(r#"[{"path_prefix":"/om","secret":"short"}]"#), false),
    (
        Some(r#"[{"path_prefix":"/om","secret_env":"NOT_SET"}]"#),
        false,
    ),
    (
        Some(r#"[{"path_prefix":"/om","header":"authorization","secret_env":"OM_SECRET"}]"#),
        true,
    ),
    (
        Some(r#"[{"path_prefix":"/om"},{"path_prefix":"/om/x","secret_env":"OM_SECRET"}]"#),
        false,
    ),
];
const IP_RANGES: Pool = &[
    (None, true),
    (
        Some(
            r#"{"document":{"entities":[{"cidr":"52.1.2.0/24","service":"bot-connector","region":"us-east-1","direction":"outbound"},{"cidr":"bad","service":"x","region":"y"}]},"regions":["us-east-1"]}"#,
        ),
        true,
    ),
    (
        Some(
            r#"{"document":{"entities":[{"cidr":"52.1.2.0/24","service":"bot-connector","region":"us-east-1"}]},"regions":["eu-west-1"]}"#,
        ),
        false,
    ),
    (Some(r#"{"document":{"entities":[]},"regions":[]}"#), false),
];

fn pick(pool: Pool) -> impl Strategy<Value = (Option<&'static str>, bool)> {
    weighted(pool, |p| p.1)
}

#[derive(Debug, Clone)]
struct ConfigCase {
    keys: Vec<(Value, bool, String, String)>,
    client_ip: (Option<&'static str>, bool),
    allow: (Option<&'static str>, bool),
    key_id: (Option<&'static str>, bool, Option<&'static str>),
    max_body: (Option<&'static str>, bool),
    lockout: (Option<&'static str>, bool),
}

impl ConfigCase {
    fn document(&self) -> Value {
        let mut doc = json!({"keys": self.keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>()});
        for (field, text) in [
            ("client_ip", self.client_ip.0),
            ("allow_cidrs", self.allow.0),
            (
                "key_id_header",
                self.key_id.0.map(|s| format!("{s:?}")).as_deref(),
            ),
            ("max_body_bytes", self.max_body.0),
            ("lockout", self.lockout.0),
        ] {
            if let Some(t) = text {
                doc[field] = serde_json::from_str(t).unwrap();
            }
        }
        doc
    }

    /// The sections the reference calls invalid, in no particular order.
    fn invalid_sections(&self) -> Vec<&'static str> {
        let mut bad = Vec::new();
        let metric = |id: &str| id.replace(['.', '-'], "_");
        let mut seen: Vec<String> = Vec::new();
        let mut keys_ok = (1..=64).contains(&self.keys.len());
        for (_, valid, id, _) in &self.keys {
            keys_ok &= *valid && !seen.contains(&metric(id));
            seen.push(metric(id));
        }
        if !keys_ok {
            bad.push("keys");
        }
        let credential = |h: &str| self.keys.iter().any(|k| k.3 == h);
        let key_id_ok = self.key_id.1 && self.key_id.2.is_none_or(|h| !credential(h));
        for (ok, name) in [
            (self.client_ip.1, "client_ip"),
            (self.allow.1, "allow_cidrs"),
            (key_id_ok, "key_id_header"),
            (self.max_body.1, "max_body_bytes"),
            (self.lockout.1, "lockout"),
        ] {
            if !ok {
                bad.push(name);
            }
        }
        bad
    }
}

fn config_case() -> impl Strategy<Value = ConfigCase> {
    (
        prop_oneof![30 => prop::collection::vec(config_key(), 1..4), 1 => Just(Vec::new())],
        pick(CLIENT_IP),
        pick(ALLOW),
        weighted(KEY_ID, |k| k.1),
        pick(MAX_BODY),
        pick(LOCKOUT),
    )
        .prop_map(
            |(keys, client_ip, allow, key_id, max_body, lockout)| ConfigCase {
                keys,
                client_ip,
                allow,
                key_id,
                max_body,
                lockout,
            },
        )
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Random JSON-ish documents (schema field names, values of every type, nested): compile
    /// never panics, and whatever it accepts round-trips.
    #[test]
    fn config_never_panics_on_jsonish_documents(
        fields in prop::collection::vec((select(FIELDS), jsonish()), 0..8),
        keys in prop::option::weighted(0.7, prop::collection::vec(json_object(json_leaf().boxed()), 0..3)),
    ) {
        let mut doc: serde_json::Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(k) = keys {
            doc.insert("keys".into(), Value::Array(k));
        }
        check_accepted(&serde_json::to_vec(&Value::Object(doc)).unwrap())?;
    }

    /// Raw bytes, and valid configurations with bytes flipped, inserted or cut: never panics.
    #[test]
    fn config_never_panics_on_bytes(
        raw in prop::collection::vec(any::<u8>(), 0..256),
        base in select(&[
            r#"{"keys":[{"id":"a","sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b","not_after":"2030-01-01T00:00:00Z"}],"allow_cidrs":["10.0.0.0/8"]}"#,
            r#"{"keys":[{"id":"b","header":"authorization","scheme":"Bearer","sha256":"2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}],"client_ip":{"from":"x-forwarded-for","trusted_hops":2},"routes":{"preset":"digital-bot-connector-v2","base_path":"/bc"},"webhooks":[{"path_prefix":"/om","secret":"0123456789abcdef"}],"lockout":{}}"#,
        ][..]),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let _ = compile(&raw);
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        check_accepted(&bytes)?;
    }

    /// Keys, client_ip, allow_cidrs, key_id_header, max_body_bytes and lockout from pools of
    /// valid and invalid values: accepted exactly when the reference says so, an error names a
    /// section that is invalid, and an accepted config holds exactly the configured keys.
    #[test]
    fn config_accepts_exactly_what_the_reference_accepts(case in config_case()) {
        let doc = case.document();
        let text = serde_json::to_vec_pretty(&doc).unwrap();
        let bad = case.invalid_sections();
        match compile(&text) {
            Err(e) => {
                prop_assert!(!bad.is_empty(), "refused a valid config: {e}\n{doc}");
                let section = e.path.split(['.', '[']).next().unwrap_or("");
                prop_assert!(bad.contains(&section), "error {e} names no invalid section of {bad:?}");
            }
            Ok(p) => {
                prop_assert!(bad.is_empty(), "accepted a config with invalid {bad:?}\n{doc}");
                prop_assert_eq!(p.keys.keys.len(), case.keys.len());
                for (k, (raw, _, id, header)) in p.keys.keys.iter().zip(&case.keys) {
                    prop_assert_eq!(k.id.as_str(), id.as_str());
                    prop_assert_eq!(&p.keys.headers()[k.header], header);
                    prop_assert_eq!(k.hash.to_hex(), raw["sha256"].as_str().unwrap().to_ascii_lowercase());
                    prop_assert_eq!(k.scheme.as_deref(), raw.get("scheme").and_then(Value::as_str));
                }
                check_accepted(&text)?;
            }
        }
    }

    /// Every section from pools (including upstream_token, routes, webhooks and
    /// genesys_ip_ranges): never panics, and what is accepted round-trips.
    #[test]
    fn config_round_trips_what_it_accepts(
        case in config_case(),
        upstream in pick(UPSTREAM),
        routes in pick(ROUTES),
        webhooks in pick(WEBHOOKS),
        ranges in pick(IP_RANGES),
    ) {
        let mut doc = case.document();
        for (field, (text, _)) in [
            ("upstream_token", upstream),
            ("routes", routes),
            ("webhooks", webhooks),
            ("genesys_ip_ranges", ranges),
        ] {
            if let Some(t) = text {
                doc[field] = serde_json::from_str(t).unwrap();
            }
        }
        let text = serde_json::to_vec(&doc).unwrap();
        if let Some(p) = check_accepted(&text)? {
            prop_assert!(case.invalid_sections().is_empty());
            prop_assert!(upstream.1 && routes.1 && ranges.1, "{doc}");
            let inline = doc["webhooks"].as_array().map_or(0, |w| {
                w.iter().filter(|h| h.get("secret").is_some()).count()
            });
            prop_assert_eq!(p.warnings.len(), inline);
        }
    }
}

/// Finding F1 (docs/FUZZING.md): content after the configuration object was ignored, so a
/// second object (here one that would set an allowlist) was silently dropped. Fixed by
/// requiring the end of input after the object.
#[test]
fn config_with_content_after_the_object_is_refused() {
    for trailing in [r#"{"allow_cidrs":["10.0.0.0/8"]}"#, "]", "garbage", ","] {
        let text = format!(r#"{{"keys":[{{"id":"a","sha256":"{HEX_A}"}}]}}{trailing}"#);
        assert!(compile(text.as_bytes()).is_err(), "accepted {text}");
    }
    assert!(
        compile(format!(r#"{{"keys":[{{"id":"a","sha256":"{HEX_A}"}}]}} "#).as_bytes()).is_ok()
    );
}
