//! The whole request path (`pipeline`) through the recording host (`pipeline::record`): any header list (pseudo-headers,
//! credentials, X-Forwarded-For, content-type/-length), any body, token cache present, waiting
//! or refusing, and two policies (everything on; keys only). Never panics, and:
//! - a request is replied to exactly once, or not at all when it goes on;
//! - one that goes on had an allowed client and one valid credential (or, under the webhook
//!   prefix, a signature over its body), a listed route and a body within the limit;
//! - what goes on carries no credential header, only the filter's key id, and only the
//!   filter's token; no reply echoes a secret.
#![no_main]

use bcsp_guard::config::compile;
use bcsp_guard::pipeline::metrics::Stats;
use bcsp_guard::pipeline::record::Recorder;
use bcsp_guard::pipeline::{Guard, LockoutPort, Outcome, Ports, TokenPort};
use bcsp_guard::policy::lockout::Failure;
use bcsp_guard::policy::routes::{clean_path, is_json_media_type, under_prefix};
use bcsp_guard::token::Missing;
use bcsp_guard_fuzz::{fields, presents, std_entry, unmap};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::OnceLock;

const NOW_MS: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z
const TOKEN: &str = "Bearer upstream.token.sig";
const WEBHOOK_SECRET: &str = "om-webhook-secret-0123";
/// (id, header, scheme, secret, window open at NOW_MS + offset?)
const KEYS: &[(&str, &str, Option<&str>, &str)] = &[
    ("k-a", "x-bcsp-key", None, "alpha-secret"),
    ("k-b", "authorization", Some("Bearer"), "beta"),
    ("k-c", "x-api-key", Some("Token"), "a b"),
];

fn open(id: &str, now: i64) -> bool {
    id != "k-a" || (NOW_MS..NOW_MS + 1000).contains(&now)
}

fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn guards() -> &'static [Guard; 2] {
    static G: OnceLock<[Guard; 2]> = OnceLock::new();
    G.get_or_init(|| {
        let keys = format!(
            r#"[{{"id":"k-a","sha256":"{}","not_before":"2027-01-15T08:00:00Z","not_after":"2027-01-15T08:00:01Z"}},
               {{"id":"k-b","header":"Authorization","scheme":"Bearer","sha256":"{}"}},
               {{"id":"k-c","header":"X-Api-Key","scheme":"Token","sha256":"{}"}}]"#,
            sha256_hex("alpha-secret"),
            sha256_hex("beta"),
            sha256_hex("a b")
        );
        let full = format!(
            r#"{{"keys":{keys},"client_ip":{{"from":"x-forwarded-for","trusted_hops":1}},
                "allow_cidrs":["10.0.0.0/8","203.0.113.0/24","2001:db8::/32"],
                "routes":{{"preset":"digital-bot-connector-v2","base_path":"/bc"}},
                "webhooks":[{{"path_prefix":"/om","secret":"{WEBHOOK_SECRET}"}}],
                "upstream_token":{{"cluster":"gcp","audience":"https://bcsp.example"}},
                "lockout":{{}},"max_body_bytes":1000}}"#
        );
        let plain = format!(r#"{{"keys":{keys}}}"#);
        [full, plain].map(|json| {
            let policy = compile(json.as_bytes()).expect("fuzz policy compiles");
            let mut next = 0;
            let stats = Stats::define(&policy, |_, _| {
                next += 1;
                Some(next)
            });
            Guard { policy, stats }
        })
    })
}

struct Tokens(u8);

impl TokenPort for Tokens {
    fn header_value(&self, _audience: &str) -> Option<Rc<str>> {
        self.0.is_multiple_of(3).then(|| Rc::from(TOKEN))
    }
    fn on_missing(&self, _audience: &str) -> Missing {
        if self.0 % 3 == 1 {
            Missing::Wait { deadline_ms: 5 }
        } else {
            Missing::Reject { retry_after_s: 1 }
        }
    }
}

struct Lockout;

impl LockoutPort for Lockout {
    fn locked(&self, client: IpAddr) -> Option<u64> {
        (client == IpAddr::from([203, 0, 113, 66])).then_some(30)
    }
    fn failed(&self, _client: IpAddr) -> Failure {
        Failure::Counted(1)
    }
}

fn named<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [control, blob, body] = fields(data, 3)[..] else {
        return;
    };
    let c = |i: usize| control.get(i).copied().unwrap_or(0);
    let which = usize::from(c(0) & 1);
    let guard = &guards()[which];
    let end_of_stream = c(0) & 2 != 0;
    let now = NOW_MS + i64::from(i16::from_le_bytes([c(1), c(2)]));
    let original: Vec<(String, String)> = String::from_utf8_lossy(blob)
        .split('\n')
        .map(|line| {
            let (pseudo, rest) = match line.strip_prefix(':') {
                Some(r) => (":", r),
                None => ("", line),
            };
            match rest.split_once(':') {
                Some((n, v)) => (format!("{pseudo}{n}"), v.to_owned()),
                None => (format!("{pseudo}{rest}"), String::new()),
            }
        })
        .collect();
    let mut host = Recorder::new(original.clone(), now);
    if !end_of_stream {
        host = host.with_body(body.to_vec());
    }
    let tokens = Tokens(c(3));
    let ports = Ports {
        tokens: Some(&tokens),
        lockout: Some(&Lockout),
    };
    let effects = host.run(guard, ports);
    let outcome = &effects.outcome;

    let replies: Vec<u32> = effects.replies.iter().map(|r| r.status).collect();
    let mut text = String::new();
    for reply in &effects.replies {
        // The body is JSON; its request_id is the caller's own x-request-id, escaped.
        let mut body: serde_json::Value = serde_json::from_str(&reply.body).expect("reply is JSON");
        body.as_object_mut()
            .expect("reply is an object")
            .remove("request_id");
        text.push_str(&body.to_string());
        for (_, v) in &reply.headers {
            text.push_str(v);
        }
    }
    // Apart from the caller's own x-request-id, a reply carries nothing the caller sent.
    for secret in ["alpha-secret", "beta", WEBHOOK_SECRET, TOKEN] {
        assert!(!text.contains(secret), "a reply echoes {secret}: {text}");
    }
    if *outcome == Outcome::Replied {
        assert_eq!(replies.len(), 1, "replied {replies:?}");
        return;
    }
    assert!(replies.is_empty(), "went on after replying {replies:?}");

    let policy = &guard.policy;
    let header = |name: &str| named(&original, name).first().copied();
    if policy.allow.is_some() {
        let xff = named(&original, "x-forwarded-for");
        let entries: Vec<&str> = xff.iter().flat_map(|v| v.split(',')).collect();
        let ip = entries
            .last()
            .and_then(|e| std_entry(e))
            .map(unmap)
            .expect("no client");
        assert!(
            policy.allow.as_ref().unwrap().contains(ip),
            "client {ip} outside the allowlist"
        );
        assert_ne!(
            ip,
            IpAddr::from([203, 0, 113, 66]),
            "locked-out client went on"
        );
    }
    let path = clean_path(header(":path").unwrap_or(""));
    let webhook = path.is_ok_and(|p| {
        policy
            .webhooks
            .iter()
            .any(|w| under_prefix(p, &w.path_prefix))
    });
    let final_headers = &effects.headers;
    if webhook {
        assert!(named(final_headers, "x-bcsp-key-id").is_empty());
    }
    if webhook && *outcome == Outcome::Forward {
        let sig = named(&original, "x-hub-signature-256");
        assert_eq!(sig.len(), 1);
        let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(if end_of_stream { &[] } else { body });
        let want = bcsp_guard::base64::encode(
            &mac.finalize().into_bytes(),
            bcsp_guard::base64::Alphabet::Standard,
        );
        let (alg, b64) = sig[0].trim().split_once('=').expect("signature shape");
        assert!(
            alg.eq_ignore_ascii_case("sha256") && b64 == want,
            "bad signature went on"
        );
        assert_eq!(header(":method"), Some("POST"));
    } else if !webhook {
        for (_, name, ..) in KEYS {
            assert!(named(&original, name).len() <= 1, "{name} repeated");
        }
        let admitted = KEYS.iter().find(|(id, h, scheme, secret)| {
            open(id, now) && header(h).is_some_and(|v| presents(v, *scheme, secret))
        });
        let (id, ..) = admitted.expect("went on without a valid credential");
        let stamped = named(final_headers, "x-bcsp-key-id");
        assert!(
            KEYS.iter().any(|(other, h, s, secret)| stamped == [*other]
                && open(other, now)
                && header(h).is_some_and(|v| presents(v, *s, secret))),
            "stamped {stamped:?}, admitted {id}"
        );
        if let Some(routes) = &policy.routes {
            let method = header(":method").unwrap_or("");
            let p = path.expect("unclean path went on");
            assert!(matches!(
                routes.find(method, p),
                bcsp_guard::policy::routes::RouteMatch::Allowed(_)
            ));
            if method == "POST" {
                assert!(header("content-type").is_some_and(is_json_media_type));
            }
        }
        if let Some(n) = header("content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
            assert!(n <= policy.max_body_bytes, "content-length {n} went on");
        }
    }
    {
        // What Envoy forwards: no credential, no caller-chosen identity.
        let token_header = policy.upstream_token.as_ref().map(|t| t.header.as_str());
        for (_, h, ..) in KEYS {
            let left = named(final_headers, h);
            let expected: &[&str] = match (token_header == Some(*h), outcome) {
                (true, Outcome::Forward) => &[TOKEN],
                _ => &[],
            };
            assert_eq!(left, expected, "{h} after admission");
        }
    }
    if let (Some(t), Outcome::Forward) = (&policy.upstream_token, outcome) {
        assert_eq!(named(final_headers, &t.header), [TOKEN]);
        assert!(named(final_headers, "x-serverless-authorization").is_empty());
    }
});
