//! Credentials in, identity out: key ids stamped, credentials removed, refusals counted,
//! tokens injected or awaited.

use super::*;

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
