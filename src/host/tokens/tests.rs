//! Several workers over one fake shared-data store: the single-flight and freshness rules.

use super::*;
use crate::host::testing::{SharedStore as Store, Worker};
use crate::policy::upstream::UpstreamToken;
use crate::token::jwt::base64url_encode;
use crate::token::schedule::Timing;

const T0: u64 = 1_800_000_000_000;

fn upstream_token() -> UpstreamToken {
    UpstreamToken {
        cluster: "meta".into(),
        audience: "https://a.run.app".into(),
        audience_by_cluster: vec![],
        key_audiences: vec![],
        header: "authorization".into(),
        authority: "metadata.google.internal".into(),
        path: "/identity".into(),
        timing: Timing {
            refresh_margin_s: 5,
            expiry_skew_s: 1,
            max_wait_ms: 3000,
            fetch_timeout_ms: 2000,
        },
    }
}

fn jwt_expiring_at(exp_s: u64) -> Vec<u8> {
    let h = base64url_encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let p = base64url_encode(format!(r#"{{"aud":"https://a.run.app","exp":{exp_s}}}"#).as_bytes());
    format!("{h}.{p}.c2ln").into_bytes()
}

fn ok_reply(lifetime_s: u64, now_ms: u64) -> FetchReply {
    FetchReply {
        status: Some(200),
        body: jwt_expiring_at(now_ms / 1000 + lifetime_s),
    }
}

fn workers(n: u64) -> Vec<TokenWorker> {
    (1..=n)
        .map(|id| TokenWorker::new(&upstream_token(), id))
        .collect()
}

/// Ticks every worker; returns (worker index, call id) of fetches started.
fn tick_all(store: &Store, ws: &mut [TokenWorker]) -> Vec<(usize, u32)> {
    let mut started = Vec::new();
    for (i, w) in ws.iter_mut().enumerate() {
        for r in w.tick(&Worker { store }) {
            started.push((i, r.unwrap()));
        }
    }
    started
}

/// Ticks until the one cold-start fetch begins; asserts there is exactly one.
fn cold_start(store: &Store, ws: &mut [TokenWorker]) -> (usize, u32) {
    let mut started = tick_all(store, ws);
    for _ in 0..3 {
        advance(store, 100);
        started.extend(tick_all(store, ws));
    }
    assert_eq!(started.len(), 1, "{started:?}");
    started[0]
}

fn advance(store: &Store, ms: u64) {
    store.clock_ms.set(store.clock_ms.get() + ms);
}

#[test]
fn four_cold_workers_make_exactly_one_fetch() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let mut ws = workers(4);
    let (who, call) = cold_start(&store, &mut ws);
    assert_eq!(
        store.calls.borrow()[0],
        "meta metadata.google.internal /identity?audience=https%3A%2F%2Fa.run.app"
    );
    let out = ws[who].on_fetch_response(&Worker { store: &store }, call, ok_reply(10, T0));
    assert!(matches!(out, FetchOutcome::Stored { .. }), "{out:?}");
    // Every worker now serves the same token without another fetch.
    for w in ws.iter_mut() {
        let v = w
            .header_value(&Worker { store: &store }, "https://a.run.app")
            .unwrap();
        assert!(v.starts_with("Bearer ey"));
    }
    advance(&store, 100);
    assert!(tick_all(&store, &mut ws).is_empty());
}

#[test]
fn refresh_starts_once_when_the_margin_is_reached_and_never_serves_stale() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let mut ws = workers(3);
    let (who, call) = cold_start(&store, &mut ws);
    ws[who].on_fetch_response(
        &Worker { store: &store },
        call,
        ok_reply(10, store.clock_ms.get()),
    );
    // 10 s life, 5 s margin: nothing due for the first ~5 s.
    advance(&store, 4000);
    assert!(tick_all(&store, &mut ws).is_empty());
    advance(&store, 1200);
    let refresh = tick_all(&store, &mut ws);
    assert_eq!(refresh.len(), 1, "{refresh:?}");
    // The refresh fails; the old token still serves until exp - skew, then nothing.
    let (who, call) = refresh[0];
    let out = ws[who].on_fetch_response(
        &Worker { store: &store },
        call,
        FetchReply {
            status: Some(500),
            body: vec![],
        },
    );
    assert!(matches!(out, FetchOutcome::Failed { .. }));
    let port = Worker { store: &store };
    assert!(ws[2].header_value(&port, "https://a.run.app").is_some());
    let exp_s = (T0 + 300) / 1000 + 10;
    store.clock_ms.set(exp_s * 1000 - 1000);
    for w in ws.iter_mut() {
        assert!(
            w.header_value(&port, "https://a.run.app").is_none(),
            "stale token served"
        );
    }
    store.clock_ms.set(exp_s * 1000 - 1001);
    assert!(ws[0].header_value(&port, "https://a.run.app").is_some());
}

#[test]
fn failures_back_off_before_the_next_attempt() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let mut ws = workers(2);
    let (who, call) = cold_start(&store, &mut ws);
    let out = ws[who].on_fetch_response(
        &Worker { store: &store },
        call,
        FetchReply {
            status: None,
            body: vec![],
        },
    );
    let FetchOutcome::Failed {
        retry_in_ms,
        reason,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert!((500..=1000).contains(&retry_in_ms), "{retry_in_ms}");
    assert!(reason.contains("no response"));
    assert!(
        tick_all(&store, &mut ws).is_empty(),
        "retried inside the backoff"
    );
    advance(&store, retry_in_ms);
    assert_eq!(tick_all(&store, &mut ws).len(), 1);
}

#[test]
fn bad_bodies_count_as_failed_fetches() {
    for body in [
        b"not a jwt".to_vec(),
        jwt_expiring_at(T0 / 1000 - 10),
        jwt_expiring_at(T0 / 1000 + 1),
        {
            let mut b = jwt_expiring_at(T0 / 1000 + 100);
            b.insert(5, b'\n');
            b
        },
    ] {
        let store = Store::default();
        store.clock_ms.set(T0);
        let mut ws = workers(1);
        let (_, call) = cold_start(&store, &mut ws);
        let out = ws[0].on_fetch_response(
            &Worker { store: &store },
            call,
            FetchReply {
                status: Some(200),
                body,
            },
        );
        assert!(matches!(out, FetchOutcome::Failed { .. }), "{out:?}");
        assert!(ws[0]
            .header_value(&Worker { store: &store }, "https://a.run.app")
            .is_none());
    }
}

#[test]
fn a_vanished_fetcher_blocks_refresh_only_until_its_lease_expires() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let mut ws = workers(2);
    let (orphan, _) = cold_start(&store, &mut ws);
    // That worker disappears: replace it with a fresh one that knows nothing.
    ws[orphan] = TokenWorker::new(&upstream_token(), 99);
    advance(&store, 2000);
    assert!(
        tick_all(&store, &mut ws).is_empty(),
        "lease ignored before it expired"
    );
    advance(&store, 1100);
    assert_eq!(tick_all(&store, &mut ws).len(), 1);
}

#[test]
fn dispatch_refusal_is_a_failure_with_backoff() {
    let store = Store::default();
    store.clock_ms.set(T0);
    store.refuse_dispatch.set(true);
    let mut ws = workers(1);
    ws[0].tick(&Worker { store: &store });
    let results = ws[0].tick(&Worker { store: &store });
    assert!(matches!(results.as_slice(), [Err(_)]), "{results:?}");
    store.refuse_dispatch.set(false);
    assert!(ws[0].tick(&Worker { store: &store }).is_empty());
}

#[test]
fn waiting_requests_resume_on_arrival_or_are_refused_at_their_deadline() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let mut ws = workers(2);
    let host = Worker { store: &store };
    ws[1].add_waiter(7, "https://a.run.app", T0 + 3000);
    ws[1].add_waiter(8, "https://a.run.app", T0 + 500);
    ws[1].add_waiter(9, "https://unknown.example", T0 + 500);
    assert!(ws[1].has_waiters());
    let (who, call) = cold_start(&store, &mut ws);
    advance(&store, 300);
    let released = ws[1].release_waiters(&host);
    assert!(
        matches!(released.as_slice(), [Release::Refuse { context_id: 8, .. }]),
        "{released:?}"
    );
    // Worker 0 or 1 fetched; worker 1's waiter is released once the shared copy exists.
    ws[who].on_fetch_response(&host, call, ok_reply(3600, store.clock_ms.get()));
    let released = ws[1].release_waiters(&host);
    match released.as_slice() {
        [Release::Resume {
            context_id: 7,
            header_value,
        }] => assert!(header_value.starts_with("Bearer ")),
        other => panic!("{other:?}"),
    }
    assert!(!ws[1].has_waiters());
    ws[0].add_waiter(10, "https://a.run.app", T0);
    ws[0].remove_waiter(10);
    assert!(!ws[0].has_waiters());
}

#[test]
fn worker_ids_are_unique() {
    let store = Store::default();
    let ids: Vec<u64> = (0..6)
        .map(|_| claim_holder_id(&Worker { store: &store }))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "{ids:?}");
}

/// Ticks one worker until its cold-start fetch begins.
fn first_fetch(store: &Store, w: &mut TokenWorker) -> u32 {
    for _ in 0..4 {
        if let Some(r) = w.tick(&Worker { store }).pop() {
            return r.unwrap();
        }
        advance(store, 100);
    }
    panic!("no fetch started");
}

#[test]
fn tokens_live_only_under_their_namespace() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let ns = "bcsp_guard.v2.bcsp_guard.0123";
    let mut w = TokenWorker::in_namespace(&upstream_token(), 1, ns);
    let host = Worker { store: &store };
    let call = first_fetch(&store, &mut w);
    let out = w.on_fetch_response(&host, call, ok_reply(3600, store.clock_ms.get()));
    let FetchOutcome::Stored {
        usable_until_ms,
        next_fetch_ms,
        ..
    } = out
    else {
        panic!("{out:?}");
    };
    let exp_ms = (store.clock_ms.get() / 1000 + 3600) * 1000;
    assert_eq!(usable_until_ms, exp_ms - 1_000, "exp minus the 1 s skew");
    assert_eq!(next_fetch_ms, exp_ms - 5_000, "exp minus the 5 s margin");
    let keys: Vec<String> = store.data.borrow().keys().cloned().collect();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with(ns)), "{keys:?}");
    // A worker of another configuration finds nothing and fetches its own.
    let mut other =
        TokenWorker::in_namespace(&upstream_token(), 2, "bcsp_guard.v2.bcsp_guard.4567");
    assert!(other.header_value(&host, "https://a.run.app").is_none());
}

#[test]
fn a_short_lived_token_reports_the_fetch_that_really_comes_next() {
    let store = Store::default();
    store.clock_ms.set(T0);
    let mut w = TokenWorker::new(&upstream_token(), 1);
    let host = Worker { store: &store };
    let call = first_fetch(&store, &mut w);
    // Lives at most 2 s with a 1 s skew: sent for under a second, less than half its life.
    let exp_s = store.clock_ms.get() / 1000 + 2;
    let reply = FetchReply {
        status: Some(200),
        body: jwt_expiring_at(exp_s),
    };
    let out = w.on_fetch_response(&host, call, reply);
    let FetchOutcome::Stored {
        usable_until_ms,
        next_fetch_ms,
        ..
    } = out
    else {
        panic!("{out:?}");
    };
    assert_eq!(usable_until_ms, exp_s * 1000 - 1_000);
    assert_eq!(next_fetch_ms, usable_until_ms);
}
