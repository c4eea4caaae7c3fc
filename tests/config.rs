//! Invalid filter configurations: Envoy must refuse to start (exit status 1) and its log must
//! name the offending field. One test per case so they run in parallel and fail separately.

mod harness;

use harness::*;
use serde_json::{json, Value};

fn secret_sha256() -> String {
    sha256_hex("config-test-secret")
}

fn key_entry(id: &str) -> Value {
    json!({ "id": id, "sha256": secret_sha256() })
}

/// Start Envoy with `filter` and require exit status 1 and a plugin log line (`wasm log ...`,
/// or the dynamic module's `[dynamic_modules]` logger) that contains every needle (a needle
/// `a|b` is satisfied by either alternative).
fn refused(filter: Value, needles: &[&str]) {
    let cfg = EnvoyConfig::new(filter.clone());
    let marker = match cfg.artifact {
        Artifact::Wasm => "wasm log",
        Artifact::DynamicModule => "[dynamic_modules]",
    };
    let (code, log) = Envoy::expect_config_failure(&cfg);
    let plugin_lines: Vec<&str> = log.lines().filter(|l| l.contains(marker)).collect();
    assert_eq!(
        code,
        1,
        "Envoy exit status for {filter}\n{}",
        plugin_lines.join("\n")
    );
    let named = |needle: &str| {
        plugin_lines
            .iter()
            .any(|l| needle.split('|').any(|alt| l.contains(alt)))
    };
    for needle in needles {
        assert!(
            named(needle),
            "no plugin log line names {needle:?} for config {filter}\nplugin lines:\n{}",
            plugin_lines.join("\n")
        );
    }
    // A refused configuration must not leak its hashes either.
    assert!(
        !log.contains(&secret_sha256()),
        "log leaks a configured hash"
    );
}

#[test]
fn unknown_top_level_field() {
    refused(
        json!({ "keys": [key_entry("a")], "allow_cidr": ["10.0.0.0/8"] }),
        &["allow_cidr"],
    );
}

#[test]
fn unknown_key_field() {
    refused(
        json!({ "keys": [{ "id": "a", "sha256": secret_sha256(), "not_after_": "2030-01-01T00:00:00Z" }] }),
        &["keys[0]", "not_after_"],
    );
}

#[test]
fn hash_with_non_hex_characters() {
    let bad = format!("zz{}", &secret_sha256()[2..]);
    refused(
        json!({ "keys": [{ "id": "a", "sha256": bad }] }),
        &["keys[0].sha256"],
    );
}

#[test]
fn hash_too_short() {
    refused(
        json!({ "keys": [key_entry("a"), { "id": "b", "sha256": &secret_sha256()[..63] }] }),
        &["keys[1].sha256"],
    );
}

#[test]
fn hash_missing() {
    refused(json!({ "keys": [{ "id": "a" }] }), &["keys[0]", "sha256"]);
}

#[test]
fn duplicate_key_id() {
    refused(
        json!({ "keys": [key_entry("dup"), key_entry("dup")] }),
        &["keys[1].id"],
    );
}

#[test]
fn key_id_with_bad_characters() {
    refused(json!({ "keys": [key_entry("bad id!")] }), &["keys[0].id"]);
}

#[test]
fn key_id_too_long() {
    refused(
        json!({ "keys": [key_entry(&"x".repeat(65))] }),
        &["keys[0].id"],
    );
}

#[test]
fn keys_empty() {
    refused(json!({ "keys": [] }), &["keys"]);
}

#[test]
fn keys_missing() {
    refused(json!({ "allow_cidrs": ["10.0.0.0/8"] }), &["keys"]);
}

#[test]
fn sixty_five_keys() {
    let keys: Vec<Value> = (0..65).map(|i| key_entry(&format!("key-{i}"))).collect();
    refused(json!({ "keys": keys }), &["keys"]);
}

#[test]
fn bad_timestamp() {
    refused(
        json!({ "keys": [{ "id": "a", "sha256": secret_sha256(), "not_after": "2026-13-01T00:00:00Z" }] }),
        &["keys[0].not_after"],
    );
}

#[test]
fn timestamp_without_zone() {
    refused(
        json!({ "keys": [{ "id": "a", "sha256": secret_sha256(), "not_before": "2026-10-01T00:00:00" }] }),
        &["keys[0].not_before"],
    );
}

#[test]
fn not_before_not_earlier_than_not_after() {
    let same = "2026-10-01T00:00:00Z";
    refused(
        json!({ "keys": [{ "id": "a", "sha256": secret_sha256(), "not_before": same, "not_after": same }] }),
        &["keys[0].not_before|keys[0].not_after"],
    );
}

#[test]
fn bad_cidr() {
    refused(
        json!({ "keys": [key_entry("a")], "allow_cidrs": ["10.0.0.0/8", "10.0.0.0/33"] }),
        &["allow_cidrs[1]"],
    );
}

#[test]
fn cidr_garbage() {
    refused(
        json!({ "keys": [key_entry("a")], "allow_cidrs": ["genesys.example"] }),
        &["allow_cidrs[0]"],
    );
}

#[test]
fn trusted_hops_zero() {
    refused(
        json!({ "keys": [key_entry("a")], "client_ip": { "from": "x-forwarded-for", "trusted_hops": 0 } }),
        &["client_ip.trusted_hops"],
    );
}

#[test]
fn unknown_client_ip_source() {
    refused(
        json!({ "keys": [key_entry("a")], "client_ip": { "from": "leftmost-xff" } }),
        &["client_ip.from"],
    );
}

#[test]
fn configuration_not_json() {
    let (code, _log) =
        Envoy::expect_config_failure(&EnvoyConfig::new(Value::String("keys: [not json".into())));
    assert_eq!(code, 1);
}
