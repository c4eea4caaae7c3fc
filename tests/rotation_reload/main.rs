//! Key rotation, end to end: docs/OPERATIONS.md "Rotating a key without downtime", step by step, on
//! a real Envoy that reads its listener from a file (filesystem LDS) while a client keeps
//! sending valid requests. Every config change is a listener update — what an operator's
//! config push does — and not one request of the stream may fail.
//!
//! Layout: `lds_envoy` (Envoy reading its listener from a file, and `push` to update it),
//! `stream` (the client that keeps sending), and the walk-through below.

#[path = "../harness/mod.rs"]
mod harness;

mod lds_envoy;
mod stream;

use harness::*;
use lds_envoy::LdsEnvoy;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use stream::{Sent, Stream, USING_NEW, USING_OLD};

const OLD_ID: &str = "genesys-2026q4";
const NEW_ID: &str = "genesys-2027q1";
const OLD_SECRET: &str = "k3y-OLD-rotation-4f1a9c2e7b";
const NEW_SECRET: &str = "k3y-NEW-rotation-8d3e5a1c0f";
/// Bound on every wait for Envoy (a reload, a counter).
const WAIT: Duration = Duration::from_secs(5);

/// Bounded wait until `cond` holds; `what` names it in the failure.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accepted(id: &str) -> String {
    format!("bcsp_guard.key.{id}.accepted")
}

// ---------------------------------------------------------------------------------------------
// The walk-through
// ---------------------------------------------------------------------------------------------

#[test]
fn rotating_a_key_by_listener_updates_loses_no_request() {
    let start = Instant::now();
    let t = now();
    let old_key = with(
        key(OLD_ID, OLD_SECRET),
        json!({"not_before": rfc3339(t - 90 * 86_400)}),
    );
    let upstream = Recorder::start();

    // (a) The old key only; Genesys sends the old secret, steadily.
    let mut envoy = LdsEnvoy::start(&json!({"keys": [old_key.clone()]}), upstream.addr());
    let updates_at_start = envoy.envoy_stat("listener_manager.lds.update_success");
    let stream = Stream::start(envoy.listener);
    // Genesys keeps connections open: one opened now, before any update.
    let mut held = Connection::open(envoy.listener, None);
    let reply = held.send(&request("GET", "/held").header("x-bcsp-key", OLD_SECRET));
    assert_eq!(reply.status, 200, "{}", reply.text());
    stream.wait_for(USING_OLD, 10);
    let old_before_reload = envoy.plugin_counter(&accepted(OLD_ID)).unwrap_or(0);
    assert!(old_before_reload >= 10, "{old_before_reload}");
    assert_eq!(envoy.plugin_counter(&accepted(NEW_ID)), None);

    // (b) Add the new key's hash, valid from a second ago → reload.
    stream.step('b');
    let new_key = with(
        key(NEW_ID, NEW_SECRET),
        json!({"not_before": rfc3339(now() - 1)}),
    );
    envoy.push(&json!({"keys": [old_key.clone(), new_key.clone()]}));
    // What the operator sees once the new config is live: the new key's counter, at 0, and
    // the old key's counter carried over the update (not reset).
    wait_until("key.<new>.accepted is defined", || {
        envoy.plugin_counter(&accepted(NEW_ID)).is_some()
    });
    assert_eq!(envoy.plugin_counter(&accepted(NEW_ID)), Some(0));
    // Envoy applies a listener update to new connections; one opened before it keeps the
    // old config until it drains. So the operator waits for the drain before step (c).
    let reply = held.send(&request("GET", "/held").header("x-bcsp-key", OLD_SECRET));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = held.send(&request("GET", "/held").header("x-bcsp-key", NEW_SECRET));
    assert_eq!(
        reply.status,
        401,
        "a connection older than the update already has the new key: {}",
        reply.text()
    );
    drop(held);
    wait_until("the replaced filter chain drains", || {
        envoy.envoy_stat("listener_manager.total_filter_chains_draining") == 0
    });
    stream.wait_for(USING_OLD, 10);
    let old_after_reload = envoy.plugin_counter(&accepted(OLD_ID)).unwrap_or(0);
    assert!(
        old_after_reload > old_before_reload,
        "key.{OLD_ID}.accepted went from {old_before_reload} to {old_after_reload} over a listener update"
    );

    // (c) Genesys's credential field is updated: the client now sends the new secret.
    stream.step('c');
    stream.secret.store(USING_NEW, Ordering::SeqCst);
    stream.wait_for(USING_NEW, 1);

    // (d) Traffic moves: key.<new>.accepted rises, key.<old>.accepted stands still.
    stream.step('d');
    let old_settled = envoy.plugin_counter(&accepted(OLD_ID)).unwrap_or(0);
    let new_then = envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0);
    assert!(
        new_then >= 1,
        "the first new-secret request was not counted"
    );
    wait_until("key.<new>.accepted rises by 10", || {
        envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0) >= new_then + 10
    });
    assert_eq!(
        envoy.plugin_counter(&accepted(OLD_ID)),
        Some(old_settled),
        "key.{OLD_ID}.accepted still rises after the switch"
    );

    // (e) Retire the old key: not_after = now → reload. Its secret is now refused.
    stream.step('e');
    let old_expired = with(old_key.clone(), json!({"not_after": rfc3339(now())}));
    envoy.push(&json!({"keys": [old_expired, new_key.clone()]}));
    let expired_before = envoy.plugin_counter("bcsp_guard.denied.expired_key");
    let id = rid("retired");
    let reply = request("GET", "/bots")
        .to(envoy.listener)
        .header("x-bcsp-key", OLD_SECRET)
        .header("x-request-id", &id)
        .send();
    assert_unauthenticated(&reply, &id, "x-bcsp-key", &[OLD_SECRET, NEW_SECRET]);
    assert_eq!(
        envoy.plugin_counter("bcsp_guard.denied.expired_key"),
        Some(expired_before.unwrap_or(0) + 1),
        "the old secret is refused as outside its window"
    );
    stream.wait_for(USING_NEW, 10);

    // (f) Remove the old key → reload. The stream keeps going on the new key.
    stream.step('f');
    envoy.push(&json!({"keys": [new_key.clone()]}));
    let id = rid("removed");
    let reply = request("GET", "/bots")
        .to(envoy.listener)
        .header("x-bcsp-key", OLD_SECRET)
        .header("x-request-id", &id)
        .send();
    assert_unauthenticated(&reply, &id, "x-bcsp-key", &[OLD_SECRET, NEW_SECRET]);
    stream.wait_for(USING_NEW, 10);
    // Once the replaced filter chains have drained (--drain-time-s 1), what the operator
    // sees: the removed key's counter frozen at its last value (the plugin VM, and the
    // metric it defined, outlive the listener versions), the new key's still rising.
    wait_until("the replaced filter chains drain", || {
        envoy.envoy_stat("listener_manager.total_filter_chains_draining") == 0
    });
    let new_drained = envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0);
    stream.wait_for(USING_NEW, 5);
    assert!(envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0) >= new_drained + 5);
    assert_eq!(
        envoy.plugin_counter(&accepted(OLD_ID)),
        Some(old_settled),
        "key.{OLD_ID}.accepted after its key was removed"
    );
    let sent = stream.finish();

    // Not one request of the stream failed.
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.result != Ok(200)).collect();
    let per_step = |step: char| sent.iter().filter(|s| s.step == step).count();
    eprintln!(
        "rotation stream: {} requests ({} old secret, {} new secret); per step a={} b={} c={} d={} \
         e={} f={}; failed {}; {:?} in all",
        sent.len(),
        sent.iter().filter(|s| s.secret == USING_OLD).count(),
        sent.iter().filter(|s| s.secret == USING_NEW).count(),
        per_step('a'),
        per_step('b'),
        per_step('c'),
        per_step('d'),
        per_step('e'),
        per_step('f'),
        failed.len(),
        start.elapsed(),
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rotation: {:?}",
        failed.len(),
        sent.len(),
        failed.iter().take(10).collect::<Vec<_>>()
    );

    // Three listener updates really happened, in place, on the same address.
    let updates = envoy.envoy_stat("listener_manager.lds.update_success") - updates_at_start;
    assert_eq!(updates, 3, "LDS updates after startup");
    let modified = envoy.envoy_stat("listener_manager.listener_modified")
        + envoy.envoy_stat("listener_manager.listener_in_place_updated");
    assert!(modified >= 3, "listener updates applied: {modified}");
    assert_eq!(envoy.envoy_stat("listener_manager.lds.update_rejected"), 0);
    assert_eq!(
        envoy.envoy_stat_text("listener_manager.lds.version_text"),
        "\"4\""
    );

    // The upstream saw each stream request once, stamped with the key its secret belongs to,
    // and never a credential.
    let seen = upstream.requests();
    for s in &sent {
        let target = format!("/bots?seq={}", s.seq);
        let hits: Vec<&Seen> = seen.iter().filter(|r| r.target == target).collect();
        assert_eq!(hits.len(), 1, "upstream saw {target} {} times", hits.len());
        let want = if s.secret == USING_NEW {
            NEW_ID
        } else {
            OLD_ID
        };
        assert_eq!(
            hits[0].headers_named("x-bcsp-key-id"),
            vec![want],
            "seq {} (step {})",
            s.seq,
            s.step
        );
        assert!(hits[0].headers_named("x-bcsp-key").is_empty());
    }
    let others: Vec<&str> = seen
        .iter()
        .filter(|r| !r.target.starts_with("/bots?seq="))
        .map(|r| r.target.as_str())
        .collect();
    assert_eq!(
        others,
        ["/held", "/held"],
        "only the admitted requests of the held connection, none of the refused ones"
    );
    for (step, secret) in [('a', USING_OLD), ('b', USING_OLD), ('d', USING_NEW)] {
        assert!(
            sent.iter().any(|s| s.step == step && s.secret == secret),
            "no request in step {step}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    // Four configs were loaded; none of them put a secret or a hash in the log.
    std::thread::sleep(Duration::from_millis(200));
    let log = envoy.full_log();
    for secret in [OLD_SECRET, NEW_SECRET] {
        let hash = sha256_hex(secret);
        for leak in [secret.to_owned(), hash.clone(), hash.to_uppercase()] {
            assert!(!log.contains(&leak), "Envoy's log holds {leak}");
        }
    }
}
