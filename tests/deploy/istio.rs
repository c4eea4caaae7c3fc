//! Istio (deploy/istio/): the WasmPlugin is fail-closed, pinned by digest and carries a config
//! bcsp-guard accepts; its token cluster is the one Istio builds from the ServiceEntry; the
//! module is pulled with a placeholder secret; the README matches Istio 1.22.

use serde_json::{json, Value};

use crate::common::{
    assert_no_problems, check, files_under_deploy, read_repo_file, read_yaml, str_at, u64_at,
    ROOT_ID,
};

/// A SHA-256 digest written as 64 hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn istio_wasmplugin_config_is_accepted_and_wired() {
    let file = "deploy/istio/wasmplugin.yaml";
    let wp = read_yaml(file);
    let se = read_yaml("deploy/istio/serviceentry.yaml");
    let dr = read_yaml("deploy/istio/destinationrule.yaml");
    let mut problems = Vec::new();
    let expect = [
        ("/apiVersion", json!("extensions.istio.io/v1alpha1")),
        ("/kind", json!("WasmPlugin")),
        ("/spec/phase", json!("AUTHN")),
        ("/spec/failStrategy", json!("FAIL_CLOSE")),
        ("/spec/type", json!("HTTP")),
        ("/spec/pluginName", json!(ROOT_ID)),
        ("/spec/match/0/mode", json!("SERVER")),
    ];
    for (ptr, want) in expect {
        let got = wp.pointer(ptr).cloned().unwrap_or(Value::Null);
        check(&mut problems, got == want, || {
            format!("{file}: {ptr} is {got}, expected {want}")
        });
    }
    let url = str_at(&wp, "/spec/url", file);
    check(&mut problems, url.starts_with("oci://"), || {
        format!("{file}: url {url} must be an oci:// image")
    });
    let sha = str_at(&wp, "/spec/sha256", file);
    check(&mut problems, is_sha256_hex(sha), || {
        format!("{file}: sha256 must be 64 hex digits (the manifest digest), is {sha:?}")
    });
    check(
        &mut problems,
        wp.pointer("/spec/selector/matchLabels").is_some(),
        || format!("{file}: without a selector the plugin applies to every workload"),
    );

    // The plugin configuration, as Istio hands it to the plugin: JSON.
    let plugin = wp
        .pointer("/spec/pluginConfig")
        .cloned()
        .unwrap_or_else(|| panic!("{file}: no pluginConfig"));
    if let Err(e) = bcsp_guard::config::compile(plugin.to_string().as_bytes()) {
        problems.push(format!("{file}: pluginConfig refused by bcsp-guard: {e}"));
    }

    // upstream_token's cluster is the one Istio builds from the ServiceEntry.
    let host = str_at(&se, "/spec/hosts/0", "serviceentry.yaml");
    let port = u64_at(&se, "/spec/ports/0/number", "serviceentry.yaml");
    let istio_cluster = format!("outbound|{port}||{host}");
    let named = plugin["upstream_token"]["cluster"].as_str().unwrap_or("");
    check(&mut problems, named == istio_cluster, || {
        format!("{file}: upstream_token.cluster {named:?}, Istio's cluster is {istio_cluster:?}")
    });
    let se_expect = [
        ("/kind", json!("ServiceEntry")),
        ("/spec/hosts/0", json!("metadata.google.internal")),
        ("/spec/endpoints/0/address", json!("169.254.169.254")),
        ("/spec/ports/0/number", json!(80)),
        ("/spec/ports/0/protocol", json!("HTTP")),
        ("/spec/location", json!("MESH_EXTERNAL")),
        ("/spec/resolution", json!("STATIC")),
    ];
    for (ptr, want) in se_expect {
        let got = se.pointer(ptr).cloned().unwrap_or(Value::Null);
        check(&mut problems, got == want, || {
            format!("serviceentry.yaml: {ptr} is {got}, expected {want}")
        });
    }
    check(&mut problems, dr["spec"]["host"] == host, || {
        format!(
            "destinationrule.yaml: host {} is not the ServiceEntry's {host}",
            dr["spec"]["host"]
        )
    });
    check(
        &mut problems,
        dr["spec"]["trafficPolicy"]["tls"]["mode"] == "DISABLE",
        || {
            "destinationrule.yaml: the metadata server speaks plain HTTP: tls.mode DISABLE"
                .to_string()
        },
    );
    let ns = &wp["metadata"]["namespace"];
    check(
        &mut problems,
        se["metadata"]["namespace"] == *ns && dr["metadata"]["namespace"] == *ns,
        || {
            format!("the ServiceEntry and DestinationRule must live in the plugin's namespace {ns} (exportTo \".\")")
        },
    );
    assert_no_problems("Istio", problems);
}

#[test]
fn istio_plugin_pulls_with_a_secret_on_istio_1_22() {
    let mut problems = Vec::new();
    let wp = read_yaml("deploy/istio/wasmplugin.yaml");
    let secret = read_yaml("deploy/istio/pull-secret.yaml");
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
        let v = read_yaml(f);
        check(
            &mut problems,
            v["apiVersion"] == "networking.istio.io/v1",
            || {
                format!("{f}: apiVersion {}, the README's Istio 1.22 note is about networking.istio.io/v1", v["apiVersion"])
            },
        );
    }
    let readme = read_repo_file("deploy/istio/README.md");
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
        let text = read_repo_file(f);
        check(&mut problems, !text.contains("proxyStatsMatcher"), || {
            format!("{f}: Istio keeps wasm* stats by default; no proxyStatsMatcher needed")
        });
        check(
            &mut problems,
            !text.contains("node's service account needs"),
            || format!("{f}: the agent in the pod pulls the module, not the node"),
        );
    }
    assert_no_problems("Istio pull and release", problems);
}
