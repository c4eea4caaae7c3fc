//! `make release` (deploy/release.sh): the module stays under its size ceiling, its checksum
//! file is `sha256sum`'s, and the OCI image layout is verified blob by blob and reproducible.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{
    assert_no_problems, check, last_lines, repo_root, run_bounded, sha256_hex_of_bytes, RunOutput,
};
use crate::harness::{envoy_binary, wasm_path, TempDir};

/// Ceiling on the release module: well under the 2 MiB Service Extensions allows for module plus
/// configuration.
const WASM_CEILING: u64 = 1024 * 1024;

fn run_release(dist: &Path, wasm_in: &Path, extra: &[(&str, &str)]) -> RunOutput {
    let mut cmd = Command::new(repo_root().join("deploy/release.sh"));
    cmd.env("DIST", dist)
        .env("WASM_IN", wasm_in)
        .env("VERSION", "test-1")
        .env("ENVOY", envoy_binary());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    run_bounded(cmd, Duration::from_secs(300), "deploy/release.sh")
}

/// `tar`/`gzip` on a layer blob; returns stdout bytes.
fn stdout_bytes_of(args: &[&str], input: &Path) -> Vec<u8> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .arg(input)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn release_script_builds_a_valid_module_and_oci_layout() {
    let input = wasm_path();
    let input_len = std::fs::metadata(&input).expect("module").len();
    assert!(
        input_len < WASM_CEILING,
        "release module is {input_len} bytes, over the {WASM_CEILING}-byte ceiling"
    );
    let dir = TempDir::new("release");
    let dist = dir.path().join("dist");
    let ran = run_release(&dist, &input, &[]);
    assert!(
        ran.ok(),
        "deploy/release.sh failed:\n{}",
        last_lines(&ran.stdout_and_stderr(), 30)
    );
    // ENVOY was set: the script loaded its own output in Envoy.
    assert!(
        ran.stdout.contains("envoy --mode validate:  OK"),
        "release.sh did not validate its module:\n{}",
        ran.stdout
    );

    let mut problems = Vec::new();
    let wasm = std::fs::read(dist.join("bcsp_guard.wasm")).expect("dist/bcsp_guard.wasm");
    check(&mut problems, wasm.starts_with(b"\0asm"), || {
        "dist module is not Wasm".into()
    });
    check(&mut problems, (wasm.len() as u64) < WASM_CEILING, || {
        format!("dist module is {} bytes, over the ceiling", wasm.len())
    });
    check(&mut problems, wasm.len() as u64 <= input_len, || {
        format!(
            "dist module ({}) is larger than the cargo build ({input_len})",
            wasm.len()
        )
    });
    let sha_file =
        std::fs::read_to_string(dist.join("bcsp_guard.wasm.sha256")).expect("sha256 file");
    check(
        &mut problems,
        sha_file == format!("{}  bcsp_guard.wasm\n", sha256_hex_of_bytes(&wasm)),
        || format!("bcsp_guard.wasm.sha256 is {sha_file:?}, not `sha256sum` of the module"),
    );

    // OCI image layout.
    let oci = dist.join("oci");
    let blob = |d: &str| {
        oci.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let layout: Value =
        serde_json::from_slice(&std::fs::read(oci.join("oci-layout")).expect("oci-layout"))
            .expect("json");
    check(
        &mut problems,
        layout == json!({"imageLayoutVersion": "1.0.0"}),
        || format!("oci-layout is {layout}"),
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).expect("index.json"))
            .expect("json");
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        manifests.len(),
        1,
        "index.json must list one image: {index}"
    );
    let m_desc = &manifests[0];
    check(
        &mut problems,
        m_desc["annotations"]["org.opencontainers.image.ref.name"] == "test-1",
        || format!("index.json does not tag the image with VERSION: {m_desc}"),
    );
    let mut referenced = BTreeSet::new();
    // Every descriptor: the blob exists, its SHA-256 is its name, its size matches.
    let mut verify = |desc: &Value, what: &str, problems: &mut Vec<String>| -> Vec<u8> {
        let digest = desc["digest"].as_str().unwrap_or_default().to_string();
        let bytes = std::fs::read(blob(&digest)).unwrap_or_default();
        check(
            problems,
            digest == format!("sha256:{}", sha256_hex_of_bytes(&bytes)),
            || format!("{what}: blob {digest} missing or its content has another digest"),
        );
        check(
            problems,
            desc["size"].as_u64() == Some(bytes.len() as u64),
            || {
                format!(
                    "{what}: size {} but the blob has {} bytes",
                    desc["size"],
                    bytes.len()
                )
            },
        );
        referenced.insert(digest.trim_start_matches("sha256:").to_string());
        bytes
    };
    let m_bytes = verify(m_desc, "manifest", &mut problems);
    let manifest: Value = serde_json::from_slice(&m_bytes).expect("manifest JSON");
    check(
        &mut problems,
        manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json",
        || format!("manifest mediaType {}", manifest["mediaType"]),
    );
    check(
        &mut problems,
        manifest["annotations"]["module.wasm.image/variant"] == "compat",
        || "manifest lacks the annotation module.wasm.image/variant: compat".into(),
    );
    let c_bytes = verify(&manifest["config"], "config", &mut problems);
    let config: Value = serde_json::from_slice(&c_bytes).expect("config JSON");
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        layers.len(),
        1,
        "the compat variant has exactly one layer: {manifest}"
    );
    check(
        &mut problems,
        layers[0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip",
        || {
            format!(
                "layer mediaType {} (Istio reads tar+gzip)",
                layers[0]["mediaType"]
            )
        },
    );
    verify(&layers[0], "layer", &mut problems);
    let layer_path = blob(layers[0]["digest"].as_str().unwrap_or_default());
    // gzip header: no file name, no timestamp (gzip -n), or the digest changes with the clock.
    let gz = std::fs::read(&layer_path).unwrap_or_default();
    check(
        &mut problems,
        gz.len() > 10 && gz[..3] == [0x1f, 0x8b, 8] && gz[3] & 0x08 == 0 && gz[4..8] == [0; 4],
        || "the layer's gzip header carries a file name or a timestamp (use gzip -n)".into(),
    );
    let tar_bytes = stdout_bytes_of(&["gzip", "-dc"], &layer_path);
    check(
        &mut problems,
        config["rootfs"]["diff_ids"]
            == json!([format!("sha256:{}", sha256_hex_of_bytes(&tar_bytes))]),
        || {
            format!(
                "config diff_ids {} are not the uncompressed layer's digest",
                config["rootfs"]["diff_ids"]
            )
        },
    );
    let listing = String::from_utf8(stdout_bytes_of(&["tar", "-tzf"], &layer_path)).expect("utf8");
    check(
        &mut problems,
        listing.lines().collect::<Vec<_>>() == ["plugin.wasm"],
        || format!("the layer must hold plugin.wasm alone, holds {listing:?}"),
    );
    let in_layer = stdout_bytes_of(&["tar", "-xzOf"], &layer_path);
    check(&mut problems, in_layer == wasm, || {
        "plugin.wasm in the layer differs from dist/bcsp_guard.wasm".into()
    });
    let on_disk: BTreeSet<String> = std::fs::read_dir(oci.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    check(&mut problems, on_disk == referenced, || {
        format!("blobs on disk {on_disk:?} vs referenced {referenced:?}")
    });
    let digest_file =
        std::fs::read_to_string(dist.join("bcsp_guard.oci-digest")).expect("oci-digest");
    let m_digest = m_desc["digest"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("sha256:");
    check(&mut problems, digest_file.trim() == m_digest, || {
        format!("bcsp_guard.oci-digest {digest_file:?} is not the manifest digest {m_digest}")
    });

    // Reproducible: packaging the same module again, a second later, gives the same digest.
    std::thread::sleep(Duration::from_millis(1100));
    let dist2 = dir.path().join("dist2");
    let again = run_release(
        &dist2,
        &dist.join("bcsp_guard.wasm"),
        &[("WASM_OPT", "none")],
    );
    assert!(
        again.ok(),
        "second release.sh run failed:\n{}",
        last_lines(&again.stdout_and_stderr(), 20)
    );
    let digest2 = std::fs::read_to_string(dist2.join("bcsp_guard.oci-digest")).unwrap_or_default();
    check(&mut problems, digest2 == digest_file, || {
        format!("the same module gave another manifest digest: {digest_file:?} vs {digest2:?}")
    });

    // A registry tool reads the layout and keeps the digest (when one is installed).
    if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:test-1", oci.display()))
            .output()
            .expect("skopeo");
        check(
            &mut problems,
            out.status.success() && out.stdout == m_bytes,
            || {
                format!(
                    "skopeo does not read the layout back: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            },
        );
    } else {
        eprintln!("skopeo not installed: layout checked by this test alone");
    }
    assert_no_problems("make release", problems);
}
