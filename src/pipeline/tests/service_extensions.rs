//! The request path on a GCP Service Extensions-like host: no timers, no custom metrics, no
//! shared data, no outbound calls, and properties the host may refuse. bcsp-guard must still
//! admit, refuse (401 / 403 / 404 / 405 / 413 / 415) and fall back for lockout there, and a
//! configuration without `upstream_token` must never reach for the token port.
//!
//! Every host call such a host lacks panics in these fakes, so a test passing means the call
//! was never made: a metric update with a defined id, any use of the token port. Shared data
//! is refused the way such a host refuses it (`(None, None)`, `false`, no call id).

use super::*;
use crate::config;
use crate::host::lockout::LockoutBook;
use crate::pipeline::metrics::Kind;
use crate::policy::keys::SecretHash;

/// Runs the headers phase the way the Wasm glue does on this host: a lockout port exactly
/// when `lockout` is configured (over refused shared data), and a token port that panics.
fn on_se(host: &SeHost, guard: &Guard, shared: &NoSharedData, end_of_stream: bool) -> Step {
    let book = guard.policy.lockout.map(LockoutBook::new);
    let port = book.as_ref().map(|book| SeBook { book, host: shared });
    let ports = Ports {
        tokens: Some(&Untouchable),
        lockout: port.as_ref().map(|p| p as &dyn LockoutPort),
    };
    on_request_headers(host, guard, ports, end_of_stream)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Forwarded, stamped with this key id, no credential left.
    Admit(&'static str),
    /// A local reply with this status; nothing forwarded.
    Refuse(u32),
}

struct Case {
    behaviour: &'static str,
    config: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    source: Source,
    want: Want,
    /// No property may be read (the decision needs none).
    no_property_reads: bool,
}

const ALLOW_10: &str = r#","allow_cidrs":["10.0.0.0/8"]"#;
/// Behind Google's load balancer: it appends `client, lb-ip` to X-Forwarded-For.
const XFF_ALLOW: &str = r#","client_ip":{"from":"x-forwarded-for","trusted_hops":2},
    "allow_cidrs":["34.200.73.250/32"]"#;
const ROUTES: &str = r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/botconnector"},
    "max_body_bytes":100"#;
const BODY_LIMIT: &str = r#","max_body_bytes":100"#;
const LOCKOUT: &str = r#","lockout":{"max_failures":3,"window_s":60,"cooldown_s":300}"#;
const LOCKOUT_XFF: &str = r#","client_ip":{"from":"x-forwarded-for","trusted_hops":2},
    "lockout":{"max_failures":3,"window_s":60,"cooldown_s":300}"#;

const CASES: &[Case] = &[
    Case {
        behaviour: "admits a valid key without reading any property",
        config: "",
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "alpha"), ("x-bcsp-key-id", "forged")],
        source: Source::Refused,
        want: Want::Admit("a"),
        no_property_reads: true,
    },
    Case {
        behaviour: "admits a Bearer key and strips authorization",
        config: "",
        method: "GET",
        path: "/bots",
        headers: &[("authorization", "Bearer bravo")],
        source: Source::Refused,
        want: Want::Admit("b"),
        no_property_reads: true,
    },
    Case {
        behaviour: "refuses a missing credential with 401",
        config: "",
        method: "GET",
        path: "/bots",
        headers: &[],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: false,
    },
    Case {
        behaviour: "refuses a wrong credential with 401",
        config: "",
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "nope")],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: false,
    },
    Case {
        behaviour: "refuses an expired key with 401",
        config: "",
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "old-secret")],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: false,
    },
    Case {
        behaviour: "refuses a repeated credential header with 401",
        config: "",
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "alpha"), ("x-bcsp-key", "alpha")],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: false,
    },
    Case {
        behaviour: "refuses with 403 when allow_cidrs is set and source.address is refused",
        config: ALLOW_10,
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "alpha")],
        source: Source::Refused,
        want: Want::Refuse(403),
        no_property_reads: false,
    },
    Case {
        behaviour: "admits from an allowed source.address",
        config: ALLOW_10,
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "alpha")],
        source: Source::Is("10.1.2.3:40000"),
        want: Want::Admit("a"),
        no_property_reads: false,
    },
    Case {
        behaviour: "refuses a source.address outside allow_cidrs with 403",
        config: ALLOW_10,
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "alpha")],
        source: Source::Is("192.0.2.1:40000"),
        want: Want::Refuse(403),
        no_property_reads: false,
    },
    Case {
        behaviour: "admits an allowed client from X-Forwarded-For without any property",
        config: XFF_ALLOW,
        method: "GET",
        path: "/bots",
        headers: &[
            ("x-bcsp-key", "alpha"),
            ("x-forwarded-for", "34.200.73.250, 35.191.0.1"),
        ],
        source: Source::Refused,
        want: Want::Admit("a"),
        no_property_reads: true,
    },
    Case {
        behaviour: "refuses an X-Forwarded-For client outside allow_cidrs with 403",
        config: XFF_ALLOW,
        method: "GET",
        path: "/bots",
        headers: &[
            ("x-bcsp-key", "alpha"),
            ("x-forwarded-for", "34.200.73.250, 198.51.100.4, 35.191.0.1"),
        ],
        source: Source::Refused,
        want: Want::Refuse(403),
        no_property_reads: false,
    },
    Case {
        behaviour: "routes: admits a listed endpoint",
        config: ROUTES,
        method: "POST",
        path: "/botconnector/messages",
        headers: &[
            ("x-bcsp-key", "alpha"),
            ("content-type", "application/json"),
            ("content-length", "100"),
        ],
        source: Source::Refused,
        want: Want::Admit("a"),
        no_property_reads: true,
    },
    Case {
        behaviour: "routes: 404 for an unlisted path",
        config: ROUTES,
        method: "GET",
        path: "/botconnector/admin",
        headers: &[("x-bcsp-key", "alpha")],
        source: Source::Refused,
        want: Want::Refuse(404),
        no_property_reads: false,
    },
    Case {
        behaviour: "routes: 405 for a listed path with another method",
        config: ROUTES,
        method: "DELETE",
        path: "/botconnector/bots",
        headers: &[("x-bcsp-key", "alpha")],
        source: Source::Refused,
        want: Want::Refuse(405),
        no_property_reads: false,
    },
    Case {
        behaviour: "routes: 415 for a POST that is not JSON",
        config: ROUTES,
        method: "POST",
        path: "/botconnector/messages",
        headers: &[("x-bcsp-key", "alpha"), ("content-type", "text/plain")],
        source: Source::Refused,
        want: Want::Refuse(415),
        no_property_reads: false,
    },
    Case {
        behaviour: "routes: 401 before any route answer for an unauthenticated caller",
        config: ROUTES,
        method: "GET",
        path: "/botconnector/admin",
        headers: &[],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: false,
    },
    Case {
        behaviour: "body limit: 413 for a content-length over max_body_bytes",
        config: BODY_LIMIT,
        method: "POST",
        path: "/messages",
        headers: &[("x-bcsp-key", "alpha"), ("content-length", "101")],
        source: Source::Refused,
        want: Want::Refuse(413),
        no_property_reads: false,
    },
    Case {
        behaviour: "lockout: a valid key is admitted while shared data is refused",
        config: LOCKOUT,
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "alpha")],
        source: Source::Is("198.51.100.7:40000"),
        want: Want::Admit("a"),
        no_property_reads: false,
    },
    Case {
        behaviour: "lockout: a wrong key is 401 when the client address is refused",
        config: LOCKOUT,
        method: "GET",
        path: "/bots",
        headers: &[("x-bcsp-key", "nope")],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: false,
    },
    Case {
        behaviour: "lockout: a wrong key is 401 and counted locally",
        config: LOCKOUT_XFF,
        method: "GET",
        path: "/bots",
        headers: &[
            ("x-bcsp-key", "nope"),
            ("x-forwarded-for", "198.51.100.7, 35.191.0.1"),
        ],
        source: Source::Refused,
        want: Want::Refuse(401),
        no_property_reads: true,
    },
];

#[test]
fn request_path_decides_on_a_host_without_metrics_shared_data_tokens_or_properties() {
    for case in CASES {
        let b = case.behaviour;
        let guard = se_guard(case.config);
        let host = SeHost::new(case.method, case.path, case.headers, case.source);
        let shared = NoSharedData::default();
        let step = on_se(&host, &guard, &shared, true);
        match case.want {
            Want::Admit(id) => {
                assert_eq!(step.outcome, Outcome::Forward, "{b}: {:?}", host.statuses());
                assert!(host.replies.borrow().is_empty(), "{b}");
                assert_eq!(host.header("x-bcsp-key-id"), vec![id], "{b}");
                assert!(host.header("x-bcsp-key").is_empty(), "{b}");
                assert!(host.header("authorization").is_empty(), "{b}");
            }
            Want::Refuse(status) => {
                assert_eq!(step.outcome, Outcome::Replied, "{b}");
                assert_eq!(host.statuses(), vec![status], "{b}");
                assert_eq!(step.body, BodyState::Closed, "{b}");
            }
        }
        if case.no_property_reads {
            assert!(
                host.property_reads.borrow().is_empty(),
                "{b}: read {:?}",
                host.property_reads.borrow()
            );
        }
    }
}

#[test]
fn a_request_with_a_body_streams_and_is_cut_off_at_the_limit_without_a_metric() {
    let guard = se_guard(BODY_LIMIT);
    let host = SeHost::new(
        "POST",
        "/messages",
        &[("x-bcsp-key", "alpha")],
        Source::Refused,
    );
    let shared = NoSharedData::default();
    let mut step = on_se(&host, &guard, &shared, false);
    assert_eq!(step.outcome, Outcome::Forward);
    let ports = Ports {
        tokens: Some(&Untouchable),
        lockout: None,
    };
    let mut body = |size, end| on_request_body(&host, &guard, ports, &mut step.body, size, end);
    assert_eq!(body(60, false), Outcome::Forward);
    assert_eq!(body(40, false), Outcome::Forward);
    assert_eq!(body(1, true), Outcome::Replied);
    assert_eq!(host.statuses(), vec![413]);
}

#[test]
fn lockout_without_shared_data_falls_back_to_a_per_worker_count() {
    let guard = se_guard(LOCKOUT_XFF);
    let shared = NoSharedData::default();
    // One book per worker VM, kept across its requests, as the Wasm glue keeps it.
    let rule = guard.policy.lockout.expect("lockout configured");
    let book = LockoutBook::new(rule);
    let port = SeBook {
        book: &book,
        host: &shared,
    };
    let send = |key: &str, xff: &str| {
        let host = SeHost::new(
            "GET",
            "/bots",
            &[("x-bcsp-key", key), ("x-forwarded-for", xff)],
            Source::Refused,
        );
        let ports = Ports {
            tokens: Some(&Untouchable),
            lockout: Some(&port),
        };
        let step = on_request_headers(&host, &guard, ports, true);
        (step.outcome, host)
    };
    let guesser = "198.51.100.7, 35.191.0.1";
    for _ in 0..3 {
        let (outcome, host) = send("nope", guesser);
        assert_eq!((outcome, host.statuses()), (Outcome::Replied, vec![401]));
    }
    // Locked out: even the valid key waits out the cooldown.
    let (outcome, host) = send("alpha", guesser);
    assert_eq!((outcome, host.statuses()), (Outcome::Replied, vec![429]));
    assert_eq!(host.reply_header("retry-after").as_deref(), Some("300"));
    // Another client is not affected.
    let (outcome, host) = send("alpha", "203.0.113.9, 35.191.0.1");
    assert_eq!(outcome, Outcome::Forward);
    assert_eq!(host.header("x-bcsp-key-id"), vec!["a"]);
    // Shared data was tried and refused; nothing else was needed.
    assert!(shared.gets.get() > 0 && shared.sets.get() > 0);
}

#[test]
fn a_config_without_upstream_token_never_touches_the_token_port() {
    // Every configuration above, admitted and refused, with and without a body: the token
    // port panics if asked, so reaching the end is the proof.
    for case in CASES {
        let guard = se_guard(case.config);
        assert!(guard.policy.upstream_token.is_none(), "{}", case.behaviour);
        for end_of_stream in [true, false] {
            let host = SeHost::new(case.method, case.path, case.headers, case.source);
            let shared = NoSharedData::default();
            let mut step = on_se(&host, &guard, &shared, end_of_stream);
            let ports = Ports {
                tokens: Some(&Untouchable),
                lockout: None,
            };
            on_request_body(&host, &guard, ports, &mut step.body, 10, true);
        }
    }
}

#[test]
fn the_shipped_service_extensions_config_authenticates_on_such_a_host() {
    let shipped = include_str!("../../../deploy/service-extensions/plugin-config.json");
    let mut config: serde_json::Value = serde_json::from_str(shipped).expect("plugin-config.json");
    assert!(config.get("upstream_token").is_none());
    config["keys"][0]["sha256"] = SecretHash::of(b"alpha").to_hex().into();
    let header = config["keys"][0]["header"]
        .as_str()
        .unwrap_or("x-bcsp-key")
        .to_owned();
    let policy = config::compile(config.to_string().as_bytes()).expect("compiles");
    let stats = Stats::define(&policy, |_: Kind, _: &str| None);
    let guard = Guard { policy, stats };
    let shared = NoSharedData::default();
    for (value, want) in [("alpha", None), ("nope", Some(401))] {
        let host = SeHost::new("GET", "/bots", &[(&header, value)], Source::Refused);
        let step = on_se(&host, &guard, &shared, true);
        assert_eq!(host.statuses().first().copied(), want, "{value}");
        assert_eq!(step.outcome == Outcome::Forward, want.is_none());
    }
    assert_eq!((shared.gets.get(), shared.sets.get()), (0, 0));
}
