//! Rotation hygiene: a startup warning for each key that expires within 14 days, and the
//! gauge `bcsp_guard.key.days_left_min` for alerts before Genesys is locked out.

mod harness;

use harness::*;
use serde_json::json;

#[test]
fn keys_expiring_soon_are_warned_about_and_the_gauge_counts_the_days() {
    let t = now();
    let filter = json!({"keys": [
        with(key("expiring-soon", "k3y-soon-8c1d"), json!({"not_after": rfc3339(t + 3 * 86_400 + 3_600)})),
        with(key("next-quarter", "k3y-next-2e7f"), json!({"not_after": rfc3339(t + 90 * 86_400)})),
        key("no-expiry", "k3y-none-71aa"),
    ]});
    let stack = Stack::start(&EnvoyConfig::new(filter).concurrency(2));
    let log = stack
        .envoy
        .wait_for_log("key expiring-soon expires in 3 days");
    assert_eq!(
        log.matches("bcsp-guard: key expiring-soon expires in 3 days")
            .count(),
        1,
        "one warning per key, not one per worker:\n{log}"
    );
    assert!(!log.contains("key next-quarter expires"), "{log}");
    assert!(!log.contains("key no-expiry"), "{log}");
    let prom = stack.envoy.stats_prometheus();
    let days = prom
        .lines()
        .find(|l| l.starts_with("bcsp_guard_key_days_left_min"))
        .unwrap_or_else(|| panic!("no gauge in:\n{prom}"));
    assert!(days.ends_with(" 3"), "{days}");
    stack
        .envoy
        .assert_log_free_of(&["k3y-soon-8c1d", "k3y-next-2e7f", "k3y-none-71aa"], &[]);
}
