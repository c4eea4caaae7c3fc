//! The token refresh log says what happens next: for a token that lives less than twice
//! `expiry_skew_s`, the next fetch is the moment it stops being sent, not its later refresh time.

mod harness;

use harness::*;
use metadata_emulator::Emulator;
use serde_json::json;

const SECRET: &str = "tok3n-log-SECRET-7c1e09";
const AUD: &str = "https://bcsp-log.a.run.app";

/// (expires, sent until, next fetch) from the first refresh line for tokens of `lifetime_s`.
fn first_refresh_line(lifetime_s: u64, token: serde_json::Value) -> (String, String, String) {
    let emu = Emulator::start("127.0.0.1:0", lifetime_s).expect("metadata emulator");
    let mut upstream = json!({"cluster": "gcp_metadata", "audience": AUD});
    for (k, v) in token.as_object().into_iter().flatten() {
        upstream[k] = v.clone();
    }
    let filter = json!({"keys": [key("genesys", SECRET)], "upstream_token": upstream});
    let stack =
        Stack::start(&EnvoyConfig::new(filter).extra_clusters(&metadata_cluster(emu.addr())));
    let log = stack
        .envoy
        .wait_for_log("identity token refreshed for audience");
    let line = log
        .lines()
        .find(|l| l.contains("identity token refreshed for audience"))
        .expect("refresh line")
        .to_owned();
    let after = |label: &str| {
        let rest = line
            .split(label)
            .nth(1)
            .unwrap_or_else(|| panic!("no `{label}` in {line}"));
        rest.split([',', ' '])
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    (
        after("expires "),
        after("sent until "),
        after("next fetch "),
    )
}

#[test]
fn a_short_lived_token_is_fetched_again_when_it_stops_being_sent() {
    // Lives 4 s, never sent within 3 s of exp: sent for 1 s, while mid-life is 2 s.
    let (expires, until, next) =
        first_refresh_line(4, json!({"refresh_margin_s": 4, "expiry_skew_s": 3}));
    assert_eq!(until, next, "expires {expires}");
    assert_ne!(until, expires);
}

#[test]
fn an_hour_long_token_is_refreshed_before_it_stops_being_sent() {
    let (expires, until, next) = first_refresh_line(3600, json!({}));
    assert!(
        next < until && until < expires,
        "{next} / {until} / {expires}"
    );
}
