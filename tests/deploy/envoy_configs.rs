//! Every Envoy bootstrap the repository ships (envoy.yaml and those under deploy/): each has a
//! row of expectations, passes `envoy --mode validate` with the real module, keeps the safety
//! rules (admin, listener, fail-closed Wasm filter, client-IP rule, clusters), refuses
//! underscore headers, and sets the Wasm flag that lets bcsp-guard hold webhook deliveries.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::common::{
    assert_no_problems, check, connection_managers, envoy_configs_under_deploy,
    envoy_validate_file, envoy_validate_text, is_loopback, last_lines, parse_yaml, read_repo_file,
    read_yaml, AdminAddress, EnvoyDoc, RunOutput, ROOT_ID,
};
use crate::harness::wasm_path;

/// What each shipped Envoy config must look like. Every Envoy config under `deploy/` must have a
/// row (so a new one cannot escape `envoy --mode validate`).
struct EnvoyCase {
    file: &'static str,
    listener: (&'static str, u16),
    wasm_filename: &'static str,
    client_ip: Value,
    /// Expected `upstream_token.cluster`, or None when the config must have no upstream_token.
    token_cluster: Option<&'static str>,
}

fn envoy_cases() -> Vec<EnvoyCase> {
    vec![
        EnvoyCase {
            file: "envoy.yaml",
            listener: ("127.0.0.1", 10000),
            wasm_filename: "target/wasm32-wasip1/release/bcsp_guard.wasm",
            client_ip: json!({"from": "downstream"}),
            token_cluster: Some("gcp_metadata"),
        },
        EnvoyCase {
            file: "deploy/compose/envoy.yaml",
            listener: ("0.0.0.0", 10000),
            wasm_filename: "/etc/envoy/bcsp_guard.wasm",
            client_ip: json!({"from": "downstream"}),
            token_cluster: Some("gcp_metadata"),
        },
        EnvoyCase {
            file: "deploy/cloud-run/envoy.yaml",
            listener: ("0.0.0.0", 8080),
            wasm_filename: "/etc/envoy/bcsp_guard.wasm",
            // Cloud Run's front end appends the caller, Envoy (use_remote_address) the front end.
            client_ip: json!({"from": "x-forwarded-for", "trusted_hops": 2}),
            token_cluster: Some("gcp_metadata"),
        },
        EnvoyCase {
            file: "deploy/cloud-run/sidecar/envoy.yaml",
            listener: ("0.0.0.0", 8080),
            wasm_filename: "/etc/envoy/bcsp_guard.wasm",
            client_ip: json!({"from": "x-forwarded-for", "trusted_hops": 2}),
            token_cluster: None,
        },
    ]
}

#[test]
fn every_deploy_envoy_config_has_a_row() {
    let listed: BTreeSet<String> = envoy_cases()
        .iter()
        .map(|c| c.file.to_string())
        .filter(|f| f.starts_with("deploy/"))
        // The dynamic-module configs have their own table (tests/deploy/dynamic_module.rs).
        .chain(
            crate::dynamic_module::DYNMOD_CONFIGS
                .iter()
                .map(|(f, _)| f.to_string()),
        )
        .collect();
    let found: BTreeSet<String> = envoy_configs_under_deploy().into_iter().collect();
    assert_eq!(
        found,
        listed,
        "Envoy configs under deploy/ vs the rows of envoy_cases() in tests/deploy/envoy_configs.rs: \
         add a row for a new config"
    );
}

#[test]
fn envoy_configs_pass_envoy_validate() {
    let wasm = wasm_path();
    let mut problems = Vec::new();
    // In parallel: each validation starts a V8 VM.
    let runs: Vec<(&'static str, RunOutput)> = std::thread::scope(|s| {
        let handles: Vec<_> = envoy_cases()
            .into_iter()
            .map(|c| {
                let wasm = &wasm;
                s.spawn(move || (c.file, envoy_validate_file(c.file, wasm)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("validate thread"))
            .collect()
    });
    for (file, ran) in runs {
        let out = ran.stdout_and_stderr();
        check(&mut problems, ran.ok() && out.contains("OK"), || {
            format!(
                "{file}: envoy --mode validate failed ({:?})\n{}",
                ran.code,
                last_lines(&out, 15)
            )
        });
    }
    assert_no_problems("envoy --mode validate", problems);
}

/// The validation above is not vacuous: a config the filter refuses fails it.
#[test]
fn envoy_validate_catches_a_config_the_filter_refuses() {
    let rel = "deploy/cloud-run/envoy.yaml";
    let text = read_repo_file(rel).replace("\"trusted_hops\": 2", "\"trusted_hops\": 0");
    assert!(
        text.contains("\"trusted_hops\": 0"),
        "the mutation did not apply"
    );
    let ran = envoy_validate_text(rel, &text, &wasm_path());
    assert!(
        !ran.ok(),
        "{rel} with trusted_hops 0 passed validation:\n{}",
        last_lines(&ran.stdout_and_stderr(), 10)
    );
    assert!(
        ran.stdout_and_stderr().contains("trusted_hops"),
        "the refusal does not name the field:\n{}",
        last_lines(&ran.stdout_and_stderr(), 10)
    );
}

#[test]
fn envoy_configs_keep_the_safety_rules() {
    let mut problems = Vec::new();
    for case in envoy_cases() {
        let doc = EnvoyDoc::load(case.file);
        let f = case.file;
        match doc.admin() {
            AdminAddress::Tcp(ip, _) => check(&mut problems, is_loopback(&ip), || {
                format!("{f}: admin on {ip}, not loopback")
            }),
            AdminAddress::Pipe(path) => check(&mut problems, path.starts_with('/'), || {
                format!("{f}: admin socket path {path:?} must be absolute")
            }),
        }
        let (ip, port) = doc.listener_addr();
        check(
            &mut problems,
            (ip.as_str(), port) == (case.listener.0, u64::from(case.listener.1)),
            || {
                format!(
                    "{f}: listener {ip}:{port}, expected {}:{}",
                    case.listener.0, case.listener.1
                )
            },
        );
        check(
            &mut problems,
            doc.wasm_filename() == case.wasm_filename,
            || {
                format!(
                    "{f}: module at {}, expected {}",
                    doc.wasm_filename(),
                    case.wasm_filename
                )
            },
        );
        let w = doc.wasm_filter_config();
        check(&mut problems, w["fail_open"] == false, || {
            format!("{f}: fail_open must be false")
        });
        check(&mut problems, w["root_id"] == ROOT_ID, || {
            format!("{f}: root_id must be {ROOT_ID}")
        });
        check(
            &mut problems,
            w["vm_config"]["runtime"] == "envoy.wasm.runtime.v8",
            || {
                format!(
                    "{f}: runtime must be envoy.wasm.runtime.v8 (the only one these builds have)"
                )
            },
        );
        let hcm = doc.first_connection_manager();
        check(&mut problems, hcm["use_remote_address"] == true, || {
            format!("{f}: use_remote_address must be true (README: Client IP)")
        });
        check(
            &mut problems,
            hcm.get("xff_num_trusted_hops").is_none_or(|v| v == 0),
            || format!("{f}: xff_num_trusted_hops must stay 0"),
        );
        // The filter's own validation, with the field path in the error.
        let plugin = doc.plugin();
        if let Err(e) = bcsp_guard::config::compile(doc.plugin_text().as_bytes()) {
            problems.push(format!("{f}: plugin configuration refused: {e}"));
        }
        check(&mut problems, plugin["client_ip"] == case.client_ip, || {
            format!(
                "{f}: client_ip {}, expected {}",
                plugin["client_ip"], case.client_ip
            )
        });
        let token_cluster = plugin["upstream_token"]["cluster"].as_str();
        check(&mut problems, token_cluster == case.token_cluster, || {
            format!(
                "{f}: upstream_token.cluster {token_cluster:?}, expected {:?}",
                case.token_cluster
            )
        });
        if let Some(name) = token_cluster {
            match doc.cluster(name) {
                None => problems.push(format!(
                    "{f}: upstream_token names cluster {name}, which is missing"
                )),
                Some(c) => check(&mut problems, c.get("transport_socket").is_none(), || {
                    format!("{f}: the metadata cluster must be plain HTTP")
                }),
            }
        }
        for r in doc.routes() {
            let c = r["route"]["cluster"].as_str().unwrap_or_default();
            check(&mut problems, doc.cluster(c).is_some(), || {
                format!("{f}: a route names cluster {c:?}, which is missing")
            });
        }
    }
    assert_no_problems("Envoy config rules", problems);
}

// ---------------------------------------------------------------------------------------------
// Envoy settings every deploy config shares
// ---------------------------------------------------------------------------------------------

#[test]
fn deploy_envoy_configs_refuse_underscore_headers() {
    let mut problems = Vec::new();
    for f in envoy_configs_under_deploy() {
        let v = read_yaml(&f);
        for (listener, hcm) in connection_managers(&v) {
            let action = &hcm["common_http_protocol_options"]["headers_with_underscores_action"];
            check(&mut problems, action == "REJECT_REQUEST", || {
                format!("{f} ({listener}): headers_with_underscores_action is {action}, expected REJECT_REQUEST")
            });
        }
    }
    assert_no_problems("underscore headers", problems);
}

// ---------------------------------------------------------------------------------------------
// Webhooks: the Wasm flag, no buffer filter
// ---------------------------------------------------------------------------------------------

/// Problems of one Envoy bootstrap: a `webhooks` plugin without allow_on_headers_stop_iteration,
/// or a buffer filter (bcsp-guard holds deliveries itself; a buffer filter only hides a missing
/// flag).
fn webhook_problems(name: &str, v: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (listener, hcm) in connection_managers(v) {
        for f in hcm["http_filters"].as_array().cloned().unwrap_or_default() {
            check(
                &mut problems,
                f["name"] != "envoy.filters.http.buffer",
                || {
                    format!("{name} ({listener}): remove envoy.filters.http.buffer; set allow_on_headers_stop_iteration")
                },
            );
            if f["name"] != "envoy.filters.http.wasm" {
                continue;
            }
            let config = &f["typed_config"]["config"];
            let plugin: Value = config["configuration"]["value"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            let webhooks = plugin["webhooks"].as_array().is_some_and(|w| !w.is_empty());
            check(
                &mut problems,
                !webhooks || config["allow_on_headers_stop_iteration"] == true,
                || {
                    format!("{name} ({listener}): webhooks need allow_on_headers_stop_iteration: true on the Wasm filter")
                },
            );
        }
    }
    problems
}

#[test]
fn webhook_configs_set_the_wasm_flag_and_have_no_buffer_filter() {
    let mut problems = Vec::new();
    let configs = envoy_configs_under_deploy();
    assert!(
        configs.len() >= 3,
        "Envoy configs under deploy/: {configs:?}"
    );
    for f in &configs {
        problems.extend(webhook_problems(f, &read_yaml(f)));
    }
    // Hosts that cannot set the flag carry no webhooks.
    let wp = read_yaml("deploy/istio/wasmplugin.yaml");
    check(
        &mut problems,
        wp["spec"]["pluginConfig"].get("webhooks").is_none(),
        || {
            "deploy/istio/wasmplugin.yaml: WasmPlugin cannot set allow_on_headers_stop_iteration: no webhooks".into()
        },
    );
    let se: Value = serde_json::from_str(&read_repo_file(
        "deploy/service-extensions/plugin-config.json",
    ))
    .expect("plugin-config.json is JSON");
    check(&mut problems, se.get("webhooks").is_none(), || {
        "plugin-config.json: Service Extensions does not document honouring the pause: no webhooks"
            .into()
    });
    assert_no_problems("webhook configs", problems);
}

/// The rule bites, and the flag it asks for is one this Envoy accepts in a shipped config.
#[test]
fn webhook_rule_catches_a_missing_flag_and_the_flag_validates() {
    let rel = "deploy/compose/envoy.yaml";
    let shipped = read_repo_file(rel);
    let with_webhooks = shipped.replace(
        "\"key_id_header\": \"x-bcsp-key-id\",",
        "\"key_id_header\": \"x-bcsp-key-id\",\n                      \"webhooks\": [{\"path_prefix\": \"/openmessaging\", \"secret\": \"recipe-test-secret-0123\"}],",
    );
    assert_ne!(with_webhooks, shipped, "{rel}: mutation did not apply");
    let flagged = with_webhooks.replace(
        "                fail_open: false\n",
        "                fail_open: false\n                allow_on_headers_stop_iteration: true\n",
    );
    assert_ne!(flagged, with_webhooks, "{rel}: flag mutation did not apply");

    let missing = webhook_problems("no flag", &parse_yaml("no flag", &with_webhooks));
    assert_eq!(
        missing.len(),
        1,
        "a webhook config without the flag: {missing:?}"
    );
    assert!(webhook_problems("flag", &parse_yaml("flag", &flagged)).is_empty());
    let buffered = flagged.replace(
        "          - name: envoy.filters.http.router\n",
        "          - name: envoy.filters.http.buffer\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n              max_request_bytes: 1048576\n          - name: envoy.filters.http.router\n",
    );
    assert_ne!(buffered, flagged, "{rel}: buffer mutation did not apply");
    assert_eq!(
        webhook_problems("buffer", &parse_yaml("buffer", &buffered)).len(),
        1
    );

    let ran = envoy_validate_text(rel, &flagged, &wasm_path());
    assert!(
        ran.ok(),
        "{rel} with webhooks and the flag fails validation:\n{}",
        ran.stdout_and_stderr()
    );
}
