//! `bcsp-guard check` on Envoy YAML with webhooks: bcsp-guard holds a delivery's headers until
//! its signature is verified, which needs the Wasm plugin config's
//! `allow_on_headers_stop_iteration: true`; the check requires it and says where it goes.

use crate::common::check_envoy_yaml as check;
use crate::yaml;
use serde_json::json;

const HCM: &str = "          use_remote_address: true\n          normalize_path: true\n          merge_slashes: true\n          path_with_escaped_slashes_action: REJECT_REQUEST\n";
const BUFFER: &str = "          - name: envoy.filters.http.buffer\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n              max_request_bytes: 2097152\n";
const FIX: &str =
    "webhooks need allow_on_headers_stop_iteration: true in this filter's Wasm plugin config \
     (typed_config.config, next to root_id; Envoy 1.35+)";

/// One bcsp-guard filter: `webhooks` or not, `flag` as the line's value (or absent), and
/// `after` inserted between it and the router.
fn wasm_filter(webhooks: bool, flag: Option<&str>, after: &str) -> String {
    let mut filter = json!({"keys": [{"id": "k1", "sha256": "a".repeat(64)}]});
    if webhooks {
        filter["webhooks"] = json!([{"path_prefix": "/openmessaging", "secret_env": "OM_SECRET"}]);
    }
    let flag = flag
        .map(|v| format!("                allow_on_headers_stop_iteration: {v}\n"))
        .unwrap_or_default();
    let env = "                  environment_variables: {key_values: {OM_SECRET: \"a-secret-of-enough-bytes-01\"}}\n";
    yaml::wasm_filter(&filter, &flag, env) + after
}

/// A bootstrap with one listener per filter chain given.
fn bootstrap(listeners: &[String]) -> String {
    let listeners: Vec<String> = listeners
        .iter()
        .enumerate()
        .map(|(i, filters)| yaml::listener(i, HCM, yaml::ROUTE_ALL, filters))
        .collect();
    yaml::bootstrap("", "", &listeners, "")
}

#[test]
fn webhooks_pass_only_with_the_flag_set_to_true() {
    let ok = check(&bootstrap(&[wasm_filter(true, Some("true"), "")]));
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.contains("http_filters[0]: OK"), "{}", ok.stdout);

    for flag in [None, Some("false")] {
        let r = check(&bootstrap(&[wasm_filter(true, flag, "")]));
        assert_eq!(r.code, 1, "{flag:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(FIX), "{flag:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("every delivery is refused 503"),
            "{}",
            r.stderr
        );
        assert!(!r.stdout.contains(": OK"), "{}", r.stdout);
    }
}

#[test]
fn without_webhooks_the_flag_is_not_required() {
    let r = check(&bootstrap(&[wasm_filter(false, None, "")]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("allow_on_headers_stop_iteration"));
}

#[test]
fn each_filter_is_judged_on_its_own_configuration() {
    let r = check(&bootstrap(&[
        wasm_filter(false, None, ""),
        wasm_filter(true, None, ""),
    ]));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("listeners[0]"), "{}", r.stdout);
    let failed: Vec<&str> = r.stderr.lines().filter(|l| l.contains(FIX)).collect();
    assert_eq!(failed.len(), 1, "{}", r.stderr);
    assert!(failed[0].contains("listeners[1]"), "{}", failed[0]);
}

#[test]
fn a_leftover_buffer_filter_is_no_substitute_and_draws_a_warning() {
    // The buffer filter alone let a refused delivery's headers through in the past: not enough.
    let r = check(&bootstrap(&[wasm_filter(true, None, BUFFER)]));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(FIX), "{}", r.stderr);
    // With the flag it passes, and the check says the buffer filter can go.
    let r = check(&bootstrap(&[wasm_filter(true, Some("true"), BUFFER)]));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("envoy.filters.http.buffer after bcsp-guard is not needed for webhooks"),
        "{}",
        r.stdout
    );
}
