//! Every shipped Envoy config carries the JSON access log with bcsp-guard's audit fields,
//! printed the way its artifact exports them (Wasm: filter state; dynamic module: dynamic
//! metadata), so an operator gets the decision per request without adding anything.

use serde_json::Value;

use crate::common::{
    assert_no_problems, connection_managers, envoy_configs_under_deploy, parse_yaml, read_yaml,
};
use crate::harness::{audit_operator, Artifact, AUDIT_FIELDS};

/// The artifact of the bcsp-guard filter in this connection manager, if it has one.
fn guard_artifact(hcm: &Value) -> Option<Artifact> {
    let filters = hcm["http_filters"].as_array()?;
    filters.iter().find_map(|f| {
        let c = &f["typed_config"];
        match f["name"].as_str()? {
            "envoy.filters.http.wasm" if c["config"]["root_id"] == "bcsp_guard" => {
                Some(Artifact::Wasm)
            }
            "envoy.filters.http.dynamic_modules" if c["filter_name"] == "bcsp_guard" => {
                Some(Artifact::DynamicModule)
            }
            _ => None,
        }
    })
}

/// What is missing from `file`'s access logs: per connection manager running bcsp-guard, a
/// JSON access log with every audit field.
fn access_log_problems(file: &str, v: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut guarded = 0;
    for (listener, hcm) in connection_managers(v) {
        let Some(artifact) = guard_artifact(&hcm) else {
            continue;
        };
        guarded += 1;
        let logs = hcm["access_log"].as_array().cloned().unwrap_or_default();
        let formats: Vec<&Value> = logs
            .iter()
            .map(|l| &l["typed_config"]["log_format"]["json_format"])
            .filter(|f| f.is_object())
            .collect();
        if formats.is_empty() {
            problems.push(format!("{file} listener {listener}: no JSON access log"));
            continue;
        }
        for field in AUDIT_FIELDS {
            let want = audit_operator(artifact, field);
            if !formats.iter().any(|f| f[field] == want.as_str()) {
                problems.push(format!(
                    "{file} listener {listener}: access log lacks `{field}: \"{want}\"`"
                ));
            }
        }
    }
    if guarded == 0 {
        problems.push(format!("{file}: no connection manager runs bcsp-guard"));
    }
    problems
}

#[test]
fn shipped_envoy_configs_log_every_audit_field() {
    let mut files = vec!["envoy.yaml".to_string()];
    files.extend(envoy_configs_under_deploy());
    let mut problems = Vec::new();
    for f in &files {
        problems.extend(access_log_problems(f, &read_yaml(f)));
    }
    assert_no_problems("access logs of the shipped Envoy configs", problems);
}

#[test]
fn the_access_log_rule_catches_a_missing_field() {
    let text = crate::common::read_repo_file("envoy.yaml");
    let without = text.replace(
        "                  lockout: \"%FILTER_STATE(wasm.bcsp_guard.lockout:PLAIN)%\"\n",
        "",
    );
    assert_ne!(text, without, "envoy.yaml logs the lockout field");
    let problems = access_log_problems("envoy.yaml", &parse_yaml("envoy.yaml", &without));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("lockout"), "{problems:?}");
}
