//! Webhook deliveries: held in the filter until their signature over the whole body checks out.

use super::*;

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
    assert_eq!((out, last_status(&host)), (Outcome::Replied, Some(401)));

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
        assert_eq!(last_status(&host), want, "{headers:?}");
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
    assert_eq!((out, last_status(&host)), (Outcome::Replied, Some(401)));
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
    let mut step = on_headers(&host, &g, false);
    assert_eq!(step.outcome, Outcome::ReadBody);
    let out = on_request_body(
        &host,
        &g,
        Ports::default(),
        &mut step.body,
        body.len(),
        true,
    );
    assert_eq!((out, last_status(&host)), (Outcome::Replied, Some(503)));
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
fn a_held_delivery_that_never_completes_is_audited_with_its_sender_and_webhook() {
    use crate::pipeline::audit::Reason;
    let g = guard(&format!(
        r#","allow_cidrs":["198.51.100.0/24"],
        "webhooks":[{{"path_prefix":"/openmessaging","secret":"{SECRET}"}}]"#
    ));
    let body = br#"{"a":1}"#;
    let headers = [
        (":method", "POST"),
        (":path", "/openmessaging/inbound"),
        ("content-type", "application/json"),
        ("x-hub-signature-256", &sign(body)),
    ];
    let host = recorder(&headers);
    let step = on_request_headers(&host, &g, Ports::default(), false);
    assert_eq!(step.outcome, Outcome::ReadBody);
    end_hold(&host, &g, None, HoldEnd::Incomplete);
    let audit = host.into_effects(Outcome::Replied).audit;
    assert_eq!(audit.verdict, Some(Some(408)));
    assert_eq!(audit.reason, Some(Reason::WebhookIncomplete));
    assert_eq!(audit.client, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(audit.client_source.as_deref(), Some("peer"));
    assert_eq!(audit.route.as_deref(), Some("webhook /openmessaging"));
    assert_eq!(audit.key_id, None);
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
    assert_eq!(last_status(&host), Some(413));

    // Over the limit while still held: 413 at once.
    let host = FakeHost::with(&[
        (":method", "POST"),
        (":path", "/m"),
        ("x-bcsp-key", "alpha"),
    ]);
    let mut step = on_request_headers(&host, &g, ports, false);
    let out = on_request_body(&host, &g, ports, &mut step.body, 101, false);
    assert_eq!((out, last_status(&host)), (Outcome::Replied, Some(413)));
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
        on_headers(&host, &g, true);
        assert_eq!(last_status(&host), Some(401), "{path}");
    }
}
