//! The dynamic-module option of the compose and Cloud Run recipes. Each of its Envoy configs is
//! the twin of a Wasm config (the same filter JSON, listener, connection-manager settings, routes
//! and upstreams), loads the native build through `envoy.filters.http.dynamic_modules` with the
//! metadata hop, and passes `envoy --mode validate` on Envoy 1.40 with the real
//! `libbcsp_guard_envoy.so`; the compose service and the Cloud Run image put the module where
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` points.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    array_at, assert_no_problems, check, connection_managers, is_loopback, last_lines,
    read_repo_file, read_yaml, repo_root, run_bounded, str_at, AdminAddress, EnvoyDoc, RunOutput,
};
use crate::compose::dockerfile_stages;
use crate::harness::{dynmod_path, dynmod_supported, envoy_binary, pinned_envoy_version, TempDir};

/// (dynamic-module config, its Wasm twin).
pub const DYNMOD_CONFIGS: &[(&str, &str)] = &[
    (
        "deploy/compose/envoy-dynamic-module.yaml",
        "deploy/compose/envoy.yaml",
    ),
    (
        "deploy/cloud-run/envoy-dynamic-module.yaml",
        "deploy/cloud-run/envoy.yaml",
    ),
];

const MODULE_NAME: &str = "bcsp_guard_envoy";
const STRIP_PREFIX: &str = "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix";

/// The dynamic-modules filter of the first connection manager (its `typed_config`).
fn module_filter(doc: &EnvoyDoc) -> &Value {
    array_at(doc.first_connection_manager(), "/http_filters", &doc.file)
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.dynamic_modules")
        .map(|f| &f["typed_config"])
        .unwrap_or_else(|| panic!("{}: no envoy.filters.http.dynamic_modules filter", doc.file))
}

fn module_json(doc: &EnvoyDoc) -> Value {
    let text = str_at(module_filter(doc), "/filter_config/value", &doc.file);
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: filter JSON: {e}", doc.file))
}

fn filter_names(doc: &EnvoyDoc) -> Vec<String> {
    array_at(doc.first_connection_manager(), "/http_filters", &doc.file)
        .iter()
        .map(|f| f["name"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn dynamic_module_configs_are_twins_of_the_wasm_configs() {
    let mut problems = Vec::new();
    for (file, twin) in DYNMOD_CONFIGS {
        let doc = EnvoyDoc::load(file);
        let wasm = EnvoyDoc::load(twin);
        let f = module_filter(&doc);
        check(
            &mut problems,
            f["dynamic_module_config"]["name"] == MODULE_NAME && f["filter_name"] == "bcsp_guard",
            || format!("{file}: load {MODULE_NAME} with filter_name bcsp_guard"),
        );
        check(
            &mut problems,
            f["filter_config"]["@type"] == "type.googleapis.com/google.protobuf.StringValue",
            || format!("{file}: filter_config must be a StringValue holding the JSON"),
        );
        let json = module_json(&doc);
        check(&mut problems, json == wasm.plugin(), || {
            format!("{file}: the filter JSON differs from {twin}'s")
        });
        if let Err(e) = bcsp_guard::config::compile(json.to_string().as_bytes()) {
            problems.push(format!("{file}: filter configuration refused: {e}"));
        }
        // Every filter but ours, in the same order.
        let ours: Vec<String> = filter_names(&doc)
            .into_iter()
            .filter(|n| n != "envoy.filters.http.dynamic_modules")
            .collect();
        let theirs: Vec<String> = filter_names(&wasm)
            .into_iter()
            .filter(|n| n != "envoy.filters.http.wasm")
            .collect();
        check(&mut problems, ours == theirs, || {
            format!("{file}: other filters {ours:?}, {twin} has {theirs:?}")
        });
        check(
            &mut problems,
            doc.listener_addr() == wasm.listener_addr(),
            || format!("{file}: listener differs from {twin}'s"),
        );
        let same_admin = match (doc.admin(), wasm.admin()) {
            (AdminAddress::Tcp(a, p), AdminAddress::Tcp(b, q)) => a == b && p == q,
            (AdminAddress::Pipe(a), AdminAddress::Pipe(b)) => a == b,
            _ => false,
        };
        check(&mut problems, same_admin, || {
            format!("{file}: admin differs from {twin}'s")
        });
        let (hcm, whcm) = (
            doc.first_connection_manager(),
            wasm.first_connection_manager(),
        );
        for key in [
            "use_remote_address",
            "xff_num_trusted_hops",
            "normalize_path",
            "merge_slashes",
            "path_with_escaped_slashes_action",
            "common_http_protocol_options",
            "route_config",
        ] {
            check(&mut problems, hcm.get(key) == whcm.get(key), || {
                format!("{file}: connection manager `{key}` differs from {twin}'s")
            });
        }
        check(
            &mut problems,
            doc.v["layered_runtime"]["layers"][0]["static_layer"][STRIP_PREFIX] == true,
            || format!("{file}: set {STRIP_PREFIX}: true (Prometheus names as the Wasm build's)"),
        );
        problems.extend(hop_problems(&doc, &wasm));
    }
    assert_no_problems("dynamic-module configs", problems);
}

/// `upstream_token.cluster` leads to a loopback listener of the same Envoy that drops
/// X-Forwarded-For and forwards to what the twin's metadata cluster reaches; the twin's other
/// clusters are there unchanged.
fn hop_problems(doc: &EnvoyDoc, wasm: &EnvoyDoc) -> Vec<String> {
    let mut problems = Vec::new();
    let file = &doc.file;
    let token_cluster = module_json(doc)["upstream_token"]["cluster"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(entry) = doc.cluster(&token_cluster) else {
        return vec![format!("{file}: no cluster {token_cluster}")];
    };
    let (ip, port) = doc.endpoint(entry);
    check(&mut problems, is_loopback(&ip), || {
        format!("{file}: {token_cluster} must reach the hop on loopback, not {ip}")
    });
    let hop = doc.v["static_resources"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["address"]["socket_address"]["port_value"] == port);
    let Some(hop) = hop else {
        return vec![format!(
            "{file}: no listener on port {port} (the metadata hop)"
        )];
    };
    check(
        &mut problems,
        is_loopback(
            hop["address"]["socket_address"]["address"]
                .as_str()
                .unwrap_or(""),
        ),
        || format!("{file}: the metadata hop must listen on loopback"),
    );
    let name = hop["name"].as_str().unwrap_or("?").to_string();
    let hcm = connection_managers(&doc.v)
        .into_iter()
        .find(|(l, _)| *l == name)
        .map(|(_, h)| h)
        .unwrap_or(Value::Null);
    let vh = &hcm["route_config"]["virtual_hosts"][0];
    check(
        &mut problems,
        vh["request_headers_to_remove"]
            .as_array()
            .is_some_and(|h| h.iter().any(|n| n == "x-forwarded-for")),
        || format!("{file}: the hop must remove x-forwarded-for"),
    );
    let onward = vh["routes"][0]["route"]["cluster"].as_str().unwrap_or("?");
    match (doc.cluster(onward), wasm.cluster(&token_cluster)) {
        (Some(c), Some(w)) => check(
            &mut problems,
            doc.endpoint(c) == wasm.endpoint(w) && c["type"] == w["type"],
            || {
                format!(
                    "{file}: the hop reaches {:?}, {} reaches the metadata server at {:?}",
                    doc.endpoint(c),
                    wasm.file,
                    wasm.endpoint(w)
                )
            },
        ),
        _ => problems.push(format!("{file}: the hop's cluster {onward} is missing")),
    }
    for c in wasm.clusters() {
        let n = c["name"].as_str().unwrap_or("?");
        if n != token_cluster {
            check(&mut problems, doc.cluster(n) == Some(c), || {
                format!("{file}: cluster {n} differs from {}'s", wasm.file)
            });
        }
    }
    problems
}

/// `envoy --mode validate` on `text`, with Envoy finding the module where the recipes put it.
fn validate_with_module(name: &str, text: &str) -> RunOutput {
    let dir = TempDir::new("validate-dynmod");
    let copy = dir.path().join("envoy.yaml");
    std::fs::write(&copy, text).expect("write temp config");
    let module_dir = dynmod_path()
        .parent()
        .expect("module directory")
        .to_path_buf();
    let mut cmd = Command::new(envoy_binary());
    cmd.args(["--mode", "validate", "-l", "info", "-c"])
        .arg(&copy)
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", module_dir);
    run_bounded(
        cmd,
        Duration::from_secs(60),
        &format!("envoy --mode validate {name}"),
    )
}

#[test]
fn dynamic_module_configs_pass_envoy_validate_with_the_real_module() {
    if !dynmod_supported() {
        return;
    }
    let mut problems = Vec::new();
    for (file, _) in DYNMOD_CONFIGS {
        let ran = validate_with_module(file, &read_repo_file(file));
        let out = ran.stdout_and_stderr();
        check(
            &mut problems,
            ran.ok() && out.contains("OK") && out.contains("ABI version v0.2.0 matched"),
            || {
                format!(
                    "{file}: envoy --mode validate with the module failed ({:?})\n{}",
                    ran.code,
                    last_lines(&out, 15)
                )
            },
        );
    }
    assert_no_problems("envoy --mode validate (dynamic module)", problems);

    // Not vacuous: a configuration the module refuses fails validation, naming the field.
    let rel = "deploy/cloud-run/envoy-dynamic-module.yaml";
    let text = read_repo_file(rel).replace("\"trusted_hops\": 2", "\"trusted_hops\": 0");
    assert!(
        text.contains("\"trusted_hops\": 0"),
        "the mutation did not apply"
    );
    let ran = validate_with_module(rel, &text);
    let out = ran.stdout_and_stderr();
    assert!(
        !ran.ok(),
        "{rel} with trusted_hops 0 passed:\n{}",
        last_lines(&out, 10)
    );
    assert!(
        out.contains("bcsp-guard: invalid configuration: client_ip.trusted_hops"),
        "{}",
        last_lines(&out, 10)
    );
}

/// `ENV ENVOY_DYNAMIC_MODULES_SEARCH_PATH=<dir>` of a Dockerfile stage, and whether the stage
/// copies the module into that directory from another stage.
fn stage_module_problems(what: &str, lines: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = lines
        .iter()
        .find_map(|l| l.strip_prefix("ENV ENVOY_DYNAMIC_MODULES_SEARCH_PATH="))
        .map(str::to_string);
    let Some(dir) = dir else {
        return vec![format!(
            "{what}: no ENV ENVOY_DYNAMIC_MODULES_SEARCH_PATH=<dir>"
        )];
    };
    let target = format!("{dir}/lib{MODULE_NAME}.so");
    check(
        &mut problems,
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=") && l.ends_with(&target)),
        || format!("{what}: does not COPY the module to {target}"),
    );
    problems
}

/// The stage that compiles the module: `cargo build --release --locked -p bcsp-guard-envoy`.
fn builds_the_module(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.starts_with("RUN cargo build --release --locked") && l.contains("-p bcsp-guard-envoy")
    })
}

#[test]
fn compose_dynamic_module_service_builds_and_mounts_what_its_config_needs() {
    let file = "docker-compose.yml";
    let compose = read_yaml(file);
    let svc = &compose["services"]["envoy-dynamic-module"];
    let wasm_svc = &compose["services"]["envoy"];
    let doc = EnvoyDoc::load("deploy/compose/envoy-dynamic-module.yaml");
    let mut problems = Vec::new();
    check(
        &mut problems,
        svc["profiles"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "dynamic-module")),
        || "envoy-dynamic-module: only under the `dynamic-module` profile".into(),
    );
    // The image: Envoy's own, at the pinned release, with the module compiled in the Dockerfile.
    let target = svc["build"]["target"].as_str().unwrap_or("?");
    let dockerfile = format!(
        "{}/{}",
        svc["build"]["context"].as_str().unwrap_or("?"),
        svc["build"]["dockerfile"].as_str().unwrap_or("?")
    );
    let text = read_repo_file(dockerfile.trim_start_matches("./"));
    let stages = dockerfile_stages(&text);
    let from = format!(
        "FROM envoyproxy/envoy:v{} AS {target}",
        pinned_envoy_version()
    );
    check(
        &mut problems,
        text.lines().any(|l| l.trim() == from),
        || format!("{dockerfile}: expected `{from}`"),
    );
    match stages.get(target) {
        None => problems.push(format!("{dockerfile}: no stage {target}")),
        Some(lines) => {
            problems.extend(stage_module_problems(target, lines));
            let source = lines
                .iter()
                .find_map(|l| l.strip_prefix("COPY --from="))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?");
            check(
                &mut problems,
                stages.get(source).is_some_and(|s| builds_the_module(s)),
                || format!("{dockerfile}: stage {source} must build -p bcsp-guard-envoy"),
            );
        }
    }
    // The same command, health check and dependencies as `envoy`; its own host port.
    for key in ["command", "healthcheck", "depends_on"] {
        check(&mut problems, svc[key] == wasm_svc[key], || {
            format!("envoy-dynamic-module: `{key}` differs from the envoy service's")
        });
    }
    let config_in_container = "/etc/envoy/envoy.yaml";
    let mounts: BTreeMap<String, String> = array_at(svc, "/volumes", file)
        .iter()
        .map(|v| {
            check(
                &mut problems,
                v["read_only"] == true && v["bind"]["create_host_path"] == false,
                || "envoy-dynamic-module: mounts read_only, create_host_path: false".into(),
            );
            (
                str_at(v, "/target", file).to_string(),
                str_at(v, "/source", file)
                    .trim_start_matches("./")
                    .to_string(),
            )
        })
        .collect();
    check(
        &mut problems,
        mounts.get(config_in_container).map(String::as_str) == Some(doc.file.as_str()),
        || {
            format!(
                "envoy-dynamic-module: {config_in_container} must be {}",
                doc.file
            )
        },
    );
    check(&mut problems, repo_root().join(&doc.file).is_file(), || {
        format!("{} is missing", doc.file)
    });
    let ports: Vec<&str> = array_at(svc, "/ports", file)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let wasm_ports: Vec<&str> = array_at(wasm_svc, "/ports", file)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let (_, listen_port) = doc.listener_addr();
    for p in &ports {
        let parts: Vec<&str> = p.split(':').collect();
        check(
            &mut problems,
            parts.len() == 3 && is_loopback(parts[0]),
            || format!("envoy-dynamic-module: publish {p:?} on loopback only"),
        );
        let host_port = parts.get(1).copied().unwrap_or("?");
        check(
            &mut problems,
            !wasm_ports
                .iter()
                .any(|w| w.split(':').nth(1) == Some(host_port)),
            || format!("envoy-dynamic-module: host port {host_port} is the envoy service's too"),
        );
    }
    check(
        &mut problems,
        ports
            .iter()
            .any(|p| p.rsplit(':').next() == Some(&listen_port.to_string())),
        || format!("envoy-dynamic-module: the listener port {listen_port} is not published"),
    );
    assert_no_problems("compose dynamic-module service", problems);
}

#[test]
fn cloud_run_dynamic_module_image_matches_the_wasm_image() {
    let file = "deploy/cloud-run/dynamic-module.Dockerfile";
    let text = read_repo_file(file);
    let stages = dockerfile_stages(&text);
    let mut problems = Vec::new();
    let image = format!("FROM envoyproxy/envoy:v{}", pinned_envoy_version());
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("FROM "))
        .unwrap_or_default()
        .trim();
    check(&mut problems, last == image, || {
        format!("{file}: the image must start `{image}`, got `{last}`")
    });
    let final_stage = stages
        .iter()
        .find(|(name, _)| name.starts_with('#'))
        .map(|(_, l)| l.clone())
        .unwrap_or_default();
    problems.extend(stage_module_problems(file, &final_stage));
    check(
        &mut problems,
        stages.get("build").is_some_and(|s| builds_the_module(s)),
        || format!("{file}: its build stage must build -p bcsp-guard-envoy"),
    );
    // The build stage copies what the compose build stage copies (which tests/deploy/compose.rs
    // proves is enough for cargo).
    let copies = |lines: Option<&Vec<String>>| -> Vec<String> {
        lines
            .into_iter()
            .flatten()
            .filter(|l| l.starts_with("COPY "))
            .cloned()
            .collect()
    };
    let compose = dockerfile_stages(&read_repo_file("deploy/compose/Dockerfile"));
    check(
        &mut problems,
        copies(stages.get("build")) == copies(compose.get("build")),
        || format!("{file}: its build stage must COPY what deploy/compose/Dockerfile's does"),
    );
    // Same CMD as the Wasm image (service.yaml's cpu limit is checked against that one), and the
    // config it names is the dynamic-module one.
    let cmd = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("CMD "))
            .unwrap_or_default()
            .to_string()
    };
    let wasm_cmd = cmd(&read_repo_file("deploy/cloud-run/Dockerfile"));
    check(&mut problems, cmd(&text) == wasm_cmd, || {
        format!("{file}: CMD must equal deploy/cloud-run/Dockerfile's ({wasm_cmd})")
    });
    check(
        &mut problems,
        final_stage
            .iter()
            .any(|l| l == "COPY deploy/cloud-run/envoy-dynamic-module.yaml /etc/envoy/envoy.yaml"),
        || format!("{file}: must COPY deploy/cloud-run/envoy-dynamic-module.yaml to the -c path"),
    );
    check(
        &mut problems,
        wasm_cmd.contains("\"-c\", \"/etc/envoy/envoy.yaml\""),
        || "deploy/cloud-run/Dockerfile: CMD no longer passes -c /etc/envoy/envoy.yaml".into(),
    );
    let ignore = read_repo_file("deploy/cloud-run/dynamic-module.Dockerfile.dockerignore");
    check(
        &mut problems,
        ignore.lines().any(|l| l.trim() == "target/"),
        || format!("{file}.dockerignore must keep target/ out of the build context"),
    );
    let readme = read_repo_file("deploy/cloud-run/README.md");
    check(
        &mut problems,
        readme.contains("-f deploy/cloud-run/dynamic-module.Dockerfile"),
        || "deploy/cloud-run/README.md must show how to build the dynamic-module image".into(),
    );
    assert_no_problems("Cloud Run dynamic-module image", problems);
}
