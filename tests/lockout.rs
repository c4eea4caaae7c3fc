//! Lockout of guessing clients in a real Envoy with two workers: 401s from one address are
//! counted across workers, the address then gets 429 + retry-after (even with a valid key)
//! until the cooldown ends, with one log line and a counter per lockout.

mod harness;

use harness::*;
use serde_json::json;
use std::time::{Duration, Instant};

const KEY: &str = "k3y-lockout-suite-0a9d";
const COOLDOWN_S: u64 = 3;

fn stack() -> Stack {
    let filter = json!({
        "keys": [key("k1", KEY)],
        "lockout": {"max_failures": 4, "window_s": 60, "cooldown_s": COOLDOWN_S},
    });
    // exact_balance: a new connection goes to the worker with fewer, so two connections held
    // open at once are served by the two different workers.
    Stack::start(&EnvoyConfig::new(filter).concurrency(2).exact_balance(true))
}

/// The worker threads that logged a line containing `needle`.
fn threads_logging(log: &str, needle: &str) -> Vec<String> {
    let mut t: Vec<String> = log
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split("][").nth(1).map(str::to_owned))
        .collect();
    t.sort();
    t.dedup();
    t
}

#[test]
fn failures_on_two_workers_add_up_to_one_lockout_that_expires() {
    let stack = stack();
    let guesser = lo(7);
    let mut a = Connection::open(stack.envoy.addr(), Some(guesser));
    let mut b = Connection::open(stack.envoy.addr(), Some(guesser));
    let wrong = |tag: &str| {
        stack
            .request("/botconnector/bots")
            .header("x-bcsp-key", "k3y-GUESS")
            .header("x-request-id", &rid(tag))
    };
    let valid = || {
        stack
            .request("/botconnector/bots")
            .header("x-bcsp-key", KEY)
    };

    // Two failures on each worker: neither worker alone reached max_failures (4).
    assert_eq!(a.send(&wrong("guess")).status, 401);
    assert_eq!(b.send(&wrong("guess")).status, 401);
    assert_eq!(a.send(&wrong("guess")).status, 401);
    let log = stack.envoy.settled_log();
    assert_eq!(
        threads_logging(&log, "bcsp-guard: denied 401").len(),
        2,
        "the guesses were served by two workers:\n{log}"
    );
    assert_eq!(
        b.send(&wrong("guess")).status,
        401,
        "the 4th failure starts the lockout"
    );
    let locked_at = Instant::now();

    // Now locked out on both workers, even with a valid key.
    for conn in [&mut a, &mut b] {
        let r = conn.send(&valid());
        assert_eq!(r.status, 429, "reply: {}", r.text());
        assert_eq!(r.json()["error"], "too_many_failures");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=COOLDOWN_S).contains(&retry), "retry-after {retry}");
    }
    assert_eq!(
        a.send(&wrong("locked")).status,
        429,
        "no oracle while locked"
    );
    // Another address is not affected.
    let other = valid().from(lo(8)).send();
    assert_eq!(other.status, 200, "reply: {}", other.text());

    let log = stack
        .envoy
        .wait_for_log("bcsp-guard: locked out client=127.0.0.7");
    assert_eq!(
        log.matches("bcsp-guard: locked out client=127.0.0.7")
            .count(),
        1,
        "one log line per lockout:\n{log}"
    );
    assert!(
        log.contains("after 4 failed authentications within 60 s"),
        "{log}"
    );
    assert_eq!(stack.envoy.counter("bcsp_guard.lockout.started"), 1);
    assert_eq!(stack.envoy.counter("bcsp_guard.denied.locked_out"), 3);
    assert_eq!(
        stack.upstream.count(),
        1,
        "only the other address got through"
    );

    // After the cooldown the valid key works again, on both workers.
    let wait = Duration::from_secs(COOLDOWN_S) + Duration::from_millis(1100);
    std::thread::sleep(wait.saturating_sub(locked_at.elapsed()));
    for conn in [&mut a, &mut b] {
        let r = conn.send(&valid());
        assert_eq!(r.status, 200, "after the cooldown: {}", r.text());
    }
    assert_eq!(stack.envoy.counter("bcsp_guard.denied.locked_out"), 3);
    stack.envoy.assert_log_free_of(&[KEY], &["k3y-GUESS"]);
}
