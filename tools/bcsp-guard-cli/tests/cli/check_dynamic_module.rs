//! `bcsp-guard check` on Envoy YAML that loads bcsp-guard as a dynamic module
//! (`envoy.filters.http.dynamic_modules`): the same JSON, compiled with the module's secret
//! sources (Envoy's generic secrets), and only the Envoy settings the module needs.

use crate::common::*;
use crate::yaml;
use serde_json::{json, Value};

const HCM: &str = "          use_remote_address: true\n          normalize_path: true\n          merge_slashes: true\n          path_with_escaped_slashes_action: REJECT_REQUEST\n          common_http_protocol_options: {headers_with_underscores_action: REJECT_REQUEST}\n";
const FOUND: &str =
    "http_filters[0]: the dynamic module (envoy.filters.http.dynamic_modules, libbcsp_guard_envoy.so)";
/// A generic secret in the bootstrap, as the module reads it.
const SECRETS: &str = "  secrets:\n  - name: om-webhook\n    generic_secret: {secret: {inline_string: \"generic-secret-value-0123456789\"}}\n  - name: om-file\n    generic_secret: {secret: {filename: /run/secrets/om-webhook}}\n";

/// Counters under the Wasm build's Prometheus names; every bootstrap here ends with it.
const RUNTIME: &str = "layered_runtime: {layers: [{name: static, static_layer: {envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true}}]}\n";

/// A bootstrap whose only listener runs `filter` as the dynamic module; `top` goes first.
fn module_yaml(filter: &Value, filter_name: &str, hcm: &str, top: &str, secrets: &str) -> String {
    let filters = yaml::module_filter(filter, filter_name);
    yaml::bootstrap(
        top,
        secrets,
        &[yaml::listener(0, hcm, yaml::ROUTE_ALL, &filters)],
        RUNTIME,
    )
}

fn key() -> Value {
    json!([{"id": "k1", "sha256": sha256_hex(SECRET)}])
}

fn with_webhook(hook: Value) -> Value {
    json!({"keys": key(), "allow_cidrs": ["34.200.73.250/32"], "client_ip": {"from": "downstream"},
           "webhooks": [hook]})
}

#[test]
fn a_dynamic_module_config_with_generic_secrets_and_no_wasm_flag_passes() {
    let filter = with_webhook(json!({"path_prefix": "/om", "secret_generic": "om-webhook"}));
    // use_remote_address false: the module reads the direct peer anyway.
    let hcm = HCM.replace("use_remote_address: true", "use_remote_address: false");
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", &hcm, "", SECRETS));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(FOUND), "{}", r.stdout);
    assert!(r.stdout.contains("http_filters[0]: OK"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("/om (header x-hub-signature-256, Envoy generic secret om-webhook)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("direct TCP peer in the dynamic module"),
        "{}",
        r.stdout
    );
    assert!(
        !r.all().contains("allow_on_headers_stop_iteration"),
        "{}",
        r.all()
    );
    assert!(
        !r.all().contains("use_remote_address is not true"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("generic-secret-value"), "{}", r.all());
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);

    // A secret Envoy reads from a file, and one from Envoy's environment: noted, not read.
    let filter = with_webhook(json!({"path_prefix": "/om", "secret_generic": "om-file"}));
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", HCM, "", SECRETS));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(
            "note: generic secret `om-file` is read by Envoy from filename /run/secrets/om-webhook"
        ),
        "{}",
        r.stdout
    );
    let filter = with_webhook(json!({"path_prefix": "/om", "secret_env": "OM_WEBHOOK_SECRET"}));
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", HCM, "", ""));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("note: OM_WEBHOOK_SECRET comes from Envoy's own environment"),
        "{}",
        r.stdout
    );
}

#[test]
fn generic_secrets_are_refused_by_name_in_the_wasm_form_and_when_envoy_lacks_them() {
    let filter = with_webhook(json!({"path_prefix": "/om", "secret_generic": "om-webhook"}));
    // The same JSON in a Wasm filter: the Wasm build cannot read Envoy's generic secrets.
    let wasm = module_yaml(&filter, "bcsp_guard", HCM, "", SECRETS)
        .replace(
            "dynamic_modules.v3.DynamicModuleFilter",
            "wasm.v3.Wasm\n              config: {root_id: bcsp_guard, allow_on_headers_stop_iteration: true, configuration: {value: VALUE}}",
        )
        .replace(
            &format!("                value: {}\n", serde_json::to_string(&filter.to_string()).unwrap()),
            "",
        )
        .replace("VALUE", &serde_json::to_string(&filter.to_string()).unwrap());
    let r = check_envoy_yaml(&wasm);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("http_filters[0]: the Wasm module"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(
            "http_filters[0]: bcsp-guard: invalid configuration: webhooks[0].secret_generic: \
             Envoy generic secrets reach only the dynamic-module build"
        ),
        "{}",
        r.stderr
    );

    // The module, with no such secret in the bootstrap: the module's own refusal.
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", HCM, "", ""));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(
            "invalid configuration: webhooks[0].secret_generic: Envoy has no generic secret \
             `om-webhook` (declare it under static_resources.secrets)"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn a_broken_json_inside_the_module_config_fails_naming_the_field() {
    let bad = json!({"keys": key(), "lockout": {"cooldown_s": 0}});
    let r = check_envoy_yaml(&module_yaml(&bad, "bcsp_guard", HCM, "", ""));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains(FOUND), "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "http_filters[0]: bcsp-guard: invalid configuration: lockout.cooldown_s: must be 1 to 86400, got 0"
        ),
        "{}",
        r.stderr
    );
    let hook = with_webhook(json!({"path_prefix": "/om", "secret_generic": "om-webhook",
                                   "secret_generic_sds": "not-an-object"}));
    let r = check_envoy_yaml(&module_yaml(&hook, "bcsp_guard", HCM, "", SECRETS));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("webhooks[0].secret_generic_sds: must be an Envoy ConfigSource object"),
        "{}",
        r.stderr
    );
    // The module answers only to filter_name bcsp_guard.
    let ok = json!({"keys": key()});
    let r = check_envoy_yaml(&module_yaml(&ok, "guard", HCM, "", ""));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("invalid configuration: filter_name: must be `bcsp_guard`, got `guard`"),
        "{}",
        r.stderr
    );
}

#[test]
fn secrets_over_sds_need_a_node_in_the_bootstrap() {
    let filter = with_webhook(json!({"path_prefix": "/om", "secret_generic": "om-sds",
        "secret_generic_sds": {"path_config_source": {"path": "/etc/envoy/sds/om.json"},
                               "resource_api_version": "V3"}}));
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", HCM, "", ""));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("note: generic secret `om-sds` arrives over SDS once Envoy runs"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("set node.id and node.cluster"),
        "{}",
        r.stdout
    );
    let node = "node: {id: bcsp-guard, cluster: bcsp-guard}\n";
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", HCM, node, ""));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("node.id"), "{}", r.stdout);
}

#[test]
fn connection_manager_checks_that_apply_to_the_module_still_run() {
    let filter = json!({"keys": key(), "routes": [{"method": "GET", "path": "/bots"}]});
    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", "", "", ""));
    assert_eq!(r.code, 0, "{}", r.all());
    for want in [
        "set normalize_path: true and merge_slashes: true",
        "path_with_escaped_slashes_action: REJECT_REQUEST",
        "headers_with_underscores_action: REJECT_REQUEST",
    ] {
        assert!(r.stdout.contains(want), "{want}: {}", r.stdout);
    }
    // Routing on a header bcsp-guard sets, with audience_by_cluster: refused for both builds.
    let filter = json!({"keys": key(), "upstream_token": {"cluster": "gcp_metadata",
        "audience": "https://us.run.app", "audience_by_cluster": {"eu": "https://eu.run.app"}}});
    let yaml = module_yaml(&filter, "bcsp_guard", HCM, "", "").replace(
        "{match: {prefix: \"/\"}, route: {cluster: bcsp}}",
        "{match: {prefix: \"/\", headers: [{name: x-bcsp-key-id, string_match: {exact: k1}}]}, route: {cluster: eu}}",
    );
    let r = check_envoy_yaml(&yaml);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("route_config.virtual_hosts[0].routes[0] matches on header `x-bcsp-key-id`")
            && r.stderr.contains("audience_by_cluster"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_shipped_dynamic_module_configs_pass() {
    for file in [
        "deploy/compose/envoy-dynamic-module.yaml",
        "deploy/cloud-run/envoy-dynamic-module.yaml",
    ] {
        let path = format!("{}/../../{file}", env!("CARGO_MANIFEST_DIR"));
        let r = cli(&["check", &path]);
        assert_eq!(r.code, 0, "{file}: {}", r.all());
        assert!(r.stdout.contains(FOUND), "{file}: {}", r.stdout);
        assert!(
            r.stdout.contains("http_filters[0]: OK"),
            "{file}: {}",
            r.stdout
        );
        assert!(!r.stdout.contains("warning"), "{file}: {}", r.stdout);
    }
}

#[test]
fn token_fetches_need_the_metadata_hop_and_counters_the_runtime_flag() {
    let filter = json!({"keys": key(),
        "upstream_token": {"cluster": "gcp_metadata", "audience": "https://bcsp.run.app"}});
    let direct = "  clusters:\n  - name: gcp_metadata\n    type: STATIC\n    load_assignment: {cluster_name: gcp_metadata, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 169.254.169.254, port_value: 80}}}}]}]}\n";
    let yaml = module_yaml(&filter, "bcsp_guard", HCM, "", "")
        .replace(RUNTIME, &format!("{direct}{RUNTIME}"));
    let r = check_envoy_yaml(&yaml);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("upstream_token.cluster `gcp_metadata` goes straight to the metadata server"),
        "{}",
        r.stderr
    );
    // The Wasm build fetches straight from the metadata server: fine there.
    let r = check_envoy_yaml(&yaml.replace(
        "dynamic_modules.v3.DynamicModuleFilter",
        "wasm.v3.Wasm\n              config: {root_id: bcsp_guard}",
    ));
    assert!(
        r.stdout.contains("http_filters[0]: the Wasm module"),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains("goes straight"), "{}", r.all());

    let r = check_envoy_yaml(&module_yaml(&filter, "bcsp_guard", HCM, "", "").replace(RUNTIME, ""));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("warning: set the runtime flag envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_reads_a_dynamic_module_config_with_its_generic_secrets() {
    // The Wasm rules would refuse `secret_generic`; explain compiles as the module does.
    let dir = Dir::new("explain-dynmod");
    let filter = with_webhook(json!({"path_prefix": "/om", "secret_generic": "om-webhook"}));
    let yaml = dir.file(
        "envoy.yaml",
        &module_yaml(&filter, "bcsp_guard", HCM, "", SECRETS),
    );
    let r = cli(&[
        "explain",
        &yaml,
        "--method",
        "GET",
        "--path",
        "/botconnector/bots",
        "--client-ip",
        "34.200.73.250",
        "--header",
        &format!("x-bcsp-key: {SECRET}"),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("allowed"), "{}", r.stdout);
    assert!(!r.all().contains("secret_generic"), "{}", r.all());
    assert!(!r.all().contains("generic-secret-value"), "{}", r.all());
}

#[test]
fn a_struct_filter_config_is_checked_as_the_json_envoy_hands_over() {
    // The JSON object is the Struct's value (JSON is YAML).
    let as_struct = |filter: &Value| {
        module_yaml(filter, "bcsp_guard", HCM, "", "")
            .replace("google.protobuf.StringValue", "google.protobuf.Struct")
            .replace(
                &serde_json::to_string(&filter.to_string()).unwrap(),
                &filter.to_string(),
            )
    };
    let ok = json!({"keys": key(), "max_body_bytes": 4096});
    let r = check_envoy_yaml(&as_struct(&ok));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("http_filters[0]: OK"), "{}", r.stdout);

    let bad = json!({"keys": key(), "lockout": {"cooldown_s": 0}});
    let r = check_envoy_yaml(&as_struct(&bad));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("http_filters[0]: bcsp-guard: invalid configuration: lockout.cooldown_s"),
        "{}",
        r.stderr
    );

    // Any other type is refused by name.
    let r = check_envoy_yaml(
        &module_yaml(&ok, "bcsp_guard", HCM, "", "")
            .replace("google.protobuf.StringValue", "google.protobuf.BytesValue"),
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("or a google.protobuf.Struct holding it (got @type"),
        "{}",
        r.stderr
    );
}
