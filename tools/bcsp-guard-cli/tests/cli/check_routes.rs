//! `bcsp-guard check` on Envoy routes that match a header the filter removes or sets: the
//! route Envoy finally takes follows the edited headers, while a Wasm filter only ever reads the
//! first route's cluster (checked in Envoy 1.36 and 1.40).

use crate::common::check_envoy_yaml;
use crate::yaml;
use bcsp_guard::policy::keys::SecretHash;
use serde_json::{json, Value};

/// An Envoy config whose first route matches `header: value`.
fn envoy(filter: &Value, header: &str) -> String {
    let routes = format!(
        r#"          route_config:
            virtual_hosts:
            - name: b
              domains: ["*"]
              routes:
              - match: {{prefix: "/", headers: [{{name: {header}, string_match: {{exact: genesys}}}}]}}
                route: {{cluster: eu}}
              - match: {{prefix: "/"}}
                route: {{cluster: us}}
"#
    );
    let hcm = "          use_remote_address: true\n";
    let filters = yaml::wasm_filter(filter, "", "");
    yaml::bootstrap("", "", &[yaml::listener(0, hcm, &routes, &filters)], "")
}

fn filter(by_cluster: bool) -> Value {
    let mut token = json!({"cluster": "gcp_metadata", "audience": "https://us.run.app"});
    if by_cluster {
        token["audience_by_cluster"] = json!({"eu": "https://eu.run.app"});
    }
    json!({
        "keys": [{"id": "genesys", "sha256": SecretHash::of(b"cli-routes-secret-01").to_hex()}],
        "upstream_token": token,
    })
}

#[test]
fn audience_by_cluster_with_routes_on_an_edited_header_is_refused() {
    for header in [
        "x-bcsp-key-id",
        "X_BCSP_KEY_ID",
        "x-bcsp-key",
        "authorization",
        "x-serverless-authorization",
    ] {
        let r = check_envoy_yaml(&envoy(&filter(true), header));
        let (code, out, err) = (r.code, r.stdout, r.stderr);
        assert_eq!(code, 1, "{header}: {out}{err}");
        assert!(
            err.contains(&format!(
                "route_config.virtual_hosts[0].routes[0] matches on header `{header}`"
            )) && err.contains("audience_by_cluster"),
            "{header}: {err}"
        );
    }
}

#[test]
fn routes_on_an_edited_header_without_audience_by_cluster_get_a_warning() {
    let r = check_envoy_yaml(&envoy(&filter(false), "x-bcsp-key-id"));
    let (code, out, err) = (r.code, r.stdout, r.stderr);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("matches on header `x-bcsp-key-id`, which bcsp-guard removes or sets"),
        "{out}"
    );
}

#[test]
fn routes_on_other_headers_are_fine() {
    let r = check_envoy_yaml(&envoy(&filter(true), "x-tenant"));
    let (code, out, err) = (r.code, r.stdout, r.stderr);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("matches on header"), "{out}");
}
