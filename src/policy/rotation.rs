//! Rotation hygiene: which keys expire soon (a startup warning each) and how many days are
//! left on the soonest-expiring one (a gauge an alert can watch before Genesys is locked out).

use super::keys::KeySet;
use super::time::format_rfc3339;

pub const WARN_WITHIN_DAYS: i64 = 14;
const DAY_MS: i64 = 86_400_000;

/// One warning line per key whose `not_after` is less than 14 days away (or already past).
pub fn expiry_warnings(keys: &KeySet, now_ms: i64) -> Vec<String> {
    keys.keys
        .iter()
        .filter_map(|k| {
            let na = k.window.not_after_ms?;
            let left = na.saturating_sub(now_ms);
            if left >= WARN_WITHIN_DAYS * DAY_MS {
                return None;
            }
            let at = format_rfc3339(na);
            Some(if left <= 0 {
                format!(
                    "bcsp-guard: key {} expired at {at} and admits nothing; remove it from keys",
                    k.id
                )
            } else {
                let days = left / DAY_MS;
                let when = match days {
                    0 => "in less than a day".to_owned(),
                    1 => "in 1 day".to_owned(),
                    d => format!("in {d} days"),
                };
                format!(
                    "bcsp-guard: key {} expires {when} ({at}); add its successor and give Genesys the new secret",
                    k.id
                )
            })
        })
        .collect()
}

/// Whole days left on the soonest-expiring key that has not expired yet; 0 when every key
/// with a `not_after` is past it; `None` when no key has a `not_after`.
pub fn days_left_min(keys: &KeySet, now_ms: i64) -> Option<u64> {
    let mut any = false;
    let mut min: Option<i64> = None;
    for na in keys.keys.iter().filter_map(|k| k.window.not_after_ms) {
        any = true;
        let left = na.saturating_sub(now_ms);
        if left > 0 {
            let days = left / DAY_MS;
            min = Some(min.map_or(days, |m| m.min(days)));
        }
    }
    match (any, min) {
        (false, _) => None,
        (true, None) => Some(0),
        (true, Some(d)) => Some(u64::try_from(d).unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::keys::{Key, KeyId, SecretHash, Window};

    const NOW: i64 = 1_800_000_000_000;

    fn set(windows: &[(&str, Option<i64>)]) -> KeySet {
        KeySet::new(
            vec!["x-bcsp-key".into()],
            windows
                .iter()
                .map(|(id, na)| Key {
                    id: KeyId::parse(id).unwrap(),
                    header: 0,
                    scheme: None,
                    hash: SecretHash::of(id.as_bytes()),
                    window: Window {
                        not_before_ms: None,
                        not_after_ms: na.map(|d| NOW + d),
                    },
                    audience: None,
                })
                .collect(),
        )
    }

    #[test]
    fn keys_expiring_within_14_days_are_warned_about_once_each() {
        let s = set(&[
            ("later", Some(15 * DAY_MS)),
            ("edge", Some(14 * DAY_MS)),
            ("soon", Some(3 * DAY_MS + 5)),
            ("today", Some(60_000)),
            ("gone", Some(-DAY_MS)),
            ("forever", None),
        ]);
        let w = expiry_warnings(&s, NOW);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w[0].contains("key soon expires in 3 days ("), "{}", w[0]);
        assert!(w[1].contains("key today expires in less than a day"));
        assert!(w[2].contains("key gone expired at"));
    }

    #[test]
    fn days_left_follow_the_soonest_expiring_live_key() {
        let s = set(&[
            ("a", Some(40 * DAY_MS)),
            ("b", Some(9 * DAY_MS + 1)),
            ("old", Some(-5)),
        ]);
        assert_eq!(days_left_min(&s, NOW), Some(9));
        assert_eq!(days_left_min(&set(&[("old", Some(-5))]), NOW), Some(0));
        assert_eq!(days_left_min(&set(&[("x", None)]), NOW), None);
    }
}
