//! Lockout: 401s counted per client, 429 before any credential check.

use super::*;

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
    assert_eq!(last_status(&host), Some(401));
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
