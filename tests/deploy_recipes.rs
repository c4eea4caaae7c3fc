//! Facts about the deployment recipes that the platforms' documentation fixes and that a file
//! check can hold on to: registry login and target platform before every image push, the Wasm
//! flag that lets bcsp-guard hold webhook deliveries, admin off TCP in the Cloud Run sidecar,
//! underscore headers refused, Cloud Armor rules of at most ten ranges that lose none, Istio's
//! pull secret and release, Cloud Run's replace-from-export and public-without-allUsers.
//! tests/deploy.rs holds the older checks (manifests cross-checked, `envoy --mode validate`).

mod deploy_common;
mod harness;

use std::path::Path;
use std::process::{Command, Stdio};

use deploy_common::{
    check, commands, envoy_configs, files_under_deploy, hcms, read, report, root, yaml, yaml_text,
};
use harness::{envoy_binary, wasm_path, TempDir};
use serde_json::{json, Value};

const PUSHES: &[&str] = &[
    "docker push",
    "crane push",
    "oras cp",
    "oras push",
    "skopeo copy",
];

/// What is wrong with the image pushes and builds of one document; and how many pushes it has.
fn push_problems(name: &str, text: &str) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut logged_in = false;
    let mut pushes = 0;
    let mut unplatformed = Vec::new();
    for cmd in commands(name, text) {
        if cmd.contains("gcloud auth configure-docker") {
            let host = cmd
                .split_whitespace()
                .skip_while(|w| *w != "configure-docker")
                .nth(1)
                .unwrap_or_default()
                .trim_matches('"');
            check(&mut problems, host.ends_with("-docker.pkg.dev"), || {
                format!(
                    "{name}: `{cmd}` must name the Artifact Registry host <region>-docker.pkg.dev"
                )
            });
            logged_in = true;
        }
        if PUSHES.iter().any(|p| cmd.contains(p)) {
            pushes += 1;
            check(&mut problems, logged_in, || {
                format!("{name}: `{cmd}` pushes before `gcloud auth configure-docker <region>-docker.pkg.dev`")
            });
        }
        if (cmd.contains("docker build") || cmd.contains("docker buildx build"))
            && !cmd.contains("--platform linux/amd64")
        {
            unplatformed.push(format!(
                "{name}: `{cmd}` must build for --platform linux/amd64 (Cloud Run's)"
            ));
        }
    }
    // Local-only images (compose) may stay native; an image that is pushed, or built for Cloud
    // Run, must be amd64.
    if pushes > 0 || name.starts_with("deploy/cloud-run/") {
        problems.extend(unplatformed);
    }
    (problems, pushes)
}

// ---------------------------------------------------------------------------------------------
// Image pushes
// ---------------------------------------------------------------------------------------------

#[test]
fn every_image_push_logs_in_first_and_names_the_platform() {
    let mut problems = Vec::new();
    let mut pushes = 0;
    let mut docs = files_under_deploy(&[".md", "Dockerfile"]);
    docs.push("README.md".to_string());
    for f in &docs {
        let (p, n) = push_problems(f, &read(f));
        problems.extend(p);
        pushes += n;
    }
    // Cloud Run (proxy and sidecar) pushes with docker; Istio and Service Extensions with crane.
    check(&mut problems, pushes >= 4, || {
        format!("found only {pushes} image pushes in {docs:?}: is the scan still reading them?")
    });
    let cloudbuild = yaml("deploy/cloud-run/cloudbuild.yaml");
    let args = cloudbuild["steps"][0]["args"].to_string();
    check(
        &mut problems,
        args.contains(r#""--platform","linux/amd64""#),
        || {
            format!(
                "cloudbuild.yaml: the docker build must name --platform linux/amd64, args {args}"
            )
        },
    );
    report("image pushes", problems);

    // The scan is not vacuous: a push without a login and a build without a platform are caught.
    let bad = "```sh\ndocker build -f x -t \"$IMAGE\" .\ndocker push \"$IMAGE\"\n```\n";
    let (p, n) = push_problems("bad.md", bad);
    assert_eq!(
        (p.len(), n),
        (2, 1),
        "the scan missed a broken recipe: {p:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks: the Wasm flag, no buffer filter
// ---------------------------------------------------------------------------------------------

/// Problems of one Envoy bootstrap: a `webhooks` plugin without allow_on_headers_stop_iteration,
/// or a buffer filter (bcsp-guard holds deliveries itself; a buffer filter only hides a missing
/// flag).
fn webhook_problems(name: &str, v: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (listener, hcm) in hcms(v) {
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

/// `envoy --mode validate` on a config text, the module path pointed at the built module.
fn envoy_validate(name: &str, text: &str) -> (bool, String) {
    let dir = TempDir::new("recipes-validate");
    let cfg = dir.path().join("envoy.yaml");
    let edited = text.replace(
        "filename: /etc/envoy/bcsp_guard.wasm ",
        &format!("filename: {} ", wasm_path().display()),
    );
    assert_ne!(edited, text, "{name}: module path not found");
    std::fs::write(&cfg, edited).expect("write config");
    let out = Command::new(envoy_binary())
        .args(["--mode", "validate", "-l", "warning", "-c"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run envoy --mode validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn webhook_configs_set_the_wasm_flag_and_have_no_buffer_filter() {
    let mut problems = Vec::new();
    let configs = envoy_configs();
    assert!(
        configs.len() >= 3,
        "Envoy configs under deploy/: {configs:?}"
    );
    for f in &configs {
        problems.extend(webhook_problems(f, &yaml(f)));
    }
    // Hosts that cannot set the flag carry no webhooks.
    let wp = yaml("deploy/istio/wasmplugin.yaml");
    check(
        &mut problems,
        wp["spec"]["pluginConfig"].get("webhooks").is_none(),
        || {
            "deploy/istio/wasmplugin.yaml: WasmPlugin cannot set allow_on_headers_stop_iteration: no webhooks".into()
        },
    );
    let se: Value = serde_json::from_str(&read("deploy/service-extensions/plugin-config.json"))
        .expect("plugin-config.json is JSON");
    check(&mut problems, se.get("webhooks").is_none(), || {
        "plugin-config.json: Service Extensions does not document honouring the pause: no webhooks"
            .into()
    });
    report("webhook configs", problems);
}

/// The rule bites, and the flag it asks for is one this Envoy accepts in a shipped config.
#[test]
fn webhook_rule_catches_a_missing_flag_and_the_flag_validates() {
    let rel = "deploy/compose/envoy.yaml";
    let shipped = read(rel);
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

    let missing = webhook_problems("no flag", &yaml_text("no flag", &with_webhooks));
    assert_eq!(
        missing.len(),
        1,
        "a webhook config without the flag: {missing:?}"
    );
    assert!(webhook_problems("flag", &yaml_text("flag", &flagged)).is_empty());
    let buffered = flagged.replace(
        "          - name: envoy.filters.http.router\n",
        "          - name: envoy.filters.http.buffer\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n              max_request_bytes: 1048576\n          - name: envoy.filters.http.router\n",
    );
    assert_ne!(buffered, flagged, "{rel}: buffer mutation did not apply");
    assert_eq!(
        webhook_problems("buffer", &yaml_text("buffer", &buffered)).len(),
        1
    );

    let (ok, out) = envoy_validate(rel, &flagged);
    assert!(
        ok,
        "{rel} with webhooks and the flag fails validation:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Envoy settings every deploy config shares
// ---------------------------------------------------------------------------------------------

#[test]
fn deploy_envoy_configs_refuse_underscore_headers() {
    let mut problems = Vec::new();
    for f in envoy_configs() {
        let v = yaml(&f);
        for (listener, hcm) in hcms(&v) {
            let action = &hcm["common_http_protocol_options"]["headers_with_underscores_action"];
            check(&mut problems, action == "REJECT_REQUEST", || {
                format!("{f} ({listener}): headers_with_underscores_action is {action}, expected REJECT_REQUEST")
            });
        }
    }
    report("underscore headers", problems);
}

#[test]
fn cloud_run_sidecar_admin_is_not_on_a_tcp_port() {
    let rel = "deploy/cloud-run/sidecar/envoy.yaml";
    let v = yaml(rel);
    let admin = &v["admin"]["address"];
    let mut problems = Vec::new();
    check(&mut problems, admin.get("socket_address").is_none(), || {
        format!("{rel}: admin on a TCP address {admin}: the BCSP container shares localhost")
    });
    let path = admin["pipe"]["path"].as_str().unwrap_or_default();
    check(&mut problems, path.starts_with("/tmp/"), || {
        format!("{rel}: admin must be a unix socket in Envoy's own /tmp, is {admin}")
    });
    // A volume mounted into both containers at the socket's directory would share it again.
    let svc = yaml("deploy/cloud-run/sidecar/service.yaml");
    let dir = Path::new(path).parent().map(|d| d.display().to_string());
    for c in svc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
            let at = m["mountPath"].as_str().map(str::to_string);
            check(&mut problems, at != dir, || {
                format!("sidecar/service.yaml: container {} mounts a volume over the admin socket's directory", c["name"])
            });
        }
    }
    report("Cloud Run sidecar admin", problems);
}

// ---------------------------------------------------------------------------------------------
// Cloud Run manifests and README
// ---------------------------------------------------------------------------------------------

#[test]
fn cloud_run_recipes_keep_existing_services_and_avoid_all_users() {
    let mut problems = Vec::new();
    for svc in [
        "deploy/cloud-run/service.yaml",
        "deploy/cloud-run/sidecar/service.yaml",
    ] {
        let v = yaml(svc);
        let a = &v["metadata"]["annotations"]["run.googleapis.com/invoker-iam-disabled"];
        check(&mut problems, *a == json!("true"), || {
            format!("{svc}: metadata.annotations run.googleapis.com/invoker-iam-disabled must be \"true\" (works under Domain Restricted Sharing), is {a}")
        });
    }
    let rel = "deploy/cloud-run/README.md";
    let cmds = commands(rel, &read(rel));
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
    report("Cloud Run recipes", problems);
}

// ---------------------------------------------------------------------------------------------
// Istio
// ---------------------------------------------------------------------------------------------

#[test]
fn istio_plugin_pulls_with_a_secret_on_istio_1_22() {
    let mut problems = Vec::new();
    let wp = yaml("deploy/istio/wasmplugin.yaml");
    let secret = yaml("deploy/istio/pull-secret.yaml");
    let name = wp["spec"]["imagePullSecret"].as_str().unwrap_or_default();
    check(
        &mut problems,
        !name.is_empty() && secret["metadata"]["name"] == name,
        || {
            format!(
                "wasmplugin imagePullSecret {name:?} must name the Secret in pull-secret.yaml ({})",
                secret["metadata"]["name"]
            )
        },
    );
    check(
        &mut problems,
        secret["metadata"]["namespace"] == wp["metadata"]["namespace"],
        || "pull-secret.yaml must live in the WasmPlugin's namespace".into(),
    );
    check(
        &mut problems,
        secret["type"] == "kubernetes.io/dockerconfigjson",
        || {
            format!(
                "pull-secret.yaml: type {}, expected kubernetes.io/dockerconfigjson",
                secret["type"]
            )
        },
    );
    // The template commits no credential: its config decodes to an empty auths map.
    let data = secret["data"][".dockerconfigjson"]
        .as_str()
        .unwrap_or_default();
    let decoded =
        bcsp_guard::base64::decode(data.as_bytes(), bcsp_guard::base64::Alphabet::Standard)
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    check(&mut problems, decoded == Some(json!({"auths": {}})), || {
        format!("pull-secret.yaml: .dockerconfigjson must be the empty placeholder, decodes to {decoded:?}")
    });
    for f in [
        "deploy/istio/serviceentry.yaml",
        "deploy/istio/destinationrule.yaml",
    ] {
        let v = yaml(f);
        check(
            &mut problems,
            v["apiVersion"] == "networking.istio.io/v1",
            || {
                format!("{f}: apiVersion {}, the README's Istio 1.22 note is about networking.istio.io/v1", v["apiVersion"])
            },
        );
    }
    let readme = read("deploy/istio/README.md");
    check(&mut problems, readme.contains("1.22"), || {
        "istio README must name Istio 1.22".into()
    });
    check(
        &mut problems,
        readme.contains("iam.gke.io/gcp-service-account")
            && readme.contains("roles/iam.workloadIdentityUser")
            && readme.contains(".svc.id.goog[bcsp/"),
        || "istio README must show the KSA annotation and the workloadIdentityUser binding".into(),
    );
    for f in files_under_deploy(&[".md", ".yaml"])
        .iter()
        .filter(|f| f.starts_with("deploy/istio/"))
    {
        let text = read(f);
        check(&mut problems, !text.contains("proxyStatsMatcher"), || {
            format!("{f}: Istio keeps wasm* stats by default; no proxyStatsMatcher needed")
        });
        check(
            &mut problems,
            !text.contains("node's service account needs"),
            || format!("{f}: the agent in the pod pulls the module, not the node"),
        );
    }
    report("Istio pull and release", problems);
}

// ---------------------------------------------------------------------------------------------
// Service Extensions: Cloud Armor from Genesys's ranges
// ---------------------------------------------------------------------------------------------

fn ipranges(reply: &Path, format: &str) -> Vec<String> {
    let out = Command::new("python3")
        .arg(root().join("deploy/genesys-ipranges.py"))
        .args(["--file"])
        .arg(reply)
        .args(["--format", format])
        .stdin(Stdio::null())
        .output()
        .expect("run genesys-ipranges.py");
    assert!(
        out.status.success(),
        "genesys-ipranges.py --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn cloud_armor_rules_hold_at_most_ten_ranges_and_lose_none() {
    let dir = TempDir::new("armor");
    let mut problems = Vec::new();
    for count in [1usize, 10, 11, 23] {
        let entities: Vec<Value> = (0..count)
            .map(|i| {
                let cidr = if i % 5 == 4 {
                    format!("2600:1f18:{i:x}::/48")
                } else {
                    format!("34.{i}.0.0/16")
                };
                json!({"cidr": cidr, "service": "bot-connector", "region": "r"})
            })
            .collect();
        let reply = dir.path().join(format!("r{count}.json"));
        std::fs::write(&reply, json!({"entities": entities}).to_string()).expect("write reply");
        let all = ipranges(&reply, "lines");
        let rules = ipranges(&reply, "cloud-armor");
        check(&mut problems, rules.len() == count.div_ceil(10), || {
            format!(
                "{count} ranges: {} rules, expected {}",
                rules.len(),
                count.div_ceil(10)
            )
        });
        let mut covered: Vec<String> = Vec::new();
        for r in &rules {
            let parts: Vec<String> = r.split(',').map(str::to_string).collect();
            check(&mut problems, parts.len() <= 10, || {
                format!("a rule with {} ranges: {r}", parts.len())
            });
            covered.extend(parts);
        }
        check(&mut problems, covered == all, || {
            format!("{count} ranges: rules hold {covered:?}, the list is {all:?}")
        });
    }
    let readme = read("deploy/service-extensions/README.md");
    let cmds = commands("deploy/service-extensions/README.md", &readme);
    check(
        &mut problems,
        cmds.iter().any(|c| c.contains("--format cloud-armor")),
        || "service-extensions README must feed Cloud Armor from --format cloud-armor".into(),
    );
    check(
        &mut problems,
        !cmds
            .iter()
            .any(|c| c.contains("src-ip-ranges") && c.contains("head")),
        || "service-extensions README cuts the range list with head".into(),
    );
    check(
        &mut problems,
        readme.contains("internal-and-cloud-load-balancing")
            && readme.contains("forwardingRules")
            && readme.contains("gcloud beta service-extensions"),
        || {
            "service-extensions README must state the ingress and forwarding-rule exposure and the gcloud release".into()
        },
    );
    report("Cloud Armor rules", problems);
}
