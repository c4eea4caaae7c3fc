//! Time arithmetic of the token lifecycle: when a token may be sent, when to refresh it, how
//! long to back off and how long a fetch lease lasts. Every sum saturates, so no input overflows.

/// First backoff after a failed fetch; it doubles per consecutive failure.
pub const BASE_BACKOFF_MS: u64 = 1_000;
/// Longest backoff, before jitter.
pub const MAX_BACKOFF_MS: u64 = 30_000;
/// Google identity tokens live at most an hour, so an `exp` further out than that is not
/// trusted to postpone the refresh (see `refresh_at_ms`).
pub const MAX_REFRESH_INTERVAL_MS: u64 = 3_600_000;
/// How much longer than the fetch timeout a lease lasts.
pub const LEASE_GRACE_MS: u64 = 1_000;

/// The four `upstream_token` durations the lifecycle depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub refresh_margin_s: u64,
    pub expiry_skew_s: u64,
    pub max_wait_ms: u64,
    pub fetch_timeout_ms: u64,
}

/// The defaults documented for `upstream_token`.
impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh_margin_s: 300,
            expiry_skew_s: 30,
            max_wait_ms: 3_000,
            fetch_timeout_ms: 2_000,
        }
    }
}

/// `exp` in unix milliseconds; an `exp` at or before the epoch is 0, which nothing is before.
pub fn exp_ms(exp_s: i64) -> u64 {
    u64::try_from(exp_s).map_or(0, |s| s.saturating_mul(1000))
}

/// A token may be sent while now + skew < exp (strictly), compared in milliseconds.
pub fn usable(now_ms: u64, exp_s: i64, t: &Timing) -> bool {
    now_ms.saturating_add(t.expiry_skew_s.saturating_mul(1000)) < exp_ms(exp_s)
}

/// When to start the next refresh, in unix ms: the later of `exp - margin` and the midpoint
/// of the token's life, so a token shorter-lived than the margin is not re-fetched on every
/// tick; but never more than an hour after the fetch, so a bogus far-future `exp` cannot stop
/// refreshing (an early refresh costs one fetch; a late one can cost every request).
pub fn refresh_at_ms(fetched_at_ms: u64, exp_s: i64, t: &Timing) -> u64 {
    let exp = exp_ms(exp_s);
    let ahead_of_margin = exp.saturating_sub(t.refresh_margin_s.saturating_mul(1000));
    let midpoint = fetched_at_ms.saturating_add(exp.saturating_sub(fetched_at_ms) / 2);
    ahead_of_margin
        .max(midpoint)
        .min(fetched_at_ms.saturating_add(MAX_REFRESH_INTERVAL_MS))
}

/// The last moment a token is sent (exclusive): `exp - expiry_skew_s`.
pub fn usable_until_ms(exp_s: i64, t: &Timing) -> u64 {
    exp_ms(exp_s).saturating_sub(t.expiry_skew_s.saturating_mul(1000))
}

/// When the next fetch really starts: at `refresh_at_ms`, or as soon as the token stops
/// being usable if that comes first (a token that lives less than twice the skew).
pub fn next_fetch_ms(refresh_at_ms: u64, exp_s: i64, t: &Timing) -> u64 {
    refresh_at_ms.min(usable_until_ms(exp_s, t))
}

/// Backoff after `failures` consecutive failures: 1 s doubling to 30 s, jittered into
/// [d/2, d] by `rand` so workers of several Envoys do not retry in step. `failures == 0` is
/// treated as 1, so the result is never 0.
pub fn backoff_ms(failures: u32, rand: u64) -> u64 {
    // 1000 << 5 already exceeds the cap, so the shift never needs to go further.
    let doublings = failures.saturating_sub(1).min(5);
    let full = (BASE_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS);
    let half = full / 2;
    half + rand % (full - half + 1)
}

/// How long a lease lasts: past the fetch timeout by a grace second, so a fetcher that
/// vanished stops blocking refresh soon after its fetch would have timed out anyway.
pub fn lease_ms(t: &Timing) -> u64 {
    t.fetch_timeout_ms.saturating_add(LEASE_GRACE_MS)
}

#[cfg(test)]
mod tests {
    use super::super::plan::mix64;
    use super::*;

    const T: Timing = Timing {
        refresh_margin_s: 300,
        expiry_skew_s: 30,
        max_wait_ms: 3_000,
        fetch_timeout_ms: 2_000,
    };
    const EXP: i64 = 1_700_003_600;
    const EXP_MS: u64 = 1_700_003_600_000;

    #[test]
    fn a_short_lived_token_is_refetched_when_it_stops_being_usable() {
        let fetched = EXP_MS - 40_000; // lives 40 s; unusable after 10 s
        let at = refresh_at_ms(fetched, EXP, &T);
        assert_eq!(at, fetched + 20_000, "midpoint of its life");
        assert_eq!(usable_until_ms(EXP, &T), EXP_MS - 30_000);
        assert_eq!(next_fetch_ms(at, EXP, &T), EXP_MS - 30_000);
        assert!(!usable(next_fetch_ms(at, EXP, &T), EXP, &T));
        // A normal token: the refresh comes first.
        let fetched = EXP_MS - 3_600_000;
        let at = refresh_at_ms(fetched, EXP, &T);
        assert_eq!(next_fetch_ms(at, EXP, &T), at);
        assert!(usable(at, EXP, &T));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        assert_eq!(Timing::default(), T);
    }

    #[test]
    fn usable_until_exactly_skew_before_exp() {
        let skew_ms = 30_000;
        let cases = [
            ("long before", EXP_MS - 3_600_000, true),
            ("one ms before the skew edge", EXP_MS - skew_ms - 1, true),
            ("exactly at the skew edge", EXP_MS - skew_ms, false),
            ("inside the skew", EXP_MS - skew_ms + 1, false),
            ("at exp", EXP_MS, false),
            ("after exp", EXP_MS + 1, false),
            ("clock at u64::MAX", u64::MAX, false),
        ];
        for (name, now, want) in cases {
            assert_eq!(usable(now, EXP, &T), want, "{name}");
        }
    }

    #[test]
    fn zero_skew_means_usable_until_the_last_millisecond() {
        let t = Timing {
            expiry_skew_s: 0,
            ..T
        };
        assert!(usable(EXP_MS - 1, EXP, &t));
        assert!(!usable(EXP_MS, EXP, &t));
    }

    #[test]
    fn exp_at_or_before_the_epoch_is_never_usable() {
        for exp in [i64::MIN, -1, 0] {
            assert!(
                !usable(
                    0,
                    exp,
                    &Timing {
                        expiry_skew_s: 0,
                        ..T
                    }
                ),
                "{exp}"
            );
        }
    }

    #[test]
    fn huge_skew_or_exp_saturate_instead_of_overflowing() {
        assert!(!usable(
            1,
            EXP,
            &Timing {
                expiry_skew_s: u64::MAX,
                ..T
            }
        ));
        assert!(usable(EXP_MS, i64::MAX, &T));
        assert_eq!(exp_ms(i64::MAX), u64::MAX);
    }

    #[test]
    fn refresh_starts_margin_before_exp_or_at_mid_life_whichever_is_later() {
        let fetched = 1_700_000_000_000;
        let at = |life_s: i64, margin_s: u64| {
            let t = Timing {
                refresh_margin_s: margin_s,
                ..T
            };
            refresh_at_ms(fetched, 1_700_000_000 + life_s, &t) - fetched
        };
        let cases = [
            ("hour-long token, 300 s margin", 3600, 300, 3_300_000),
            ("10 s token, 5 s margin", 10, 5, 5_000),
            ("life shorter than margin: mid-life", 200, 300, 100_000),
            ("life equal to margin: mid-life", 300, 300, 150_000),
            ("life twice the margin: both agree", 600, 300, 300_000),
            ("zero margin: at exp", 60, 0, 60_000),
            ("already expired: now", -10, 300, 0),
            (
                "exp far in the future: capped at an hour",
                10 * 86_400,
                300,
                3_600_000,
            ),
            (
                "exp at i64::MAX: capped at an hour",
                i64::MAX - 1_700_000_000,
                300,
                3_600_000,
            ),
        ];
        for (name, life, margin, want) in cases {
            assert_eq!(at(life, margin), want, "{name}");
        }
    }

    #[test]
    fn refresh_never_overflows_at_the_end_of_time() {
        assert_eq!(refresh_at_ms(u64::MAX, i64::MAX, &T), u64::MAX);
        assert_eq!(refresh_at_ms(u64::MAX - 5, 0, &T), u64::MAX - 5);
        let t = Timing {
            refresh_margin_s: u64::MAX,
            ..T
        };
        assert_eq!(refresh_at_ms(EXP_MS - 1_000_000, EXP, &t), EXP_MS - 500_000);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty_before_jitter() {
        // rand 0 lands on the floor d/2; rand = d - d/2 lands on the ceiling d.
        let full = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
        for (i, &d) in full.iter().enumerate() {
            let failures = i as u32 + 1;
            assert_eq!(backoff_ms(failures, 0), d / 2, "lowest after {failures}");
            assert_eq!(
                backoff_ms(failures, d - d / 2),
                d,
                "highest after {failures}"
            );
        }
    }

    #[test]
    fn backoff_stays_within_half_and_full_for_any_failure_count_and_rand() {
        let rands = [
            0,
            1,
            499,
            500,
            501,
            1_000,
            15_001,
            u64::MAX / 3,
            u64::MAX - 1,
            u64::MAX,
        ];
        for failures in 0..=40u32 {
            let full = (1_000u64 << failures.saturating_sub(1).min(5)).min(30_000);
            for rand in rands
                .iter()
                .copied()
                .chain((0..200).map(|i| mix64(i ^ u64::from(failures))))
            {
                let b = backoff_ms(failures, rand);
                assert!(
                    b >= full / 2 && b <= full,
                    "failures {failures} rand {rand}: {b}"
                );
                assert!(b > 0 && b <= MAX_BACKOFF_MS);
            }
        }
        assert!((1..=MAX_BACKOFF_MS).contains(&backoff_ms(u32::MAX, u64::MAX)));
    }

    #[test]
    fn lease_outlasts_the_fetch_timeout_by_a_second() {
        assert_eq!(lease_ms(&T), 3_000);
        assert_eq!(
            lease_ms(&Timing {
                fetch_timeout_ms: u64::MAX,
                ..T
            }),
            u64::MAX
        );
    }
}
