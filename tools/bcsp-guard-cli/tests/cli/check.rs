//! `bcsp-guard check`: plugin configs and Envoy YAMLs, judged with the filter's own messages.

use crate::common::*;
use crate::yaml;
use serde_json::{json, Value};

#[test]
fn check_accepts_a_valid_config_and_reports_with_the_filters_summary_and_warnings() {
    let dir = Dir::new("check-ok");
    let soon = bcsp_guard::policy::time::format_rfc3339(
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 5 * 86_400)
            * 1000,
    );
    let cfg = dir.file(
        "cfg.json",
        &json!({
            "keys": [{"id": "k1", "sha256": sha256_hex(SECRET), "not_after": soon}],
            "webhooks": [{"path_prefix": "/om", "secret": "inline-secret-0123456789"}],
        })
        .to_string(),
    );
    let r = cli(&["check", &cfg]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(": OK"), "{}", r.stdout);
    assert!(
        r.stdout.contains("bcsp-guard policy: keys [k1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("warning: key k1 expires in 4 days"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("warning: webhooks[0] (/om) has an inline secret"),
        "{}",
        r.stdout
    );
    assert!(
        !r.all().contains("inline-secret-0123456789") && !r.all().contains(&sha256_hex(SECRET))
    );
}

#[test]
fn check_refuses_with_exactly_the_filters_message_and_exit_1() {
    let dir = Dir::new("check-bad");
    let cases = [
        (
            json!({"keys": [{"id": "k1", "sha256": "abc"}]}).to_string(),
            "keys[0].sha256: expected 64 hex characters (SHA-256 of the secret)",
        ),
        (
            json!({"keys": [{"id": "k1", "sha256": sha256_hex(SECRET)}], "routes": [{"method": "get", "path": "/a"}]})
                .to_string(),
            "routes[0].method: `get` must be an upper-case HTTP method such as GET",
        ),
        (
            json!({"keys": [{"id": "k1", "sha256": sha256_hex(SECRET)}],
                   "webhooks": [{"path_prefix": "/om", "secret_env": "OM_WEBHOOK_SECRET"}]})
            .to_string(),
            "webhooks[0].secret_env: environment variable `OM_WEBHOOK_SECRET` is not set in the Wasm VM",
        ),
        ("{\"keys\": [".to_owned(), "keys: EOF while parsing a list"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.file(&format!("bad{i}.json"), text);
        let r = cli(&["check", &f]);
        assert_eq!(r.code, 1, "{text}: {}", r.all());
        let line = format!("{f}: bcsp-guard: invalid configuration: {want}");
        assert!(r.stderr.contains(&line), "got:  {}\nwant: {line}", r.stderr);
        // The very text the filter logs in Envoy.
        if let Err(e) = bcsp_guard::config::compile_with_env(text.as_bytes(), &|_| None) {
            assert!(r.stderr.contains(&e.to_string()), "{}", r.stderr);
        }
    }
    let r = cli(&["check", "/nonexistent/cfg.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot read /nonexistent/cfg.json"),
        "{}",
        r.stderr
    );
    let r = cli(&["check"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is required"), "{}", r.stderr);
    // --env supplies a VM variable.
    let f = dir.file("env.json", cases[2].0.as_str());
    let r = cli(&[
        "check",
        &f,
        "--env",
        "OM_WEBHOOK_SECRET=from-the-command-line-123",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("from-the-command-line-123"));
}

/// An Envoy YAML around `filter`; `flag` goes into the Wasm plugin config (see [`FLAG`]).
fn envoy_yaml(filter: &Value, env: &str, flag: &str, hcm: &str) -> String {
    let filters = yaml::wasm_filter(filter, flag, env);
    yaml::bootstrap(
        "",
        "",
        &[yaml::listener(0, hcm, yaml::ROUTE_ALL, &filters)],
        "",
    )
}

const SHIPPED_HCM: &str = "          use_remote_address: true\n          normalize_path: true\n          merge_slashes: true\n          path_with_escaped_slashes_action: REJECT_REQUEST\n";
const FLAG: &str = "                allow_on_headers_stop_iteration: true\n";
const VM_ENV: &str = "                  environment_variables:\n                    key_values: {OM_WEBHOOK_SECRET: \"yaml-provided-secret-0123\"}\n";

#[test]
fn check_finds_the_filter_in_an_envoy_yaml_with_its_vm_environment() {
    let dir = Dir::new("check-yaml");
    let filter = json!({
        "keys": [{"id": "k1", "sha256": sha256_hex(SECRET)}],
        "allow_cidrs": ["34.200.73.250/32"],
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
        "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_WEBHOOK_SECRET"}],
    });
    let f = dir.file(
        "envoy.yaml",
        &envoy_yaml(&filter, VM_ENV, FLAG, SHIPPED_HCM),
    );
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: OK"),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains("yaml-provided-secret-0123"));

    // The same filter without the flag: every delivery would be refused.
    let f = dir.file("noflag.yaml", &envoy_yaml(&filter, VM_ENV, "", SHIPPED_HCM));
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(
            "webhooks need allow_on_headers_stop_iteration: true in this filter's Wasm plugin config"
        ),
        "{}",
        r.stderr
    );

    // Without the connection-manager settings: spoofable client address (error), warnings.
    let f = dir.file("nohcm.yaml", &envoy_yaml(&filter, VM_ENV, FLAG, ""));
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("use_remote_address is not true"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout
            .contains("set normalize_path: true and merge_slashes: true"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("path_with_escaped_slashes_action: REJECT_REQUEST"),
        "{}",
        r.stdout
    );

    // host_env_keys: Envoy's own environment, which the CLI cannot see.
    let host_env = "                  environment_variables:\n                    host_env_keys: [OM_WEBHOOK_SECRET]\n";
    let f = dir.file(
        "hostenv.yaml",
        &envoy_yaml(&filter, host_env, FLAG, SHIPPED_HCM),
    );
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("OM_WEBHOOK_SECRET comes from Envoy's own environment"),
        "{}",
        r.stdout
    );

    // A broken filter config inside the YAML: the filter's message, with where it is.
    let bad =
        json!({"keys": [{"id": "k1", "sha256": sha256_hex(SECRET)}], "lockout": {"cooldown_s": 0}});
    let f = dir.file("bad.yaml", &envoy_yaml(&bad, "", "", SHIPPED_HCM));
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("http_filters[0]: bcsp-guard: invalid configuration: lockout.cooldown_s: must be 1 to 86400, got 0"),
        "{}",
        r.stderr
    );

    let f = dir.file("none.yaml", "static_resources:\n  listeners: []\n");
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no bcsp-guard filter"), "{}", r.stderr);
    let f = dir.file("junk.yaml", "key: [unclosed\n");
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not JSON and not valid YAML"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_accepts_the_shipped_local_envoy_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy.yaml");
    let r = cli(&["check", path]);
    assert_eq!(r.code, 0, "{}", r.all());
}
