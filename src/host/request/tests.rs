use super::*;
use crate::config;
use crate::host::metrics::Kind;
use crate::policy::keys::SecretHash;
use crate::policy::lockout::Failure;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Default)]
struct FakeHost {
    headers: RefCell<Vec<(String, String)>>,
    properties: BTreeMap<String, String>,
    replies: RefCell<Vec<Reply>>,
    counters: RefCell<BTreeMap<u32, i64>>,
    /// Like GCP Service Extensions: any metric update is a host error.
    refuse_metrics: bool,
    property_reads: RefCell<Vec<String>>,
    /// The request body Envoy would hold.
    body: Vec<u8>,
}

impl RequestHost for FakeHost {
    fn request_headers(&self) -> Vec<u8> {
        crate::host::header_map::encode(&self.headers.borrow())
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        self.property_reads.borrow_mut().push(key.clone());
        self.properties.get(&key).map(|v| v.as_bytes().to_vec())
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        crate::host::header_map::replace(&mut self.headers.borrow_mut(), name, value);
    }
    fn send_reply(&self, reply: &Reply) {
        self.replies.borrow_mut().push(Reply {
            status: reply.status,
            headers: reply.headers.clone(),
            body: reply.body.clone(),
        });
    }
    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            assert!(
                !self.refuse_metrics,
                "metric call on a host without metrics"
            );
            *self.counters.borrow_mut().entry(id).or_default() += 1;
        }
    }
    fn now_ms(&self) -> i64 {
        1_800_000_000_000
    }
    fn request_body(&self, len: usize) -> Option<Vec<u8>> {
        Some(self.body.iter().take(len).copied().collect())
    }
}

/// The headers phase of a request without a body, as the existing cases need it.
fn headers_step(host: &FakeHost, g: &Guard, tokens: Option<&dyn TokenPort>) -> Outcome {
    let ports = Ports {
        tokens,
        lockout: None,
    };
    on_request_headers(host, g, ports, true).outcome
}

impl FakeHost {
    fn with(headers: &[(&str, &str)]) -> FakeHost {
        let h = FakeHost::default();
        *h.headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        h
    }
    fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn count(&self, id: Option<u32>) -> i64 {
        id.and_then(|i| self.counters.borrow().get(&i).copied())
            .unwrap_or(0)
    }
}

struct FakeTokens {
    value: Option<&'static str>,
    missing: Missing,
    asked: RefCell<Vec<String>>,
}

impl TokenPort for FakeTokens {
    fn header_value(&self, audience: &str) -> Option<Rc<str>> {
        self.asked.borrow_mut().push(audience.to_owned());
        self.value.map(Rc::from)
    }
    fn on_missing(&self, _audience: &str) -> Missing {
        match self.missing {
            Missing::Wait { deadline_ms } => Missing::Wait { deadline_ms },
            Missing::Reject { retry_after_s } => Missing::Reject { retry_after_s },
        }
    }
}

fn guard(extra: &str) -> Guard {
    let a = SecretHash::of(b"alpha").to_hex();
    let b = SecretHash::of(b"bravo").to_hex();
    let json = format!(
        r#"{{"keys":[{{"id":"a","sha256":"{a}"}},
                     {{"id":"b","header":"authorization","scheme":"Bearer","sha256":"{b}"}}]{extra}}}"#
    );
    let policy = config::compile(json.as_bytes()).unwrap();
    let mut next = 0;
    let stats = Stats::define(&policy, |_, _| {
        next += 1;
        Some(next)
    });
    Guard { policy, stats }
}

const TOKEN_CFG: &str = r#","upstream_token":{"cluster":"meta","audience":"https://a.run.app",
    "audience_by_cluster":{"eu":"https://eu.run.app"}}"#;

#[test]
fn admitted_request_loses_its_credentials_and_gains_the_key_id() {
    let g = guard("");
    let host = FakeHost::with(&[
        ("x-bcsp-key", "alpha"),
        ("authorization", "Bearer nonsense"),
        ("x-bcsp-key-id", "forged"),
        ("x-request-id", "r1"),
    ]);
    assert_eq!(headers_step(&host, &g, None), Outcome::Forward);
    assert!(host.header("x-bcsp-key").is_empty());
    assert!(host.header("authorization").is_empty());
    assert_eq!(host.header("x-bcsp-key-id"), vec!["a"]);
    assert_eq!(host.count(g.stats.allowed), 1);
    assert_eq!(host.count(g.stats.key_accepted[0]), 1);
    assert_eq!(host.count(g.stats.key_accepted[1]), 0);
    assert!(host.replies.borrow().is_empty());
}

#[test]
fn refused_requests_get_one_json_body_and_the_matching_counter() {
    let g = guard(r#","allow_cidrs":["10.0.0.0/8"]"#);
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u32, Option<u32>);
    let cases: &[Case] = &[
        (
            &[("x-bcsp-key", "alpha")],
            "10.0.0.1:1000",
            0,
            g.stats.allowed,
        ),
        (&[], "10.0.0.1:1000", 401, g.stats.denied_missing_key),
        (
            &[("x-bcsp-key", "wrong")],
            "10.0.0.1:1000",
            401,
            g.stats.denied_invalid_key,
        ),
        (
            &[("x-bcsp-key", "alpha"), ("x-bcsp-key", "alpha")],
            "10.0.0.1:1000",
            401,
            g.stats.denied_invalid_key,
        ),
        (
            &[("x-bcsp-key", "alpha")],
            "192.0.2.1:1000",
            403,
            g.stats.denied_ip,
        ),
        (
            &[("x-bcsp-key", "alpha")],
            "10.0.0.1:0",
            403,
            g.stats.denied_ip,
        ),
    ];
    let mut bodies_401 = Vec::new();
    for (headers, source, status, counter) in cases {
        let mut host = FakeHost::with(headers);
        host.properties
            .insert("source.address".into(), source.to_string());
        let out = headers_step(&host, &g, None);
        assert_eq!(host.count(*counter), 1, "{headers:?} from {source}");
        if *status == 0 {
            assert_eq!(out, Outcome::Forward);
            continue;
        }
        assert_eq!(out, Outcome::Replied);
        let replies = host.replies.borrow();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].status, *status);
        if *status == 401 {
            bodies_401.push(replies[0].body.clone());
            assert!(replies[0]
                .headers
                .iter()
                .any(|(n, _)| *n == "www-authenticate"));
        }
        // A refused request keeps its headers untouched: nothing is forwarded anyway.
        assert_eq!(host.count(g.stats.allowed), 0);
    }
    bodies_401.dedup();
    assert_eq!(bodies_401.len(), 1, "every 401 must look the same");
}

#[test]
fn token_is_injected_and_client_identity_headers_are_dropped() {
    let g = guard(TOKEN_CFG);
    let host = FakeHost::with(&[
        ("x-bcsp-key", "alpha"),
        ("x-serverless-authorization", "Bearer forged"),
        ("authorization", "Bearer forged"),
    ]);
    let tokens = FakeTokens {
        value: Some("Bearer jwt"),
        missing: Missing::Reject { retry_after_s: 1 },
        asked: RefCell::default(),
    };
    assert_eq!(headers_step(&host, &g, Some(&tokens)), Outcome::Forward);
    assert_eq!(host.header("authorization"), vec!["Bearer jwt"]);
    assert!(host.header("x-serverless-authorization").is_empty());
    assert_eq!(tokens.asked.borrow().as_slice(), ["https://a.run.app"]);
}

#[test]
fn audience_follows_the_routed_cluster() {
    let g = guard(TOKEN_CFG);
    let mut host = FakeHost::with(&[("x-bcsp-key", "alpha")]);
    host.properties
        .insert("xds.cluster_name".into(), "eu".into());
    let tokens = FakeTokens {
        value: Some("Bearer jwt"),
        missing: Missing::Reject { retry_after_s: 1 },
        asked: RefCell::default(),
    };
    headers_step(&host, &g, Some(&tokens));
    assert_eq!(tokens.asked.borrow().as_slice(), ["https://eu.run.app"]);
}

#[test]
fn without_a_token_requests_wait_or_get_503_and_never_go_upstream() {
    let g = guard(TOKEN_CFG);
    let host = FakeHost::with(&[("x-bcsp-key", "alpha")]);
    let waiting = FakeTokens {
        value: None,
        missing: Missing::Wait { deadline_ms: 42 },
        asked: RefCell::default(),
    };
    assert_eq!(
        headers_step(&host, &g, Some(&waiting)),
        Outcome::Wait {
            audience: "https://a.run.app".into(),
            deadline_ms: 42
        }
    );
    assert_eq!(host.count(g.stats.token_waited), 1);

    let host = FakeHost::with(&[("x-bcsp-key", "alpha")]);
    let refusing = FakeTokens {
        value: None,
        missing: Missing::Reject { retry_after_s: 7 },
        asked: RefCell::default(),
    };
    assert_eq!(headers_step(&host, &g, Some(&refusing)), Outcome::Replied);
    let replies = host.replies.borrow();
    assert_eq!(replies[0].status, 503);
    assert!(replies[0]
        .headers
        .contains(&("retry-after", "7".to_owned())));
    assert_eq!(host.count(g.stats.denied_no_token), 1);

    // Token configured but the host has no token cache at all: fail closed.
    let host = FakeHost::with(&[("x-bcsp-key", "alpha")]);
    assert_eq!(headers_step(&host, &g, None), Outcome::Replied);
    assert_eq!(host.replies.borrow()[0].status, 503);
}

#[test]
fn a_host_without_metrics_or_tokens_still_authenticates() {
    // GCP Service Extensions: metric definition fails, no shared data, no timers, no calls.
    let a = SecretHash::of(b"alpha").to_hex();
    let policy =
        config::compile(format!(r#"{{"keys":[{{"id":"a","sha256":"{a}"}}]}}"#).as_bytes()).unwrap();
    let stats = Stats::define(&policy, |_: Kind, _: &str| None);
    let g = Guard { policy, stats };
    for (headers, want) in [
        (&[("x-bcsp-key", "alpha")][..], None),
        (&[("x-bcsp-key", "nope")][..], Some(401)),
    ] {
        let host = FakeHost {
            refuse_metrics: true,
            ..FakeHost::with(headers)
        };
        let out = headers_step(&host, &g, None);
        assert_eq!(host.replies.borrow().first().map(|r| r.status), want);
        assert_eq!(out == Outcome::Forward, want.is_none());
        if want.is_none() {
            assert!(
                host.property_reads.borrow().is_empty(),
                "no property needed to admit without an IP rule"
            );
        }
    }
}

// ---- routes, body limits, webhooks, lockout ----------------------------------------------

const ROUTES_CFG: &str = r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/botconnector"},
    "max_body_bytes":100"#;

fn run(host: &FakeHost, g: &Guard, end_of_stream: bool) -> Step {
    on_request_headers(host, g, Ports::default(), end_of_stream)
}

fn status(host: &FakeHost) -> Option<u32> {
    host.replies.borrow().last().map(|r| r.status)
}

#[test]
fn routes_answer_authenticated_callers_only_and_in_order() {
    let g = guard(ROUTES_CFG);
    let json = ("content-type", "application/json");
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<u32>);
    let cases: &[Case] = &[
        (
            "GET",
            "/botconnector/bots",
            &[("x-bcsp-key", "alpha")],
            None,
        ),
        (
            "GET",
            "/botconnector/bots/b1?x=1",
            &[("x-bcsp-key", "alpha")],
            None,
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), json],
            None,
        ),
        // Unauthenticated: 401 whatever the path, so paths cannot be discovered.
        ("GET", "/admin", &[], Some(401)),
        (
            "DELETE",
            "/botconnector/bots",
            &[("x-bcsp-key", "nope")],
            Some(401),
        ),
        ("GET", "/botconnector/bots/../admin", &[], Some(401)),
        ("GET", "/admin", &[("x-bcsp-key", "alpha")], Some(404)),
        (
            "GET",
            "/botconnector/bots/../admin",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "GET",
            "/botconnector/bots%2fb1",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "GET",
            "/botconnector//bots",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "GET",
            "/botconnector/bots;a=b",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "DELETE",
            "/botconnector/bots",
            &[("x-bcsp-key", "alpha")],
            Some(405),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha")],
            Some(415),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), ("content-type", "text/plain")],
            Some(415),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), json, ("content-length", "101")],
            Some(413),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), json, ("content-length", "100")],
            None,
        ),
    ];
    for (method, path, extra, want) in cases {
        let mut headers = vec![(":method", *method), (":path", *path)];
        headers.extend_from_slice(extra);
        let host = FakeHost::with(&headers);
        let step = run(&host, &g, true);
        assert_eq!(status(&host), *want, "{method} {path} {extra:?}");
        assert_eq!(step.outcome == Outcome::Forward, want.is_none());
        if let Some(405) = want {
            let r = host.replies.borrow();
            assert!(r[0].headers.contains(&("allow", "GET".to_owned())));
        }
    }
    let host = FakeHost::with(&[(":method", "GET"), (":path", "/x"), ("x-bcsp-key", "alpha")]);
    run(&host, &g, true);
    assert_eq!(host.count(g.stats.denied_route), 1);
}

#[test]
fn a_streamed_body_over_the_limit_is_cut_off_with_413() {
    let g = guard(r#","max_body_bytes":100"#);
    let host = FakeHost::with(&[
        (":method", "POST"),
        (":path", "/m"),
        ("x-bcsp-key", "alpha"),
    ]);
    let mut step = run(&host, &g, false);
    assert_eq!(step.outcome, Outcome::Forward);
    let mut body =
        |size, end| on_request_body(&host, &g, Ports::default(), &mut step.body, size, end);
    assert_eq!(body(60, false), Outcome::Forward);
    assert_eq!(
        body(40, false),
        Outcome::Forward,
        "exactly the limit is fine"
    );
    assert_eq!(body(1, true), Outcome::Replied);
    assert_eq!(status(&host), Some(413));
    assert_eq!(host.count(g.stats.denied_body_too_large), 1);
}

const SECRET: &str = "om-webhook-secret-0123456789";

fn webhook_guard() -> Guard {
    guard(&format!(
        r#","routes":{{"preset":"digital-bot-connector-v2","base_path":"/botconnector"}},
        "max_body_bytes":64,
        "webhooks":[{{"path_prefix":"/openmessaging","secret":"{SECRET}"}}]"#
    ))
}

fn sign(body: &[u8]) -> String {
    crate::policy::webhook::WebhookSecret::new(SECRET.as_bytes())
        .unwrap()
        .sign(body)
}

/// Headers, then the body in chunks as Envoy reports them while buffering (cumulative).
fn deliver(g: &Guard, headers: &[(&str, &str)], body: &[u8], chunks: usize) -> (FakeHost, Outcome) {
    deliver_with(g, Ports::default(), headers, body, chunks)
}

fn deliver_with(
    g: &Guard,
    ports: Ports<'_>,
    headers: &[(&str, &str)],
    body: &[u8],
    chunks: usize,
) -> (FakeHost, Outcome) {
    let mut host = FakeHost::with(headers);
    host.body = body.to_vec();
    let step = on_request_headers(&host, g, ports, body.is_empty());
    if step.outcome != Outcome::ReadBody {
        return (host, step.outcome);
    }
    // Held, not yet judged: the headers are untouched and no token was asked for.
    let untouched: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(*host.headers.borrow(), untouched);
    let mut state = step.body;
    let mut out = Outcome::ReadBody;
    let per = body.len().div_ceil(chunks.max(1)).max(1);
    let mut seen = 0;
    while seen < body.len() {
        seen = (seen + per).min(body.len());
        out = on_request_body(&host, g, ports, &mut state, seen, seen == body.len());
        if out != Outcome::ReadBody {
            break;
        }
    }
    (host, out)
}

#[test]
fn webhook_deliveries_are_authenticated_by_their_signature_over_the_whole_body() {
    let g = webhook_guard();
    let body = br#"{"id":"m1","text":"hello"}"#;
    let sig = sign(body);
    let base = [(":method", "POST"), (":path", "/openmessaging/inbound")];
    let with_sig = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        base.iter()
            .chain(extra)
            .map(|(n, v)| (*n, v.to_string()))
            .collect()
    };
    let h = with_sig(&[
        ("x-hub-signature-256", &sig),
        ("x-bcsp-key-id", "forged"),
        ("x-bcsp-key", "alpha"),
    ]);
    let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (host, out) = deliver(&g, &h, body, 3);
    assert_eq!(out, Outcome::Forward);
    assert!(host.header("x-bcsp-key-id").is_empty(), "no key matched");
    assert!(
        host.header("x-bcsp-key").is_empty(),
        "credentials never go upstream"
    );
    assert_eq!(host.count(g.stats.webhook_accepted), 1);
    assert_eq!(host.count(g.stats.allowed), 0);

    // A key is no substitute for the signature.
    let (host, out) = deliver(&g, &[base[0], base[1], ("x-bcsp-key", "alpha")], body, 1);
    assert_eq!((out, status(&host)), (Outcome::Replied, Some(401)));

    let wrong = sign(b"another body");
    let empty = sign(b"");
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8], Option<u32>);
    let cases: Vec<Case> = vec![
        (
            vec![base[0], base[1], ("x-hub-signature-256", &wrong)],
            body,
            Some(401),
        ),
        (
            vec![
                base[0],
                base[1],
                ("x-hub-signature-256", &sig),
                ("x-hub-signature-256", &sig),
            ],
            body,
            Some(401),
        ),
        // One byte over max_body_bytes: never read, never authenticated, 413.
        (
            vec![base[0], base[1], ("x-hub-signature-256", &sig)],
            &[b'a'; 65],
            Some(413),
        ),
        (
            vec![
                base[0],
                base[1],
                ("x-hub-signature-256", &sig),
                ("content-length", "65"),
            ],
            body,
            Some(413),
        ),
        // Signed empty body, but not a POST: 405 only once authenticated.
        (
            vec![(":method", "GET"), base[1], ("x-hub-signature-256", &empty)],
            b"",
            Some(405),
        ),
        (
            vec![(":method", "GET"), base[1], ("x-hub-signature-256", &wrong)],
            b"",
            Some(401),
        ),
    ];
    for (headers, body, want) in cases {
        let (host, _) = deliver(&g, &headers, body, 2);
        assert_eq!(status(&host), want, "{headers:?}");
    }
}

#[test]
fn a_verified_delivery_gets_its_token_only_after_verification_and_may_wait_for_it() {
    let g = guard(&format!(
        r#"{TOKEN_CFG},"max_body_bytes":64,
        "webhooks":[{{"path_prefix":"/openmessaging","secret":"{SECRET}"}}]"#
    ));
    let body = br#"{"id":"m2"}"#;
    let sig = sign(body);
    let headers = [
        (":method", "POST"),
        (":path", "/openmessaging"),
        ("x-hub-signature-256", sig.as_str()),
        ("authorization", "Bearer caller-chosen"),
    ];
    let ready = FakeTokens {
        value: Some("Bearer tok"),
        missing: Missing::Reject { retry_after_s: 1 },
        asked: RefCell::default(),
    };
    let ports = Ports {
        tokens: Some(&ready),
        lockout: None,
    };
    let (host, out) = deliver_with(&g, ports, &headers, body, 3);
    assert_eq!(out, Outcome::Forward);
    assert_eq!(host.header("authorization"), vec!["Bearer tok"]);
    assert_eq!(
        ready.asked.borrow().len(),
        1,
        "asked once, after verification"
    );

    // No token yet: the verified delivery keeps waiting in this filter.
    let later = FakeTokens {
        value: None,
        missing: Missing::Wait { deadline_ms: 99 },
        asked: RefCell::default(),
    };
    let ports = Ports {
        tokens: Some(&later),
        lockout: None,
    };
    let (host, out) = deliver_with(&g, ports, &headers, body, 2);
    assert_eq!(
        out,
        Outcome::Wait {
            audience: "https://a.run.app".into(),
            deadline_ms: 99
        }
    );
    assert!(
        host.header("authorization").is_empty(),
        "the caller's is gone"
    );

    // A wrong signature never asks for a token.
    let wrong = sign(b"other");
    let bad = [
        headers[0],
        headers[1],
        ("x-hub-signature-256", wrong.as_str()),
    ];
    let asked_before = ready.asked.borrow().len();
    let ports = Ports {
        tokens: Some(&ready),
        lockout: None,
    };
    let (host, out) = deliver_with(&g, ports, &bad, body, 2);
    assert_eq!((out, status(&host)), (Outcome::Replied, Some(401)));
    assert_eq!(ready.asked.borrow().len(), asked_before);
}

#[test]
fn a_host_that_let_the_headers_go_gets_no_verified_body_either() {
    let g = webhook_guard();
    let body = br#"{"id":"m3"}"#;
    let sig = sign(body);
    let mut host = FakeHost::with(&[
        (":method", "POST"),
        (":path", "/openmessaging"),
        ("x-hub-signature-256", &sig),
    ]);
    host.body = body.to_vec();
    host.properties
        .insert("upstream.address".into(), "10.0.0.1:8080".into());
    let mut step = run(&host, &g, false);
    assert_eq!(step.outcome, Outcome::ReadBody);
    let out = on_request_body(
        &host,
        &g,
        Ports::default(),
        &mut step.body,
        body.len(),
        true,
    );
    assert_eq!((out, status(&host)), (Outcome::Replied, Some(503)));
}

#[test]
fn held_deliveries_that_end_unverified_get_503_or_408_and_are_counted() {
    let g = webhook_guard();
    for (why, want, code) in [
        (HoldEnd::Withheld, 503, "webhook_body_unavailable"),
        (HoldEnd::NoBody, 503, "webhook_body_unavailable"),
        (HoldEnd::Incomplete, 408, "request_timeout"),
    ] {
        let host = FakeHost::default();
        end_hold(&host, &g, Some("r-1"), why);
        let replies = host.replies.borrow();
        let v: serde_json::Value = serde_json::from_str(&replies[0].body).unwrap();
        assert_eq!((replies[0].status, v["error"].as_str()), (want, Some(code)));
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(host.count(g.stats.denied_webhook_incomplete), 1);
    }
}

#[test]
fn a_body_held_while_waiting_for_a_token_is_counted_once() {
    let g = guard(&format!(r#"{TOKEN_CFG},"max_body_bytes":100"#));
    let host = FakeHost::with(&[
        (":method", "POST"),
        (":path", "/m"),
        ("x-bcsp-key", "alpha"),
    ]);
    let waiting = FakeTokens {
        value: None,
        missing: Missing::Wait { deadline_ms: 5 },
        asked: RefCell::default(),
    };
    let ports = Ports {
        tokens: Some(&waiting),
        lockout: None,
    };
    let mut step = on_request_headers(&host, &g, ports, false);
    assert!(matches!(step.outcome, Outcome::Wait { .. }));
    // Held: Envoy reports the whole buffered body each time; it stays here.
    let body =
        |state: &mut BodyState, size, end| on_request_body(&host, &g, ports, state, size, end);
    assert_eq!(body(&mut step.body, 60, false), Outcome::ReadBody);
    assert_eq!(body(&mut step.body, 90, false), Outcome::ReadBody);
    // Released (the token came): new chunks stream and add up.
    step.body.released();
    assert_eq!(body(&mut step.body, 10, false), Outcome::Forward);
    assert_eq!(body(&mut step.body, 1, true), Outcome::Replied);
    assert_eq!(status(&host), Some(413));

    // Over the limit while still held: 413 at once.
    let host = FakeHost::with(&[
        (":method", "POST"),
        (":path", "/m"),
        ("x-bcsp-key", "alpha"),
    ]);
    let mut step = on_request_headers(&host, &g, ports, false);
    let out = on_request_body(&host, &g, ports, &mut step.body, 101, false);
    assert_eq!((out, status(&host)), (Outcome::Replied, Some(413)));
}

#[test]
fn a_path_trick_never_reaches_a_webhook_prefix() {
    let g = webhook_guard();
    let sig = sign(b"");
    // Not a clean path: treated as a key-authenticated request, so the signature alone is 401.
    for path in [
        "/openmessaging/../botconnector/bots",
        "/openmessaging/%2e%2e/x",
        "/openmessaging;x",
    ] {
        let host = FakeHost::with(&[
            (":method", "POST"),
            (":path", path),
            ("x-hub-signature-256", &sig),
        ]);
        run(&host, &g, true);
        assert_eq!(status(&host), Some(401), "{path}");
    }
}

struct FakeLockout {
    locked: Option<u64>,
    failures: RefCell<Vec<IpAddr>>,
}

impl LockoutPort for FakeLockout {
    fn locked(&self, _client: IpAddr) -> Option<u64> {
        self.locked
    }
    fn failed(&self, client: IpAddr) -> Failure {
        self.failures.borrow_mut().push(client);
        Failure::LockedOut {
            until_s: 1_800_000_300,
            failures: 20,
        }
    }
}

#[test]
fn lockout_counts_401s_per_client_and_answers_429_before_any_credential_check() {
    let g = guard(r#","lockout":{"max_failures":20,"window_s":60,"cooldown_s":300}"#);
    let counting = FakeLockout {
        locked: None,
        failures: RefCell::default(),
    };
    let mut host = FakeHost::with(&[("x-bcsp-key", "wrong")]);
    host.properties
        .insert("source.address".into(), "198.51.100.7:4000".into());
    let ports = Ports {
        tokens: None,
        lockout: Some(&counting),
    };
    on_request_headers(&host, &g, ports, true);
    assert_eq!(status(&host), Some(401));
    assert_eq!(
        counting.failures.borrow().as_slice(),
        ["198.51.100.7".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(host.count(g.stats.lockout_started), 1);

    let locked = FakeLockout {
        locked: Some(42),
        failures: RefCell::default(),
    };
    let mut host = FakeHost::with(&[("x-bcsp-key", "alpha")]);
    host.properties
        .insert("source.address".into(), "198.51.100.7:4000".into());
    let ports = Ports {
        tokens: None,
        lockout: Some(&locked),
    };
    assert_eq!(
        on_request_headers(&host, &g, ports, true).outcome,
        Outcome::Replied
    );
    let replies = host.replies.borrow();
    assert_eq!(
        replies[0].status, 429,
        "even a valid key waits out the cooldown"
    );
    assert!(replies[0]
        .headers
        .contains(&("retry-after", "42".to_owned())));
    assert_eq!(host.count(g.stats.denied_locked_out), 1);
    assert_eq!(host.count(g.stats.allowed), 0);
    assert!(
        locked.failures.borrow().is_empty(),
        "a 429 is not a failure"
    );
}

mod hygiene;
