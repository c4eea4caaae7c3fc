//! The docker compose stack (docker-compose.yml, deploy/compose/): services, mounts, published
//! ports and health checks agree with deploy/compose/envoy.yaml, and the Dockerfile's build stage
//! copies everything cargo needs to build the two upstream binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    array_at, assert_no_problems, check, is_loopback, last_lines, read_repo_file, read_yaml,
    repo_root, run_bounded, str_at, AdminAddress, EnvoyDoc,
};
use crate::harness::{pinned_envoy_version, wasm_path, TempDir};

/// One upstream service of the compose stack and the Envoy cluster that reaches it.
struct ComposeUpstream {
    service: &'static str,
    /// Cargo package and the binary it builds.
    package: &'static str,
    binary: &'static str,
    port: u64,
    cluster: &'static str,
}

const COMPOSE_UPSTREAMS: &[ComposeUpstream] = &[
    ComposeUpstream {
        service: "sample-bcsp",
        package: "sample-bcsp",
        binary: "sample-bcsp",
        port: 8080,
        cluster: "bcsp",
    },
    ComposeUpstream {
        service: "metadata-server",
        package: "metadata-emulator",
        binary: "metadata-emulator",
        port: 8081,
        cluster: "gcp_metadata",
    },
];

/// `FROM … AS name` stages of a Dockerfile, each with its instruction lines.
pub(crate) fn dockerfile_stages(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut stages = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("AS") => name.to_string(),
                _ => format!("#{}", stages.len()),
            };
            stages.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if let Some(c) = &current {
            stages.get_mut(c).expect("stage").push(line.to_string());
        }
    }
    stages
}

/// `HOST_IP:HOST_PORT:CONTAINER_PORT` → (host ip, container port).
fn parse_published_port(port: &str) -> (String, u64) {
    let parts: Vec<&str> = port.split(':').collect();
    match parts.as_slice() {
        [ip, _, c] => (ip.to_string(), c.parse().expect("container port")),
        _ => panic!(
            "docker-compose.yml: publish ports as HOST_IP:HOST_PORT:CONTAINER_PORT, got {port:?}"
        ),
    }
}

#[test]
fn docker_compose_matches_its_envoy_config() {
    let file = "docker-compose.yml";
    let compose = read_yaml(file);
    let envoy_cfg = EnvoyDoc::load("deploy/compose/envoy.yaml");
    let services = compose["services"]
        .as_object()
        .expect("docker-compose.yml: no services");
    let mut problems = Vec::new();

    let expected: BTreeSet<&str> = COMPOSE_UPSTREAMS
        .iter()
        .map(|u| u.service)
        .chain(["envoy", "envoy-dynamic-module"])
        .collect();
    let actual: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    check(&mut problems, actual == expected, || {
        format!("services {actual:?}, expected {expected:?}")
    });

    // ---- envoy
    let envoy = &compose["services"]["envoy"];
    let image = format!("envoyproxy/envoy:v{}", pinned_envoy_version());
    check(&mut problems, envoy["image"] == image.as_str(), || {
        format!(
            "envoy image {}, expected {image} (Makefile ENVOY_VERSION)",
            envoy["image"]
        )
    });
    let command: Vec<&str> = array_at(envoy, "/command", file)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_in_container = command
        .windows(2)
        .find(|w| w[0] == "-c" || w[0] == "--config-path")
        .map(|w| w[1])
        .unwrap_or_else(|| panic!("envoy command has no -c: {command:?}"));
    let mut mounts = BTreeMap::new();
    for v in array_at(envoy, "/volumes", file) {
        let src = str_at(v, "/source", file);
        let dst = str_at(v, "/target", file);
        check(&mut problems, v["type"] == "bind", || {
            format!("volume {dst}: type must be bind")
        });
        check(&mut problems, v["read_only"] == true, || {
            format!("volume {dst}: must be read_only")
        });
        check(
            &mut problems,
            v["bind"]["create_host_path"] == false,
            || {
                format!("volume {dst}: set bind.create_host_path: false (a missing file must be an error)")
            },
        );
        check(&mut problems, repo_root().join(src).exists(), || {
            format!("volume {dst}: source {src} does not exist (for the module: `make wasm`)")
        });
        mounts.insert(dst.to_string(), src.trim_start_matches("./").to_string());
    }
    check(
        &mut problems,
        mounts.get(config_in_container).map(String::as_str) == Some("deploy/compose/envoy.yaml"),
        || {
            format!("envoy -c {config_in_container} is not a mount of deploy/compose/envoy.yaml: {mounts:?}")
        },
    );
    let wasm_in_container = envoy_cfg.wasm_filename();
    let built = wasm_path();
    let wasm_src = mounts.get(&wasm_in_container).map(|s| repo_root().join(s));
    check(
        &mut problems,
        wasm_src.as_deref() == Some(built.as_path()),
        || {
            format!(
                "the config loads {wasm_in_container}, which is not a mount of {}: {mounts:?}",
                built.display()
            )
        },
    );
    let (listen_ip, listen_port) = envoy_cfg.listener_addr();
    check(&mut problems, listen_ip == "0.0.0.0", || {
        format!("compose listener on {listen_ip}: inside a container it must be 0.0.0.0")
    });
    let ports: Vec<(String, u64)> = array_at(envoy, "/ports", file)
        .iter()
        .map(|p| parse_published_port(p.as_str().expect("port string")))
        .collect();
    check(
        &mut problems,
        ports.iter().any(|(_, c)| *c == listen_port),
        || format!("the listener port {listen_port} is not published: {ports:?}"),
    );
    for (ip, c) in &ports {
        check(&mut problems, is_loopback(ip), || {
            format!("port {c} published on {ip}: the demo key is public, keep it on loopback")
        });
    }
    let AdminAddress::Tcp(_, admin_port) = envoy_cfg.admin() else {
        panic!("deploy/compose/envoy.yaml: the healthcheck needs admin on a TCP port");
    };
    check(
        &mut problems,
        !ports.iter().any(|(_, c)| *c == admin_port),
        || "the admin port must not be published".to_string(),
    );
    let health = envoy["healthcheck"]["test"].to_string();
    check(
        &mut problems,
        health.contains(&format!("/dev/tcp/127.0.0.1/{admin_port}")),
        || format!("envoy healthcheck does not ask the admin port {admin_port}: {health}"),
    );

    // ---- the upstream services and their clusters
    for u in COMPOSE_UPSTREAMS {
        let svc = &compose["services"][u.service];
        let s = u.service;
        let ctx = svc["build"]["context"].as_str().unwrap_or("?");
        let dockerfile = svc["build"]["dockerfile"].as_str().unwrap_or("?");
        let target = svc["build"]["target"].as_str().unwrap_or("?");
        check(&mut problems, repo_root().join(ctx).is_dir(), || {
            format!("{s}: build context {ctx} is not a directory")
        });
        let df_path = repo_root().join(ctx).join(dockerfile);
        match std::fs::read_to_string(&df_path) {
            Err(_) => problems.push(format!("{s}: dockerfile {} missing", df_path.display())),
            Ok(df) => {
                let stages = dockerfile_stages(&df);
                match stages.get(target) {
                    None => problems.push(format!("{s}: no stage `{target}` in {dockerfile}")),
                    Some(lines) => check(
                        &mut problems,
                        lines.iter().any(|l| {
                            l.starts_with("COPY --from=")
                                && l.ends_with(&format!("/usr/local/bin/{}", u.binary))
                        }),
                        || {
                            format!(
                                "{s}: stage {target} does not install /usr/local/bin/{}",
                                u.binary
                            )
                        },
                    ),
                }
            }
        }
        let cmd: Vec<&str> = array_at(svc, "/command", file)
            .iter()
            .filter_map(Value::as_str)
            .collect();
        check(&mut problems, cmd.first() == Some(&u.binary), || {
            format!("{s}: command {cmd:?} does not run {}", u.binary)
        });
        let listen = cmd
            .windows(2)
            .find(|w| w[0] == "--listen")
            .map(|w| w[1].to_string())
            .unwrap_or_default();
        check(
            &mut problems,
            listen == format!("0.0.0.0:{}", u.port),
            || format!("{s}: --listen {listen:?}, expected 0.0.0.0:{}", u.port),
        );
        let expose: Vec<String> = svc["expose"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                p.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| p.to_string())
            })
            .collect();
        check(&mut problems, expose.contains(&u.port.to_string()), || {
            format!("{s}: expose {expose:?} lacks {}", u.port)
        });
        let health = svc["healthcheck"]["test"].to_string();
        check(
            &mut problems,
            health.contains(&format!("/dev/tcp/127.0.0.1/{}", u.port)),
            || format!("{s}: healthcheck does not ask port {}: {health}", u.port),
        );
        check(
            &mut problems,
            envoy["depends_on"][s]["condition"] == "service_healthy",
            || format!("envoy must depend on {s} being healthy"),
        );
        match envoy_cfg.cluster(u.cluster) {
            None => problems.push(format!(
                "deploy/compose/envoy.yaml: no cluster {}",
                u.cluster
            )),
            Some(c) => {
                let (addr, port) = envoy_cfg.endpoint(c);
                check(&mut problems, (addr.as_str(), port) == (s, u.port), || {
                    format!(
                        "cluster {} reaches {addr}:{port}, expected the service {s}:{}",
                        u.cluster, u.port
                    )
                });
                check(&mut problems, c["type"] == "STRICT_DNS", || {
                    format!("cluster {}: service names need type STRICT_DNS", u.cluster)
                });
            }
        }
    }
    // No cluster reaches anything but a compose service.
    for c in envoy_cfg.clusters() {
        let name = c["name"].as_str().unwrap_or("?");
        check(
            &mut problems,
            COMPOSE_UPSTREAMS.iter().any(|u| u.cluster == name),
            || format!("deploy/compose/envoy.yaml: cluster {name} has no compose service"),
        );
    }
    assert_no_problems("docker-compose.yml", problems);
}

/// The compose Dockerfile's build stage copies what cargo needs: run `cargo metadata --locked`
/// on a directory holding exactly the files its COPY lines bring in, as `docker build` would.
#[test]
fn compose_dockerfile_copies_the_whole_workspace() {
    let df = read_repo_file("deploy/compose/Dockerfile");
    let stages = dockerfile_stages(&df);
    let build = stages
        .get("build")
        .expect("deploy/compose/Dockerfile: no `build` stage");
    let ignore = read_repo_file("deploy/compose/Dockerfile.dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let dir = TempDir::new("docker-ctx");
    let mut copied = Vec::new();
    for line in build.iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert!(
            !words.iter().any(|w| w.starts_with("--")),
            "build stage: unexpected COPY flags in {line:?}"
        );
        let (dst, srcs) = words.split_last().expect("COPY without arguments");
        for src in srcs {
            assert!(
                !ignored.iter().any(|i| src.trim_end_matches('/') == *i),
                "COPY {src}: excluded by Dockerfile.dockerignore"
            );
            let from = repo_root().join(src);
            assert!(from.exists(), "COPY {src}: not in the repository");
            let to = if dst.ends_with('/') || *dst == "." {
                dir.path().join(src)
            } else {
                dir.path().join(dst.trim_start_matches("./"))
            };
            let status = Command::new("cp")
                .arg("-R")
                .arg(&from)
                .arg(&to)
                .status()
                .expect("cp");
            assert!(status.success(), "copy {src}");
            copied.push(src.to_string());
        }
    }
    // Build outputs a `cp -R` dragged along are not in the docker context either.
    let _ = Command::new("find")
        .arg(dir.path())
        .args([
            "-name", "target", "-type", "d", "-prune", "-exec", "rm", "-rf", "{}", "+",
        ])
        .status();
    // `cargo check` of the two binaries, as the Dockerfile's `cargo build` (a check parses every
    // manifest and target path; `cargo metadata` alone accepts a missing bench file). Its own
    // target dir under target/ keeps the registry crates compiled between runs.
    let packages: Vec<&str> = COMPOSE_UPSTREAMS
        .iter()
        .flat_map(|u| ["-p", u.package])
        .collect();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir.path())
        .args(["check", "--locked", "--offline", "--quiet"])
        .args(&packages)
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/deploy-docker-check"),
        );
    let ran = run_bounded(cmd, Duration::from_secs(300), "cargo check");
    assert!(
        ran.ok(),
        "deploy/compose/Dockerfile copies {copied:?} into its build stage, and cargo cannot build \
         the workspace from that (add the missing path to the Dockerfile's COPY lines):\n{}",
        last_lines(&ran.stderr, 10)
    );
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir.path()).args([
        "metadata",
        "--locked",
        "--offline",
        "--format-version",
        "1",
    ]);
    let ran = run_bounded(cmd, Duration::from_secs(120), "cargo metadata");
    assert!(ran.ok(), "cargo metadata: {}", last_lines(&ran.stderr, 10));
    let meta: Value = serde_json::from_str(&ran.stdout).expect("cargo metadata JSON");
    let bins: BTreeSet<&str> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|x| x == "bin"))
        })
        .filter_map(|t| t["name"].as_str())
        .collect();
    for u in COMPOSE_UPSTREAMS {
        assert!(
            bins.contains(u.binary),
            "the workspace has no binary {} for compose service {}",
            u.binary,
            u.service
        );
        assert!(
            df.contains(&format!("-p {}", u.package)),
            "deploy/compose/Dockerfile does not build the package {}",
            u.package
        );
        assert!(
            df.contains(&format!("target/release/{}", u.binary)),
            "deploy/compose/Dockerfile does not build/install {}",
            u.binary
        );
    }
}
