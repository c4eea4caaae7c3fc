//! The audit record each verdict leaves for the access log (through the recording host).

use super::*;
use crate::pipeline::audit::{Audit, Lockout, Reason};

fn run(g: &Guard, ports: Ports<'_>, path: &str, headers: &[(&str, &str)]) -> Audit {
    let mut all = vec![(":method", "GET"), (":path", path)];
    all.extend_from_slice(headers);
    recorder(&all).run(g, ports).audit
}

/// A request's path, headers, and the status and reason it must get.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u32, Reason);

fn fields(a: &Audit) -> Vec<(&'static str, String)> {
    a.fields().map(|(f, v)| (f.name, v.into_owned())).collect()
}

#[test]
fn an_admitted_request_names_key_route_and_audience() {
    let g = guard(&format!("{TOKEN_CFG}{ROUTES_CFG}"));
    let tokens = FakeTokens {
        value: Some("Bearer jwt.secret.sig"),
        missing: Missing::Reject { retry_after_s: 1 },
        asked: RefCell::default(),
    };
    let ports = Ports {
        tokens: Some(&tokens),
        lockout: None,
    };
    let a = run(&g, ports, "/botconnector/bots", &[("x-bcsp-key", "alpha")]);
    assert_eq!(
        fields(&a),
        [
            ("key_id", "a".to_owned()),
            ("verdict", "forwarded".to_owned()),
            ("reason", "allowed".to_owned()),
            ("route", "GET /botconnector/bots".to_owned()),
            ("audience", "https://a.run.app".to_owned()),
        ]
    );
}

#[test]
fn each_refusal_names_its_counter_and_status() {
    let g = guard(&format!(
        "{ROUTES_CFG},\"allow_cidrs\":[\"198.51.100.0/24\"]"
    ));
    let cases: [Case<'_>; 4] = [
        ("/botconnector/bots", &[], 401, Reason::MissingKey),
        (
            "/botconnector/bots",
            &[("x-bcsp-key", "guess")],
            401,
            Reason::InvalidKey,
        ),
        (
            "/botconnector/bots",
            &[("x-bcsp-key", "alpha"), ("x-bcsp-key", "alpha")],
            401,
            Reason::InvalidKey,
        ),
        (
            "/botconnector/nope",
            &[("x-bcsp-key", "alpha")],
            404,
            Reason::Route,
        ),
    ];
    for (path, headers, status, reason) in cases {
        let a = run(&g, Ports::default(), path, headers);
        assert_eq!(a.verdict, Some(Some(status)), "{path} {headers:?}");
        assert_eq!(a.reason, Some(reason), "{path} {headers:?}");
        assert_eq!(a.client, "198.51.100.7".parse().ok());
        assert_eq!(a.client_source.as_deref(), Some("peer"));
    }
    let outside = guard(r#","allow_cidrs":["10.0.0.0/8"]"#);
    let a = run(
        &outside,
        Ports::default(),
        "/bots",
        &[("x-bcsp-key", "alpha")],
    );
    assert_eq!(a.verdict, Some(Some(403)));
    assert_eq!(a.reason, Some(Reason::Ip));
    assert_eq!(a.key_id, None, "the key is never looked at");
}

#[test]
fn lockout_state_is_recorded() {
    let g = guard(r#","lockout":{"max_failures":20,"window_s":60,"cooldown_s":300}"#);
    let counting = FakeLockout {
        locked: None,
        failures: RefCell::default(),
    };
    let ports = Ports {
        tokens: None,
        lockout: Some(&counting),
    };
    let a = run(&g, ports, "/bots", &[("x-bcsp-key", "wrong")]);
    assert_eq!(a.lockout, Some(Lockout::Started), "the fake locks at once");
    let a = run(&g, ports, "/bots", &[("x-bcsp-key", "alpha")]);
    assert_eq!(a.lockout, Some(Lockout::Clear));
    let locked = FakeLockout {
        locked: Some(9),
        failures: RefCell::default(),
    };
    let ports = Ports {
        tokens: None,
        lockout: Some(&locked),
    };
    let a = run(&g, ports, "/bots", &[("x-bcsp-key", "alpha")]);
    assert_eq!(a.verdict, Some(Some(429)));
    assert_eq!(a.reason, Some(Reason::LockedOut));
    assert_eq!(a.lockout, Some(Lockout::Locked));
}

#[test]
fn a_wait_that_ends_without_a_token_keeps_key_and_audience() {
    let g = guard(TOKEN_CFG);
    let tokens = FakeTokens {
        value: None,
        missing: Missing::Reject { retry_after_s: 3 },
        asked: RefCell::default(),
    };
    let ports = Ports {
        tokens: Some(&tokens),
        lockout: None,
    };
    let a = run(&g, ports, "/bots", &[("x-bcsp-key", "alpha")]);
    assert_eq!(a.verdict, Some(Some(503)));
    assert_eq!(a.reason, Some(Reason::NoToken));
    assert_eq!(a.key_id.as_deref(), Some("a"));
    assert_eq!(a.audience.as_deref(), Some("https://a.run.app"));
}

#[test]
fn no_field_carries_a_presented_secret_or_the_token() {
    let g = guard(TOKEN_CFG);
    let tokens = FakeTokens {
        value: Some("Bearer jwt.secret.sig"),
        missing: Missing::Reject { retry_after_s: 1 },
        asked: RefCell::default(),
    };
    let ports = Ports {
        tokens: Some(&tokens),
        lockout: None,
    };
    for secret in ["alpha", "not-a-key"] {
        let a = run(&g, ports, "/bots", &[("x-bcsp-key", secret)]);
        for (field, value) in a.fields() {
            let name = field.name;
            assert!(!value.contains(secret), "{name}={value}");
            assert!(!value.contains("jwt.secret.sig"), "{name}={value}");
        }
    }
}

#[test]
fn every_reason_code_is_a_counter_name() {
    let g = guard(&format!(
        "{TOKEN_CFG}{ROUTES_CFG},\"lockout\":{{\"max_failures\":2,\"window_s\":60,\"cooldown_s\":60}},\
         \"webhooks\":[{{\"path_prefix\":\"/om\",\"secret\":\"om-webhook-secret-0123456789\"}}]"
    ));
    let mut names = Vec::new();
    Stats::define(&g.policy, |kind, name| {
        if kind == Kind::Counter {
            names.push(name.to_owned());
        }
        None
    });
    for reason in Reason::ALL {
        let full = format!("{}{}", metrics::PREFIX, reason.code());
        assert!(names.contains(&full), "{full} is not a counter");
        assert!(reason.counter(&g.stats).is_some(), "{full} has no id");
    }
}

#[test]
fn audit_fields_false_hands_the_host_nothing() {
    // Admitted and refused alike: the host is never asked to write a field.
    let g = guard(&format!("{ROUTES_CFG},\"audit_fields\":false"));
    let none = Ports {
        tokens: None,
        lockout: None,
    };
    let admitted = run(&g, none, "/botconnector/bots", &[("x-bcsp-key", "alpha")]);
    assert_eq!(fields(&admitted), []);
    let none = Ports {
        tokens: None,
        lockout: None,
    };
    let refused = run(&g, none, "/botconnector/bots", &[]);
    assert_eq!(fields(&refused), []);
}
