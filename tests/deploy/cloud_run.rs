//! Cloud Run (deploy/cloud-run/): the proxy and sidecar manifests agree with their Envoy configs
//! (ports, timeouts, CPU, TLS to the BCSP, metadata server), the image recipe puts module and
//! config where the configs expect them, and the README replaces services only from their
//! export and makes them public without allUsers.

use serde_json::{json, Value};

use crate::common::{
    array_at, assert_no_problems, check, envoy_duration_secs, read_repo_file, read_yaml,
    shell_commands, u64_at, EnvoyDoc,
};
use crate::harness::pinned_envoy_version;

/// The image's CA bundle (envoyproxy/envoy is Ubuntu with ca-certificates).
const IMAGE_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The container that receives requests (the one with `ports`), and the others.
fn cloud_run_containers(svc: &Value, file: &str) -> (Value, Vec<Value>) {
    let all = array_at(svc, "/spec/template/spec/containers", file).clone();
    let (ingress, others): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|c| {
        c.get("ports")
            .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()))
    });
    assert_eq!(
        ingress.len(),
        1,
        "{file}: exactly one container must declare ports"
    );
    (ingress[0].clone(), others)
}

#[test]
fn cloud_run_manifests_match_their_envoy_configs() {
    let mut problems = Vec::new();
    let rows = [
        (
            "deploy/cloud-run/envoy.yaml",
            "deploy/cloud-run/service.yaml",
        ),
        (
            "deploy/cloud-run/sidecar/envoy.yaml",
            "deploy/cloud-run/sidecar/service.yaml",
        ),
    ];
    let dockerfile = read_repo_file("deploy/cloud-run/Dockerfile");
    let cmd_line = dockerfile
        .lines()
        .find(|l| l.starts_with("CMD "))
        .expect("deploy/cloud-run/Dockerfile: no CMD");
    let cmd: Vec<String> =
        serde_json::from_str(cmd_line.trim_start_matches("CMD ")).expect("CMD in JSON form");
    let concurrency: u64 = cmd
        .windows(2)
        .find(|w| w[0] == "--concurrency")
        .map(|w| w[1].parse().expect("--concurrency N"))
        .expect("the Dockerfile's CMD must set --concurrency");
    for (cfg_file, svc_file) in rows {
        let cfg = EnvoyDoc::load(cfg_file);
        let svc = read_yaml(svc_file);
        check(
            &mut problems,
            svc["kind"] == "Service" && svc["apiVersion"] == "serving.knative.dev/v1",
            || format!("{svc_file}: not a serving.knative.dev/v1 Service"),
        );
        let (ingress, others) = cloud_run_containers(&svc, svc_file);
        let (_, listen_port) = cfg.listener_addr();
        let container_port = u64_at(&ingress, "/ports/0/containerPort", svc_file);
        check(&mut problems, container_port == listen_port, || {
            format!("{svc_file}: containerPort {container_port} but {cfg_file} listens on {listen_port}")
        });
        check(&mut problems, listen_port == 8080, || {
            format!(
                "{cfg_file}: Cloud Run sends requests to PORT 8080, listener is on {listen_port}"
            )
        });
        let timeout = u64_at(&svc, "/spec/template/spec/timeoutSeconds", svc_file);
        for r in cfg.routes() {
            let t = envoy_duration_secs(r["route"]["timeout"].as_str().unwrap_or("15s"));
            check(&mut problems, t < timeout, || {
                format!("{cfg_file}: route timeout {t}s must be below {svc_file} timeoutSeconds {timeout}")
            });
        }
        let cpu: f64 = ingress
            .pointer("/resources/limits/cpu")
            .and_then(Value::as_str)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{svc_file}: the ingress container needs a cpu limit"));
        check(&mut problems, cpu == concurrency as f64, || {
            format!("{svc_file}: cpu {cpu} but the Dockerfile runs Envoy with --concurrency {concurrency}")
        });
        check(
            &mut problems,
            ingress["startupProbe"]["tcpSocket"]["port"] == listen_port,
            || format!("{svc_file}: the startup probe must ask the listener port {listen_port}"),
        );

        let plugin = cfg.plugin();
        let bcsp = cfg
            .cluster("bcsp")
            .unwrap_or_else(|| panic!("{cfg_file}: no bcsp cluster"));
        let (host, port) = cfg.endpoint(bcsp);
        if others.is_empty() {
            // The proxy: TLS to the private BCSP's *.run.app host, token from the metadata server.
            check(
                &mut problems,
                svc.pointer("/spec/template/spec/serviceAccountName")
                    .is_some(),
                || {
                    format!(
                        "{svc_file}: the proxy needs the service account that holds run.invoker"
                    )
                },
            );
            check(
                &mut problems,
                host.ends_with(".run.app") && port == 443,
                || {
                    format!(
                        "{cfg_file}: bcsp upstream {host}:{port}, expected <service>.run.app:443"
                    )
                },
            );
            check(
                &mut problems,
                matches!(bcsp["type"].as_str(), Some("LOGICAL_DNS" | "STRICT_DNS")),
                || format!("{cfg_file}: the bcsp cluster must resolve its host name (LOGICAL_DNS)"),
            );
            let tls = &bcsp["transport_socket"]["typed_config"];
            check(
                &mut problems,
                tls["@type"] == "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                || format!("{cfg_file}: the bcsp cluster must use TLS"),
            );
            check(&mut problems, tls["sni"] == host.as_str(), || {
                format!(
                    "{cfg_file}: SNI {} differs from the host {host}",
                    tls["sni"]
                )
            });
            let vc = &tls["common_tls_context"]["validation_context"];
            check(
                &mut problems,
                vc["trusted_ca"]["filename"] == IMAGE_CA_BUNDLE,
                || format!("{cfg_file}: trusted_ca must be the image's bundle {IMAGE_CA_BUNDLE}"),
            );
            check(
                &mut problems,
                vc["match_typed_subject_alt_names"][0]["matcher"]["exact"] == host.as_str(),
                || format!("{cfg_file}: the SAN matcher must name {host}"),
            );
            check(
                &mut problems,
                cfg.routes()
                    .iter()
                    .all(|r| r["route"]["auto_host_rewrite"] == true),
                || format!("{cfg_file}: routes need auto_host_rewrite (Cloud Run routes on Host)"),
            );
            let audience = plugin["upstream_token"]["audience"]
                .as_str()
                .unwrap_or_default();
            check(&mut problems, audience == format!("https://{host}"), || {
                format!("{cfg_file}: audience {audience:?} must be the BCSP's URL https://{host}")
            });
            let meta = cfg.cluster("gcp_metadata").map(|c| cfg.endpoint(c));
            check(
                &mut problems,
                meta == Some(("169.254.169.254".to_string(), 80)),
                || format!("{cfg_file}: gcp_metadata must be 169.254.169.254:80, is {meta:?}"),
            );
        } else {
            // The sidecar: the BCSP container of the same instance, on localhost.
            check(&mut problems, ingress["name"] == "envoy", || {
                format!("{svc_file}: the ingress container must be envoy")
            });
            let bcsp_c = others
                .iter()
                .find(|c| c["name"] == "bcsp")
                .unwrap_or_else(|| panic!("{svc_file}: no container named bcsp"));
            let env_port = bcsp_c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == "PORT")
                .and_then(|e| e["value"].as_str())
                .and_then(|v| v.parse::<u64>().ok());
            check(
                &mut problems,
                (host.as_str(), Some(port)) == ("127.0.0.1", env_port),
                || {
                    format!("{cfg_file}: bcsp cluster {host}:{port}, but the bcsp container's PORT is {env_port:?}")
                },
            );
            check(
                &mut problems,
                bcsp_c["startupProbe"]["tcpSocket"]["port"] == port,
                || format!("{svc_file}: the bcsp startup probe must ask port {port}"),
            );
            let deps: Value = svc
                .pointer("/spec/template/metadata/annotations/run.googleapis.com~1container-dependencies")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            check(&mut problems, deps == json!({"envoy": ["bcsp"]}), || {
                format!("{svc_file}: container-dependencies must start envoy after bcsp, is {deps}")
            });
            check(&mut problems, cfg.cluster("gcp_metadata").is_none(), || {
                format!("{cfg_file}: the sidecar needs no metadata cluster")
            });
        }
    }

    // The image recipe copies the module and the config where both configs expect them.
    let image = format!("FROM envoyproxy/envoy:v{}", pinned_envoy_version());
    check(
        &mut problems,
        dockerfile.lines().any(|l| l.trim() == image),
        || format!("deploy/cloud-run/Dockerfile must start {image}"),
    );
    let copies: Vec<(String, String)> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w[w.len() - 1].to_string())
        })
        .collect();
    let config_default = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG CONFIG="))
        .expect("deploy/cloud-run/Dockerfile: ARG CONFIG=<default>");
    check(
        &mut problems,
        config_default == "deploy/cloud-run/envoy.yaml",
        || format!("ARG CONFIG default {config_default}"),
    );
    let c_path = cmd.windows(2).find(|w| w[0] == "-c").map(|w| w[1].clone());
    for (cfg_file, _) in rows {
        let wasm = EnvoyDoc::load(cfg_file).wasm_filename();
        check(
            &mut problems,
            copies.contains(&("dist/bcsp_guard.wasm".to_string(), wasm.clone())),
            || format!("Dockerfile does not COPY dist/bcsp_guard.wasm to {wasm} ({cfg_file})"),
        );
    }
    check(
        &mut problems,
        copies
            .iter()
            .any(|(s, d)| s == "${CONFIG}" && Some(d) == c_path.as_ref()),
        || format!("Dockerfile must COPY ${{CONFIG}} to the path CMD passes to -c ({c_path:?})"),
    );
    let cloudbuild = read_yaml("deploy/cloud-run/cloudbuild.yaml");
    check(
        &mut problems,
        cloudbuild["steps"][0]["args"]
            .to_string()
            .contains("deploy/cloud-run/Dockerfile"),
        || "cloudbuild.yaml must build deploy/cloud-run/Dockerfile".to_string(),
    );
    let ignore = read_repo_file("deploy/cloud-run/gcloudignore");
    for keep in ["!/dist/", "!/deploy/"] {
        check(
            &mut problems,
            ignore.lines().any(|l| l.trim() == keep),
            || format!("gcloudignore must keep {keep} (the Dockerfile copies from there)"),
        );
    }
    assert_no_problems("Cloud Run", problems);
}

#[test]
fn cloud_run_recipes_keep_existing_services_and_avoid_all_users() {
    let mut problems = Vec::new();
    for svc in [
        "deploy/cloud-run/service.yaml",
        "deploy/cloud-run/sidecar/service.yaml",
    ] {
        let v = read_yaml(svc);
        let a = &v["metadata"]["annotations"]["run.googleapis.com/invoker-iam-disabled"];
        check(&mut problems, *a == json!("true"), || {
            format!("{svc}: metadata.annotations run.googleapis.com/invoker-iam-disabled must be \"true\" (works under Domain Restricted Sharing), is {a}")
        });
    }
    let rel = "deploy/cloud-run/README.md";
    let cmds = shell_commands(rel, &read_repo_file(rel));
    let mut exported: Vec<String> = Vec::new();
    let mut may_act_as = false;
    let mut replaces = 0;
    for cmd in &cmds {
        if cmd.contains("gcloud run services describe") && cmd.contains("--format export") {
            if let Some(file) = cmd.split('>').nth(1) {
                exported.push(file.trim().to_string());
            }
        }
        if cmd.contains("roles/iam.serviceAccountUser") {
            may_act_as = true;
        }
        if cmd.contains("gcloud run deploy") && cmd.contains("--service-account") {
            check(&mut problems, may_act_as, || {
                format!("{rel}: `{cmd}` deploys as a service account before granting roles/iam.serviceAccountUser on it")
            });
        }
        if let Some(rest) = cmd.split("gcloud run services replace ").nth(1) {
            replaces += 1;
            let file = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            // The shipped proxy manifest creates a new service; anything else replaces an
            // existing one and must come from its export.
            check(
                &mut problems,
                file == "deploy/cloud-run/service.yaml" || exported.contains(&file),
                || {
                    format!(
                        "{rel}: `{cmd}` replaces a service from a file not exported from it first"
                    )
                },
            );
        }
    }
    check(&mut problems, replaces >= 1, || {
        format!("{rel}: no `gcloud run services replace` found")
    });
    assert_no_problems("Cloud Run recipes", problems);
}
