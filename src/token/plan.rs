//! Decisions over the shared records: whether to fetch, taking and releasing the lease, and
//! what a request does when no usable token exists. Pure: callers pass `now` and randomness.
//!
//! Protocol the host follows so that one fetch is in flight across workers:
//! - read the fetch state (keep its CAS version) *before* the token, then `plan`;
//! - take the lease by writing `take_lease`'s state with CAS on that version; dispatch only
//!   if the write succeeded;
//! - when the fetch ends, write the token (if `supersedes`) *before* releasing the lease, then
//!   write `after_success` / `after_failure` with CAS, re-reading and recomputing on mismatch.
//!
//! A worker that sees the lease free therefore also sees the token written under it.

use super::jwt::{parse_identity_token, TokenError};
use super::record::{CachedToken, FetchState, Lease};
use super::schedule::{backoff_ms, lease_ms, usable, Timing, MAX_BACKOFF_MS};

/// How far a stored timestamp may run ahead of our `now` before we blame a clock that went
/// backwards. All workers read one host clock, so honest lead is only the gap between reading
/// the clock and reading shared data; a lease or backoff further out than any we could have
/// granted would otherwise freeze refreshing for as long as the clock jumped.
pub const CLOCK_SLACK_MS: u64 = 5_000;

/// Longest Retry-After we send: the longest backoff.
pub const MAX_RETRY_AFTER_S: u64 = MAX_BACKOFF_MS / 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Idle,
    Fetch,
}

/// Whether this worker should try to start a fetch now: the token is missing, due for refresh
/// or no longer usable, no backoff is running, and no lease is held.
pub fn plan(now_ms: u64, token: Option<&CachedToken>, state: &FetchState, t: &Timing) -> Plan {
    let wanted = token.is_none_or(|c| refresh_due(now_ms, c) || !usable(now_ms, c.exp_s, t));
    let free = backoff_until(now_ms, state).is_none() && active_lease(now_ms, state, t).is_none();
    if wanted && free {
        Plan::Fetch
    } else {
        Plan::Idle
    }
}

/// The state to write (CAS on the version read) to take the lease; `None` while another
/// lease is active. Backoff is `plan`'s concern, so a caller may still force a fetch.
pub fn take_lease(now_ms: u64, state: &FetchState, holder: u64, t: &Timing) -> Option<FetchState> {
    if active_lease(now_ms, state, t).is_some() {
        return None;
    }
    Some(FetchState {
        lease: Some(Lease {
            holder,
            until_ms: now_ms.saturating_add(lease_ms(t)),
        }),
        ..state.clone()
    })
}

/// State after `holder`'s fetch succeeded: backoff cleared and the lease released — unless the
/// lease has since passed to another holder (ours expired under a slow fetch), whose fetch
/// is in flight and whose lease stays.
pub fn after_success(state: &FetchState, holder: u64) -> FetchState {
    FetchState {
        lease: lease_of_others(state, holder),
        next_attempt_ms: 0,
        failures: 0,
    }
}

/// State after `holder`'s fetch failed: lease released and the next attempt backed off. If
/// another holder has the lease now, its fetch is newer news than our failure, so the state is
/// left as it is rather than putting requests into a backoff that fetch may end.
pub fn after_failure(now_ms: u64, state: &FetchState, holder: u64, rand: u64) -> FetchState {
    if lease_of_others(state, holder).is_some() {
        return state.clone();
    }
    let failures = state.failures.saturating_add(1);
    FetchState {
        lease: None,
        next_attempt_ms: now_ms.saturating_add(backoff_ms(failures, rand)),
        failures,
    }
}

/// What a request that found no usable token does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Pause the request; resume it when a token arrives, refuse it at the deadline.
    Wait { deadline_ms: u64 },
    /// Refuse now with `Retry-After: retry_after_s`.
    Reject { retry_after_s: u64 },
}

/// Wait up to `max_wait_ms`, unless the fetcher is backing off past that: then waiting cannot
/// help, so refuse at once.
pub fn when_missing(now_ms: u64, state: &FetchState, t: &Timing) -> Missing {
    let deadline_ms = now_ms.saturating_add(t.max_wait_ms);
    match backoff_until(now_ms, state) {
        Some(next) if state.failures >= 1 && next > deadline_ms => Missing::Reject {
            retry_after_s: seconds_until(now_ms, next),
        },
        _ => Missing::Wait { deadline_ms },
    }
}

/// Retry-After for a request refused after waiting: seconds until the next attempt, in
/// 1..=30 (1 when no backoff is running, e.g. a fetch is still in flight).
pub fn retry_after_s(now_ms: u64, state: &FetchState) -> u64 {
    backoff_until(now_ms, state).map_or(1, |next| seconds_until(now_ms, next))
}

/// The lease that currently blocks others, if any: unexpired, and not further out than a
/// lease granted now could be (see `CLOCK_SLACK_MS`).
pub fn active_lease(now_ms: u64, state: &FetchState, t: &Timing) -> Option<Lease> {
    let lease = state.lease?;
    let furthest = now_ms
        .saturating_add(lease_ms(t))
        .saturating_add(CLOCK_SLACK_MS);
    (now_ms < lease.until_ms && lease.until_ms <= furthest).then_some(lease)
}

/// Turns a fetched body into the record to cache, or the reason to count the fetch as failed.
/// A token already inside the expiry skew is refused too (as `Expired`): caching it would
/// only make every worker want to fetch again at once.
pub fn accept_fetch(body: &[u8], now_ms: u64, t: &Timing) -> Result<CachedToken, TokenError> {
    let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    let token = parse_identity_token(body, now_s)?;
    if !usable(now_ms, token.exp(), t) {
        return Err(TokenError::Expired);
    }
    Ok(CachedToken::new(&token, now_ms, t))
}

/// One splitmix64 step: callers derive jitter and holder ids from (time, worker id) with it.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Due at `refresh_at_ms`, or at once if the token claims to be fetched in our future (the
/// clock went backwards, and its schedule no longer means anything).
fn refresh_due(now_ms: u64, token: &CachedToken) -> bool {
    now_ms >= token.refresh_at_ms || token.fetched_at_ms > now_ms.saturating_add(CLOCK_SLACK_MS)
}

/// The running backoff's end, if any; one further out than any backoff we grant is a
/// clock that went backwards and is ignored.
fn backoff_until(now_ms: u64, state: &FetchState) -> Option<u64> {
    let next = state.next_attempt_ms;
    let furthest = now_ms
        .saturating_add(MAX_BACKOFF_MS)
        .saturating_add(CLOCK_SLACK_MS);
    (now_ms < next && next <= furthest).then_some(next)
}

fn lease_of_others(state: &FetchState, holder: u64) -> Option<Lease> {
    state.lease.filter(|l| l.holder != holder)
}

fn seconds_until(now_ms: u64, then_ms: u64) -> u64 {
    then_ms
        .saturating_sub(now_ms)
        .div_ceil(1000)
        .clamp(1, MAX_RETRY_AFTER_S)
}

#[cfg(test)]
mod tests {
    use super::super::jwt::base64url_encode;
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const T: Timing = Timing {
        refresh_margin_s: 300,
        expiry_skew_s: 30,
        max_wait_ms: 3_000,
        fetch_timeout_ms: 2_000,
    };

    fn jwt(exp_s: u64) -> String {
        format!(
            "{}.{}.{}",
            base64url_encode(br#"{"alg":"RS256"}"#),
            base64url_encode(format!(r#"{{"exp":{exp_s}}}"#).as_bytes()),
            base64url_encode(b"sig")
        )
    }

    /// A token fetched at `fetched_ms` that lives `life_s` seconds.
    fn token(fetched_ms: u64, life_s: u64) -> CachedToken {
        accept_fetch(jwt(fetched_ms / 1000 + life_s).as_bytes(), fetched_ms, &T).unwrap()
    }

    fn idle() -> FetchState {
        FetchState::default()
    }

    /// A state whose lease by `holder` ends `in_ms` from NOW (negative: in the past).
    fn leased(holder: u64, in_ms: i64) -> FetchState {
        let until_ms = NOW.checked_add_signed(in_ms).unwrap();
        FetchState {
            lease: Some(Lease { holder, until_ms }),
            ..idle()
        }
    }

    /// A state after `failures` failures whose next attempt is `in_ms` from NOW.
    fn backoff(failures: u32, in_ms: i64) -> FetchState {
        let next_attempt_ms = NOW.checked_add_signed(in_ms).unwrap();
        FetchState {
            lease: None,
            next_attempt_ms,
            failures,
        }
    }

    #[test]
    fn plan_fetches_only_when_a_token_is_wanted_and_nothing_stands_in_the_way() {
        use Plan::*;
        let fresh = token(NOW, 3600);
        let due = token(NOW - 3_400_000, 3600);
        let mut unusable = token(NOW - 3_590_000, 3600);
        unusable.refresh_at_ms = u64::MAX;
        let cases: Vec<(&str, Option<&CachedToken>, FetchState, Plan)> = vec![
            ("cold start", None, idle(), Fetch),
            ("fresh token", Some(&fresh), idle(), Idle),
            ("due for refresh", Some(&due), idle(), Fetch),
            ("inside the skew", Some(&unusable), idle(), Fetch),
            ("cold, lease held", None, leased(7, 1), Idle),
            ("cold, lease expired", None, leased(7, 0), Fetch),
            ("due, lease held", Some(&due), leased(7, 2_999), Idle),
            ("cold, backing off", None, backoff(1, 1), Idle),
            ("cold, backoff over", None, backoff(1, 0), Fetch),
            ("fresh, lease expired", Some(&fresh), leased(7, -1), Idle),
        ];
        for (name, tok, state, want) in cases {
            assert_eq!(plan(NOW, tok, &state, &T), want, "{name}");
        }
    }

    #[test]
    fn refresh_is_due_exactly_at_refresh_at() {
        let c = token(NOW, 3600);
        assert_eq!(plan(c.refresh_at_ms - 1, Some(&c), &idle(), &T), Plan::Idle);
        assert_eq!(plan(c.refresh_at_ms, Some(&c), &idle(), &T), Plan::Fetch);
    }

    #[test]
    fn lease_is_taken_expires_and_is_reclaimed_by_another_holder() {
        let a = take_lease(NOW, &FetchState::default(), 1, &T).unwrap();
        assert_eq!(
            a.lease,
            Some(Lease {
                holder: 1,
                until_ms: NOW + 3_000
            })
        );
        assert_eq!(take_lease(NOW, &a, 2, &T), None, "held");
        assert_eq!(
            take_lease(NOW + 2_999, &a, 2, &T),
            None,
            "held until the last ms"
        );
        assert_eq!(take_lease(NOW + 100, &a, 1, &T), None, "not re-entrant");
        let b = take_lease(NOW + 3_000, &a, 2, &T).unwrap();
        assert_eq!(
            b.lease,
            Some(Lease {
                holder: 2,
                until_ms: NOW + 6_000
            })
        );
    }

    #[test]
    fn taking_a_lease_keeps_the_backoff_record() {
        let s = take_lease(NOW, &backoff(3, -5), 9, &T).unwrap();
        assert_eq!((s.failures, s.next_attempt_ms), (3, NOW - 5));
    }

    #[test]
    fn success_releases_own_lease_and_clears_backoff() {
        let s = FetchState {
            lease: Some(Lease {
                holder: 1,
                until_ms: NOW,
            }),
            next_attempt_ms: NOW - 10,
            failures: 4,
        };
        assert_eq!(after_success(&s, 1), FetchState::default());
    }

    #[test]
    fn success_of_a_stale_holder_keeps_the_new_holders_lease() {
        let s = leased(2, 3_000);
        assert_eq!(after_success(&s, 1).lease, s.lease);
        assert_eq!(after_success(&backoff(2, 0), 1), FetchState::default());
    }

    #[test]
    fn failure_releases_own_lease_and_backs_off() {
        let s = FetchState {
            lease: Some(Lease {
                holder: 1,
                until_ms: NOW + 3_000,
            }),
            next_attempt_ms: 0,
            failures: 2,
        };
        let after = after_failure(NOW, &s, 1, 0);
        assert_eq!(after.lease, None);
        assert_eq!(after.failures, 3);
        assert_eq!(after.next_attempt_ms, NOW + backoff_ms(3, 0));
        assert_eq!(after.next_attempt_ms, NOW + 2_000);
    }

    #[test]
    fn failure_after_the_lease_lapsed_still_counts() {
        let after = after_failure(NOW, &FetchState::default(), 1, 7);
        assert_eq!(after.failures, 1);
        assert!((NOW + 500..=NOW + 1_000).contains(&after.next_attempt_ms));
    }

    #[test]
    fn failure_of_a_stale_holder_leaves_the_new_holders_state_alone() {
        let s = leased(2, 3_000);
        assert_eq!(after_failure(NOW, &s, 1, 0), s);
    }

    #[test]
    fn failures_saturate_instead_of_wrapping() {
        let after = after_failure(
            u64::MAX - 5,
            &FetchState {
                failures: u32::MAX,
                ..idle()
            },
            1,
            0,
        );
        assert_eq!(
            (after.failures, after.next_attempt_ms),
            (u32::MAX, u64::MAX)
        );
    }

    #[test]
    fn missing_token_waits_unless_backoff_outlasts_the_wait() {
        const WAIT: Missing = Missing::Wait {
            deadline_ms: NOW + 3_000,
        };
        let reject = |retry_after_s| Missing::Reject { retry_after_s };
        let cases = [
            ("cold start", FetchState::default(), WAIT),
            ("fetch in flight", leased(1, 3_000), WAIT),
            ("backoff ends in the wait", backoff(1, 3_000), WAIT),
            ("backoff over", backoff(5, -1), WAIT),
            ("no failure recorded", backoff(0, 10_000), WAIT),
            ("1 ms past the wait", backoff(1, 3_001), reject(4)),
            ("backoff 16 s", backoff(5, 16_000), reject(16)),
            ("backoff 29.001 s", backoff(6, 29_001), reject(30)),
        ];
        for (name, state, want) in cases {
            assert_eq!(when_missing(NOW, &state, &T), want, "{name}");
        }
    }

    #[test]
    fn retry_after_is_seconds_to_next_attempt_between_1_and_30() {
        let cases = [
            ("no backoff", FetchState::default(), 1),
            ("lease only", leased(1, 3_000), 1),
            ("1 ms", backoff(1, 1), 1),
            ("exactly 2 s", backoff(2, 2_000), 2),
            ("2.001 s", backoff(2, 2_001), 3),
            ("30 s", backoff(6, 30_000), 30),
            ("34 s (clock slack)", backoff(6, 34_000), 30),
            ("past", backoff(6, -1), 1),
        ];
        for (name, state, want) in cases {
            assert_eq!(retry_after_s(NOW, &state), want, "{name}");
        }
    }

    #[test]
    fn clock_going_backwards_does_not_freeze_refresh() {
        let jump = 600_000;
        // Lease and backoff written before the clock jumped back ten minutes.
        let lease = leased(1, 3_000);
        assert_eq!(
            take_lease(NOW - jump, &lease, 2, &T).map(|s| s.lease.unwrap().holder),
            Some(2)
        );
        let waiting = backoff(6, 30_000);
        assert_eq!(plan(NOW - jump, None, &waiting, &T), Plan::Fetch);
        assert!(matches!(
            when_missing(NOW - jump, &waiting, &T),
            Missing::Wait { .. }
        ));
        // A token fetched "in the future" is refreshed now, though it is still usable.
        let c = token(NOW, 3600);
        assert_eq!(
            plan(NOW - jump, Some(&c), &FetchState::default(), &T),
            Plan::Fetch
        );
    }

    #[test]
    fn small_clock_differences_between_workers_are_not_a_jump() {
        // Another worker read its clock up to CLOCK_SLACK_MS later than ours.
        let lease = leased(1, CLOCK_SLACK_MS as i64 + 3_000);
        assert_eq!(take_lease(NOW, &lease, 2, &T), None);
        let c = token(NOW + CLOCK_SLACK_MS, 3600);
        assert_eq!(plan(NOW, Some(&c), &FetchState::default(), &T), Plan::Idle);
        let waiting = backoff(6, CLOCK_SLACK_MS as i64 + 30_000);
        assert_eq!(plan(NOW, None, &waiting, &T), Plan::Idle);
    }

    #[test]
    fn fetched_body_is_accepted_only_if_usable_now() {
        let at = |life_s: u64| accept_fetch(jwt(NOW / 1000 + life_s).as_bytes(), NOW, &T);
        let c = at(3600).unwrap();
        assert_eq!((c.fetched_at_ms, c.refresh_at_ms), (NOW, NOW + 3_300_000));
        assert_eq!(at(30).unwrap_err(), TokenError::Expired, "inside the skew");
        assert!(at(31).is_ok());
        assert_eq!(
            accept_fetch(b"garbage", NOW, &T).unwrap_err(),
            TokenError::NotJwt
        );
        assert_eq!(
            accept_fetch(jwt(1).as_bytes(), u64::MAX, &T).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn mix64_matches_splitmix64_and_spreads_neighbours() {
        // Reference outputs of splitmix64 seeded with 0: successive states are k * golden.
        assert_eq!(mix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
        assert_ne!(mix64(1), mix64(2));
        assert!((mix64(1) ^ mix64(2)).count_ones() > 16);
    }
}
