//! The deployment recipes (`docker-compose.yml`, `deploy/`) checked as far as this machine can:
//! no Docker engine, Kubernetes or Google Cloud here, so manifests are parsed and cross-checked
//! (names, ports, paths, timeouts), every Envoy config runs through `envoy --mode validate` with
//! the real module (which runs bcsp-guard's own config validation too), plugin configs embedded
//! in manifests go through `bcsp_guard::config::compile`, `make release`'s script runs into a
//! temp dir and its OCI layout is verified blob by blob, and the alert rules go through
//! `promtool`. Each check collects every mismatch of its table and reports them together.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{envoy_binary, sha256_hex, wasm_path, EnvoyConfig, Stack, TempDir};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Ceiling on the release module: well under the 2 MiB Service Extensions allows for module plus
/// configuration.
const WASM_CEILING: u64 = 1024 * 1024;
/// Service Extensions' cap on module plus plugin configuration, held at the 2 MiB Google's
/// limits page gave before it raised the cap to 5 MiB: the stricter figure keeps older notes true.
const SERVICE_EXTENSIONS_LIMIT: u64 = 2 * 1024 * 1024;
/// The filter's root id in every Envoy config and manifest.
const ROOT_ID: &str = "bcsp_guard";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// A YAML file as JSON values (every file here is one document with string keys).
fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

fn str_at<'a>(v: &'a Value, pointer: &str, file: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: no string at {pointer}"))
}

fn u64_at(v: &Value, pointer: &str, file: &str) -> u64 {
    v.pointer(pointer)
        .and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or_else(|| panic!("{file}: no number at {pointer}"))
}

fn arr<'a>(v: &'a Value, pointer: &str, file: &str) -> &'a Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{file}: no list at {pointer}"))
}

/// Panics with every collected problem, one per line.
fn report(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

/// Records `msg` when `ok` is false.
fn check(problems: &mut Vec<String>, ok: bool, msg: impl FnOnce() -> String) {
    if !ok {
        problems.push(msg());
    }
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `ENVOY_VERSION := 1.40.0` from the Makefile: the release the suite runs and images must match.
fn makefile_envoy_version() -> String {
    read("Makefile")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(":=")?;
            (k.trim() == "ENVOY_VERSION").then(|| v.trim().to_string())
        })
        .expect("Makefile has no ENVOY_VERSION")
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Output of a finished child process.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }
    fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `cmd` with output to files (no pipe can fill up) and kill it after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Ran {
    let dir = TempDir::new("run");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = std::fs::File::create(&out_path).expect("create stdout file");
    let err = std::fs::File::create(&err_path).expect("create stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {limit:?}\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Envoy configs
// ---------------------------------------------------------------------------------------------

/// The parts of a static Envoy bootstrap these checks look at.
struct EnvoyDoc {
    file: String,
    v: Value,
}

impl EnvoyDoc {
    fn load(rel: &str) -> EnvoyDoc {
        EnvoyDoc {
            file: rel.to_string(),
            v: yaml(rel),
        }
    }
    fn listener_addr(&self) -> (String, u64) {
        let sa = "/static_resources/listeners/0/address/socket_address";
        (
            str_at(&self.v, &format!("{sa}/address"), &self.file).to_string(),
            u64_at(&self.v, &format!("{sa}/port_value"), &self.file),
        )
    }
    /// Where admin listens: a TCP address, or a unix socket path (`pipe`).
    fn admin(&self) -> Admin {
        if let Some(path) = self.v.pointer("/admin/address/pipe/path") {
            return Admin::Pipe(path.as_str().unwrap_or_default().to_string());
        }
        Admin::Tcp(
            str_at(&self.v, "/admin/address/socket_address/address", &self.file).to_string(),
            u64_at(
                &self.v,
                "/admin/address/socket_address/port_value",
                &self.file,
            ),
        )
    }
    /// The HTTP connection manager of the first listener.
    fn hcm(&self) -> &Value {
        arr(
            &self.v,
            "/static_resources/listeners/0/filter_chains/0/filters",
            &self.file,
        )
        .iter()
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &f["typed_config"])
        .unwrap_or_else(|| panic!("{}: no http_connection_manager", self.file))
    }
    /// The Wasm filter's `config` (name, root_id, vm_config, configuration).
    fn wasm(&self) -> &Value {
        arr(self.hcm(), "/http_filters", &self.file)
            .iter()
            .find(|f| f["name"] == "envoy.filters.http.wasm")
            .map(|f| &f["typed_config"]["config"])
            .unwrap_or_else(|| panic!("{}: no envoy.filters.http.wasm filter", self.file))
    }
    fn wasm_filename(&self) -> String {
        str_at(self.wasm(), "/vm_config/code/local/filename", &self.file).to_string()
    }
    /// The plugin configuration text (`configuration.value`).
    fn plugin_text(&self) -> String {
        str_at(self.wasm(), "/configuration/value", &self.file).to_string()
    }
    fn plugin(&self) -> Value {
        serde_json::from_str(&self.plugin_text())
            .unwrap_or_else(|e| panic!("{}: plugin configuration is not JSON: {e}", self.file))
    }
    fn routes(&self) -> Vec<&Value> {
        arr(self.hcm(), "/route_config/virtual_hosts", &self.file)
            .iter()
            .flat_map(|vh| arr(vh, "/routes", &self.file))
            .collect()
    }
    fn clusters(&self) -> &Vec<Value> {
        arr(&self.v, "/static_resources/clusters", &self.file)
    }
    fn cluster(&self, name: &str) -> Option<&Value> {
        self.clusters().iter().find(|c| c["name"] == name)
    }
    /// The single endpoint of a cluster: (address, port).
    fn endpoint(&self, cluster: &Value) -> (String, u64) {
        let sa = "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address";
        (
            str_at(cluster, &format!("{sa}/address"), &self.file).to_string(),
            u64_at(cluster, &format!("{sa}/port_value"), &self.file),
        )
    }
}

enum Admin {
    Tcp(String, u64),
    Pipe(String),
}

/// Seconds of an Envoy duration string such as `30s`.
fn duration_s(s: &str) -> u64 {
    s.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .map(|f| f.ceil() as u64)
        .unwrap_or_else(|| panic!("not a duration in seconds: {s:?}"))
}

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

/// Every YAML file under deploy/ that is an Envoy bootstrap (has static_resources).
fn envoy_configs_under_deploy() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy"), &mut files);
    files
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.lines().any(|l| l.starts_with("static_resources:")))
                .unwrap_or(false)
        })
        .map(|p| {
            p.strip_prefix(root())
                .expect("under root")
                .display()
                .to_string()
        })
        .collect()
}

/// `envoy --mode validate` on `text` (the config `name`) with its module path pointed at `wasm`.
fn envoy_validate_text(name: &str, text: &str, wasm: &Path) -> Ran {
    let doc: Value =
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    let from = EnvoyDoc {
        file: name.to_string(),
        v: doc,
    }
    .wasm_filename();
    let needle = format!("filename: {from} ");
    assert_eq!(
        text.matches(&needle).count(),
        1,
        "{name}: expected the module path `{needle}` exactly once"
    );
    let dir = TempDir::new("validate");
    let copy = dir.path().join("envoy.yaml");
    std::fs::write(
        &copy,
        text.replace(&needle, &format!("filename: {} ", wasm.display())),
    )
    .expect("write temp config");
    let mut cmd = Command::new(envoy_binary());
    cmd.args(["--mode", "validate", "-l", "info", "-c"])
        .arg(&copy);
    run_bounded(
        cmd,
        Duration::from_secs(60),
        &format!("envoy --mode validate {name}"),
    )
}

fn envoy_validate(rel: &str, wasm: &Path) -> Ran {
    envoy_validate_text(rel, &read(rel), wasm)
}

#[test]
fn every_deploy_envoy_config_has_a_row() {
    let listed: BTreeSet<String> = envoy_cases()
        .iter()
        .map(|c| c.file.to_string())
        .filter(|f| f.starts_with("deploy/"))
        .collect();
    assert_eq!(
        envoy_configs_under_deploy(),
        listed,
        "Envoy configs under deploy/ vs the rows of envoy_cases() in tests/deploy.rs: \
         add a row for a new config"
    );
}

#[test]
fn envoy_configs_pass_envoy_validate() {
    let wasm = wasm_path();
    let mut problems = Vec::new();
    // In parallel: each validation starts a V8 VM.
    let runs: Vec<(&'static str, Ran)> = std::thread::scope(|s| {
        let handles: Vec<_> = envoy_cases()
            .into_iter()
            .map(|c| {
                let wasm = &wasm;
                s.spawn(move || (c.file, envoy_validate(c.file, wasm)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("validate thread"))
            .collect()
    });
    for (file, ran) in runs {
        let out = ran.both();
        check(&mut problems, ran.ok() && out.contains("OK"), || {
            format!(
                "{file}: envoy --mode validate failed ({:?})\n{}",
                ran.code,
                tail(&out, 15)
            )
        });
    }
    report("envoy --mode validate", problems);
}

/// The validation above is not vacuous: a config the filter refuses fails it.
#[test]
fn envoy_validate_catches_a_config_the_filter_refuses() {
    let rel = "deploy/cloud-run/envoy.yaml";
    let text = read(rel).replace("\"trusted_hops\": 2", "\"trusted_hops\": 0");
    assert!(
        text.contains("\"trusted_hops\": 0"),
        "the mutation did not apply"
    );
    let ran = envoy_validate_text(rel, &text, &wasm_path());
    assert!(
        !ran.ok(),
        "{rel} with trusted_hops 0 passed validation:\n{}",
        tail(&ran.both(), 10)
    );
    assert!(
        ran.both().contains("trusted_hops"),
        "the refusal does not name the field:\n{}",
        tail(&ran.both(), 10)
    );
}

#[test]
fn envoy_configs_keep_the_safety_rules() {
    let mut problems = Vec::new();
    for case in envoy_cases() {
        let doc = EnvoyDoc::load(case.file);
        let f = case.file;
        match doc.admin() {
            Admin::Tcp(ip, _) => check(&mut problems, is_loopback(&ip), || {
                format!("{f}: admin on {ip}, not loopback")
            }),
            Admin::Pipe(path) => check(&mut problems, path.starts_with('/'), || {
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
        let w = doc.wasm();
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
        let hcm = doc.hcm();
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
    report("Envoy config rules", problems);
}

// ---------------------------------------------------------------------------------------------
// docker compose
// ---------------------------------------------------------------------------------------------

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
fn dockerfile_stages(text: &str) -> BTreeMap<String, Vec<String>> {
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
fn published(port: &str) -> (String, u64) {
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
    let compose = yaml(file);
    let envoy_cfg = EnvoyDoc::load("deploy/compose/envoy.yaml");
    let services = compose["services"]
        .as_object()
        .expect("docker-compose.yml: no services");
    let mut problems = Vec::new();

    let expected: BTreeSet<&str> = COMPOSE_UPSTREAMS
        .iter()
        .map(|u| u.service)
        .chain(["envoy"])
        .collect();
    let actual: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    check(&mut problems, actual == expected, || {
        format!("services {actual:?}, expected {expected:?}")
    });

    // ---- envoy
    let envoy = &compose["services"]["envoy"];
    let image = format!("envoyproxy/envoy:v{}", makefile_envoy_version());
    check(&mut problems, envoy["image"] == image.as_str(), || {
        format!(
            "envoy image {}, expected {image} (Makefile ENVOY_VERSION)",
            envoy["image"]
        )
    });
    let command: Vec<&str> = arr(envoy, "/command", file)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_in_container = command
        .windows(2)
        .find(|w| w[0] == "-c" || w[0] == "--config-path")
        .map(|w| w[1])
        .unwrap_or_else(|| panic!("envoy command has no -c: {command:?}"));
    let mut mounts = BTreeMap::new();
    for v in arr(envoy, "/volumes", file) {
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
        check(&mut problems, root().join(src).exists(), || {
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
    let wasm_src = mounts.get(&wasm_in_container).map(|s| root().join(s));
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
    let ports: Vec<(String, u64)> = arr(envoy, "/ports", file)
        .iter()
        .map(|p| published(p.as_str().expect("port string")))
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
    let Admin::Tcp(_, admin_port) = envoy_cfg.admin() else {
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
        check(&mut problems, root().join(ctx).is_dir(), || {
            format!("{s}: build context {ctx} is not a directory")
        });
        let df_path = root().join(ctx).join(dockerfile);
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
        let cmd: Vec<&str> = arr(svc, "/command", file)
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
    report("docker-compose.yml", problems);
}

/// The compose Dockerfile's build stage copies what cargo needs: run `cargo metadata --locked`
/// on a directory holding exactly the files its COPY lines bring in, as `docker build` would.
#[test]
fn compose_dockerfile_copies_the_whole_workspace() {
    let df = read("deploy/compose/Dockerfile");
    let stages = dockerfile_stages(&df);
    let build = stages
        .get("build")
        .expect("deploy/compose/Dockerfile: no `build` stage");
    let ignore = read("deploy/compose/Dockerfile.dockerignore");
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
            let from = root().join(src);
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
            root().join("target/deploy-docker-check"),
        );
    let ran = run_bounded(cmd, Duration::from_secs(300), "cargo check");
    assert!(
        ran.ok(),
        "deploy/compose/Dockerfile copies {copied:?} into its build stage, and cargo cannot build \
         the workspace from that (add the missing path to the Dockerfile's COPY lines):\n{}",
        tail(&ran.stderr, 10)
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
    assert!(ran.ok(), "cargo metadata: {}", tail(&ran.stderr, 10));
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

// ---------------------------------------------------------------------------------------------
// Cloud Run
// ---------------------------------------------------------------------------------------------

/// The image's CA bundle (envoyproxy/envoy is Ubuntu with ca-certificates).
const IMAGE_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The container that receives requests (the one with `ports`), and the others.
fn cloud_run_containers(svc: &Value, file: &str) -> (Value, Vec<Value>) {
    let all = arr(svc, "/spec/template/spec/containers", file).clone();
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
    let dockerfile = read("deploy/cloud-run/Dockerfile");
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
        let svc = yaml(svc_file);
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
            let t = duration_s(r["route"]["timeout"].as_str().unwrap_or("15s"));
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
    let image = format!("FROM envoyproxy/envoy:v{}", makefile_envoy_version());
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
    let cloudbuild = yaml("deploy/cloud-run/cloudbuild.yaml");
    check(
        &mut problems,
        cloudbuild["steps"][0]["args"]
            .to_string()
            .contains("deploy/cloud-run/Dockerfile"),
        || "cloudbuild.yaml must build deploy/cloud-run/Dockerfile".to_string(),
    );
    let ignore = read("deploy/cloud-run/gcloudignore");
    for keep in ["!/dist/", "!/deploy/"] {
        check(
            &mut problems,
            ignore.lines().any(|l| l.trim() == keep),
            || format!("gcloudignore must keep {keep} (the Dockerfile copies from there)"),
        );
    }
    report("Cloud Run", problems);
}

/// `GET path` over a unix socket; the raw reply, or "" when nothing answers yet.
fn unix_get(socket: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An Envoy started from a shipped config (edited copy); killed on drop.
struct ShippedEnvoy {
    child: std::process::Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for ShippedEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sidecar config as shipped, with only what a laptop needs changed: the module path, the
/// listener and admin ports, the BCSP port (a recording upstream) and the key hash. Requests
/// then arrive the way Cloud Run's front end delivers them: X-Forwarded-For ending with the
/// caller's address, from a TCP peer that is the front end. This checks the shipped client-IP
/// rule (trusted_hops 2) end to end.
#[test]
fn cloud_run_sidecar_config_admits_genesys_behind_the_front_end() {
    let rel = "deploy/cloud-run/sidecar/envoy.yaml";
    let secret = "sidecar-test-secret";
    let upstream = harness::Recorder::start();
    let listen = free_port();
    let doc = EnvoyDoc::load(rel);
    let Admin::Pipe(shipped_socket) = doc.admin() else {
        panic!("{rel}: admin must be a unix socket");
    };
    let genesys = doc.plugin()["allow_cidrs"][0]
        .as_str()
        .and_then(|c| c.split('/').next())
        .expect("an allow_cidrs entry")
        .to_string();
    let dir = TempDir::new("sidecar");
    // Unix socket paths are short (108 bytes): the temp dir stays well inside that.
    let admin_socket = dir.path().join("admin.sock");
    let text = read(rel);
    let edits = [
        (
            format!("filename: {} ", doc.wasm_filename()),
            format!("filename: {} ", wasm_path().display()),
        ),
        (
            "address: 0.0.0.0, port_value: 8080".to_string(),
            format!("address: 127.0.0.1, port_value: {listen}"),
        ),
        (
            format!("path: {shipped_socket} "),
            format!("path: {} ", admin_socket.display()),
        ),
        (
            "address: 127.0.0.1, port_value: 8888".to_string(),
            format!("address: 127.0.0.1, port_value: {}", upstream.addr().port()),
        ),
        ("0".repeat(64), sha256_hex(secret)),
    ];
    let mut edited = text.clone();
    for (from, to) in &edits {
        assert_eq!(
            edited.matches(from.as_str()).count(),
            1,
            "{rel}: `{from}` not found once"
        );
        edited = edited.replace(from.as_str(), to);
    }
    let cfg = dir.path().join("envoy.yaml");
    let log = dir.path().join("envoy.log");
    std::fs::write(&cfg, edited).expect("write config");
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&cfg)
        .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
        .arg("--log-path")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start envoy");
    let mut envoy = ShippedEnvoy {
        child,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(st)) = envoy.child.try_wait() {
            panic!(
                "Envoy exited ({st}):\n{}",
                tail(&std::fs::read_to_string(&envoy.log).unwrap_or_default(), 20)
            );
        }
        // Admin answers on the shipped unix socket (moved into the temp dir).
        if unix_get(&admin_socket, "/ready").starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "Envoy not ready within 20 s");
        std::thread::sleep(Duration::from_millis(25));
    }
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], listen));

    // (X-Forwarded-For as the front end sends it, with key?, expected status)
    let cases = [
        (genesys.clone(), true, 200),
        (genesys.clone(), false, 401),
        ("198.51.100.7".to_string(), true, 403),
        // A caller that writes Genesys's address itself: the front end appends the real one.
        (format!("{genesys}, 198.51.100.7"), true, 403),
        (format!("198.51.100.7, {genesys}"), true, 200),
    ];
    let mut problems = Vec::new();
    for (xff, with_key, want) in &cases {
        let mut req = harness::request("GET", "/botconnector/bots")
            .to(to)
            .header("x-forwarded-for", xff);
        if *with_key {
            req = req.header("x-bcsp-key", secret);
        }
        let before = upstream.count();
        let reply = req.send();
        check(&mut problems, reply.status == *want, || {
            format!(
                "XFF {xff:?}, key {with_key}: status {}, expected {want}",
                reply.status
            )
        });
        let reached = upstream.count() > before;
        check(&mut problems, reached == (*want == 200), || {
            format!("XFF {xff:?}: reached the BCSP: {reached}")
        });
        if *want == 200 && reached {
            let seen = upstream.last();
            check(&mut problems, seen.header("x-bcsp-key").is_none(), || {
                "the key reached the BCSP".into()
            });
            check(
                &mut problems,
                seen.header("x-bcsp-key-id") == Some("genesys-1"),
                || format!("x-bcsp-key-id {:?}", seen.header("x-bcsp-key-id")),
            );
        }
    }
    // A header name with `_` (which CGI-style servers read as `-`) is refused by Envoy itself.
    let before = upstream.count();
    let reply = harness::request("GET", "/botconnector/bots")
        .to(to)
        .header("x-forwarded-for", &genesys)
        .header("x-bcsp-key", secret)
        .header("x_bcsp_key_id", "forged")
        .send();
    check(&mut problems, reply.status == 400, || {
        format!("underscore header: status {}, expected 400", reply.status)
    });
    check(&mut problems, upstream.count() == before, || {
        "a request with an underscore header reached the BCSP".into()
    });
    report("sidecar config behind Cloud Run's front end", problems);
}

// ---------------------------------------------------------------------------------------------
// Istio
// ---------------------------------------------------------------------------------------------

#[test]
fn istio_wasmplugin_config_is_accepted_and_wired() {
    let file = "deploy/istio/wasmplugin.yaml";
    let wp = yaml(file);
    let se = yaml("deploy/istio/serviceentry.yaml");
    let dr = yaml("deploy/istio/destinationrule.yaml");
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
    check(&mut problems, is_hex64(sha), || {
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
    report("Istio", problems);
}

// ---------------------------------------------------------------------------------------------
// GCP Service Extensions
// ---------------------------------------------------------------------------------------------

#[test]
fn service_extensions_config_and_wiring() {
    let file = "deploy/service-extensions/plugin-config.json";
    let text = read(file);
    let mut problems = Vec::new();
    if let Err(e) = bcsp_guard::config::compile(text.as_bytes()) {
        problems.push(format!("{file}: refused by bcsp-guard: {e}"));
    }
    let cfg: Value = serde_json::from_str(&text).expect("plugin-config.json is JSON");
    check(&mut problems, cfg.get("upstream_token").is_none(), || {
        format!("{file}: no upstream_token on Service Extensions (no timers, shared data or outbound calls there)")
    });
    let wasm_len = std::fs::metadata(wasm_path()).expect("module").len();
    check(
        &mut problems,
        wasm_len + text.len() as u64 <= SERVICE_EXTENSIONS_LIMIT,
        || format!("module ({wasm_len} bytes) plus {file} exceed Service Extensions' 2 MiB"),
    );
    let readme = read("deploy/service-extensions/README.md");
    let plugin_name = "bcsp-guard";
    check(
        &mut problems,
        readme.contains(&format!("wasm-plugins create {plugin_name} "))
            && readme.contains(&format!("--plugin-config-file={file}")),
        || format!("README must create plugin {plugin_name} from {file}"),
    );
    for (ext, cmd) in [
        (
            "deploy/service-extensions/traffic-extension.yaml",
            "lb-traffic-extensions import",
        ),
        (
            "deploy/service-extensions/route-extension.yaml",
            "lb-route-extensions import",
        ),
    ] {
        let v = yaml(ext);
        let e = &v["extensionChains"][0]["extensions"][0];
        let service = e["service"].as_str().unwrap_or_default();
        check(
            &mut problems,
            service.ends_with(&format!("/locations/global/wasmPlugins/{plugin_name}")),
            || format!("{ext}: service {service:?} is not the plugin {plugin_name}"),
        );
        check(
            &mut problems,
            e["supportedEvents"] == json!(["REQUEST_HEADERS"]),
            || format!("{ext}: bcsp-guard needs REQUEST_HEADERS only"),
        );
        check(&mut problems, e["failOpen"] == false, || {
            format!("{ext}: failOpen must be false")
        });
        check(
            &mut problems,
            v["loadBalancingScheme"] == "EXTERNAL_MANAGED",
            || format!("{ext}: loadBalancingScheme must be EXTERNAL_MANAGED"),
        );
        check(
            &mut problems,
            readme.contains(&format!("{cmd} {plugin_name}"))
                && readme.contains(&format!("--source={ext}")),
            || format!("README must show `{cmd}` with {ext}"),
        );
    }
    report("Service Extensions", problems);
}

// ---------------------------------------------------------------------------------------------
// make release
// ---------------------------------------------------------------------------------------------

fn run_release(dist: &Path, wasm_in: &Path, extra: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(root().join("deploy/release.sh"));
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
fn tool_bytes(args: &[&str], input: &Path) -> Vec<u8> {
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
        tail(&ran.both(), 30)
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
        sha_file == format!("{}  bcsp_guard.wasm\n", hex(&wasm)),
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
            digest == format!("sha256:{}", hex(&bytes)),
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
    let tar_bytes = tool_bytes(&["gzip", "-dc"], &layer_path);
    check(
        &mut problems,
        config["rootfs"]["diff_ids"] == json!([format!("sha256:{}", hex(&tar_bytes))]),
        || {
            format!(
                "config diff_ids {} are not the uncompressed layer's digest",
                config["rootfs"]["diff_ids"]
            )
        },
    );
    let listing = String::from_utf8(tool_bytes(&["tar", "-tzf"], &layer_path)).expect("utf8");
    check(
        &mut problems,
        listing.lines().collect::<Vec<_>>() == ["plugin.wasm"],
        || format!("the layer must hold plugin.wasm alone, holds {listing:?}"),
    );
    let in_layer = tool_bytes(&["tar", "-xzOf"], &layer_path);
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
        tail(&again.both(), 20)
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
    report("make release", problems);
}

// ---------------------------------------------------------------------------------------------
// Prometheus alerts
// ---------------------------------------------------------------------------------------------

fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("BCSP_GUARD_PROMTOOL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found: run `make check-deploy` (it installs Debian's prometheus \
                 package, which ships promtool), or set BCSP_GUARD_PROMTOOL"
            )
        })
}

#[test]
fn alert_rules_pass_promtool() {
    let tool = promtool();
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let mut cmd = Command::new(&tool);
        cmd.args(args).current_dir(&dir);
        let ran = run_bounded(cmd, Duration::from_secs(60), "promtool");
        assert!(
            ran.ok(),
            "promtool {} failed:\n{}",
            args.join(" "),
            tail(&ran.both(), 30)
        );
    }
}

/// Every bcsp_guard_* series the rules read is one a real Envoy with the filter serves (or a
/// planned one), so a renamed counter cannot leave an alert silently watching nothing.
#[test]
fn alert_rules_name_real_metrics() {
    let file = "deploy/prometheus/alerts.yaml";
    let rules = yaml(file);
    let exprs: Vec<String> = arr(&rules, "/groups", file)
        .iter()
        .flat_map(|g| arr(g, "/rules", file))
        .map(|r| str_at(r, "/expr", file).to_string())
        .collect();
    assert!(!exprs.is_empty(), "{file}: no rules");

    // A config that defines every metric the filter has for it: upstream_token, and a key
    // with a not_after (for the days-left gauge).
    let filter = json!({
        "keys": [{"id": "k1", "sha256": sha256_hex("alerts-test"), "not_after": "2099-01-01T00:00:00Z"}],
        "upstream_token": {"cluster": "gcp_metadata", "audience": "https://bcsp.test"}
    });
    // The metadata cluster leads nowhere: the metrics exist from configuration on.
    let cfg = EnvoyConfig::new(filter).extra_clusters(
        "  - name: gcp_metadata\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: gcp_metadata\n      endpoints: [{lb_endpoints: [{endpoint: {address: \
         {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]\n",
    );
    let stack = Stack::start(&cfg);
    let prom = stack.envoy.stats_prometheus();
    let served: BTreeSet<String> = prom
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| n.starts_with("bcsp_guard_"))
        .map(str::to_string)
        .collect();

    let mut problems = Vec::new();
    for expr in &exprs {
        let tokens = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        for t in tokens.filter(|t| t.starts_with("bcsp_guard_")) {
            if t.ends_with('_') {
                // A regex prefix such as bcsp_guard_denied_.+
                check(
                    &mut problems,
                    served.iter().any(|m| m.starts_with(t)),
                    || format!("{file}: no served metric starts with {t} (in {expr:?})"),
                );
            } else {
                check(&mut problems, served.contains(t), || {
                    format!("{file}: {t} is not served by Envoy (in {expr:?})")
                });
            }
        }
        // reason="x" / reason!="x" name the suffix of a bcsp_guard_denied_x counter.
        for part in expr.split("reason").skip(1) {
            let value = part
                .strip_prefix("=\"")
                .or_else(|| part.strip_prefix("!=\""))
                .and_then(|r| r.split('"').next());
            if let Some(v) = value.filter(|v| !v.is_empty() && !v.contains('$')) {
                let m = format!("bcsp_guard_denied_{v}");
                check(&mut problems, served.contains(&m), || {
                    format!("{file}: reason {v:?} but Envoy serves no {m}")
                });
            }
        }
    }
    check(&mut problems, !served.is_empty(), || {
        "Envoy serves no bcsp_guard_ metric".into()
    });
    if !problems.is_empty() {
        problems.push(format!("served: {served:?}"));
    }
    report("alert rules vs served metrics", problems);
}

// ---------------------------------------------------------------------------------------------
// Genesys IP ranges helper
// ---------------------------------------------------------------------------------------------

const IPRANGES: &str = r#"{"entities":[
 {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-east-1"},
 {"cidr":"52.1.2.0/24","service":"bot-connector","region":"us-east-2","direction":"outbound"},
 {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-west-2"},
 {"cidr":"2600:1f18:4a3:6900::/56","service":"bot-connector","region":"us-east-1"},
 {"cidr":"198.51.100.0/24","service":"web-messaging","region":"us-east-1"}]}"#;

fn ipranges(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("deploy/genesys-ipranges.py"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, Duration::from_secs(60), "genesys-ipranges.py")
}

#[test]
fn genesys_ipranges_feeds_allow_cidrs() {
    let dir = TempDir::new("ipranges");
    let good = dir.path().join("good.json");
    std::fs::write(&good, IPRANGES).expect("write");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, IPRANGES.replace("52.1.2.0/24", "52.1.2.9/24")).expect("write");
    let none = dir.path().join("none.json");
    std::fs::write(&none, r#"{"entities":[]}"#).expect("write");
    let gs = |p: &Path| p.display().to_string();

    // A fake Genesys API: the path and the optional bearer token are checked there.
    let server = http_stub::Server::bind("127.0.0.1:0", |req: &http_stub::Request| {
        if req.path() != "/api/v2/ipranges" {
            return http_stub::Response::json(404, "{}");
        }
        match req.header("authorization") {
            Some("Bearer tok-1") | None => http_stub::Response::json(200, IPRANGES),
            Some(_) => http_stub::Response::json(401, "{}"),
        }
    })
    .expect("bind fake API");
    let api = format!("http://{}", server.local_addr());

    let all = r#"["34.200.73.250/32", "52.1.2.0/24", "2600:1f18:4a3:6900::/56"]"#;
    struct Case<'a> {
        args: Vec<String>,
        env: Vec<(&'a str, &'a str)>,
        ok: bool,
        out: &'a str,
    }
    let cases = vec![
        Case {
            args: vec!["--file".into(), gs(&good)],
            env: vec![],
            ok: true,
            out: all,
        },
        Case {
            args: vec!["--api".into(), api.clone()],
            env: vec![],
            ok: true,
            out: all,
        },
        Case {
            args: vec!["--api".into(), api.clone()],
            env: vec![("GENESYS_TOKEN", "tok-1")],
            ok: true,
            out: all,
        },
        Case {
            args: vec!["--api".into(), api.clone()],
            env: vec![("GENESYS_TOKEN", "wrong")],
            ok: false,
            out: "",
        },
        Case {
            args: vec![
                "--file".into(),
                gs(&good),
                "--direction".into(),
                "outbound".into(),
                "--format".into(),
                "lines".into(),
            ],
            env: vec![],
            ok: true,
            out: "52.1.2.0/24",
        },
        Case {
            args: vec![
                "--file".into(),
                gs(&good),
                "--service".into(),
                "web-messaging".into(),
            ],
            env: vec![],
            ok: true,
            out: r#"["198.51.100.0/24"]"#,
        },
        // Host bits set: refused, never widened.
        Case {
            args: vec!["--file".into(), gs(&bad)],
            env: vec![],
            ok: false,
            out: "",
        },
        Case {
            args: vec!["--file".into(), gs(&none)],
            env: vec![],
            ok: false,
            out: "",
        },
    ];
    let mut problems = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let ran = ipranges(&args, &c.env);
        check(&mut problems, ran.ok() == c.ok, || {
            format!(
                "{args:?}: exit {:?}, expected success={}: {}",
                ran.code, c.ok, ran.stderr
            )
        });
        if c.ok {
            check(&mut problems, ran.stdout.trim() == c.out, || {
                format!(
                    "{args:?}: printed {:?}, expected {:?}",
                    ran.stdout.trim(),
                    c.out
                )
            });
            if c.out.starts_with('[') {
                let cfg = format!(
                    r#"{{"keys":[{{"id":"k","sha256":"{}"}}],"allow_cidrs":{}}}"#,
                    sha256_hex("x"),
                    ran.stdout.trim()
                );
                if let Err(e) = bcsp_guard::config::compile(cfg.as_bytes()) {
                    problems.push(format!("{args:?}: output refused as allow_cidrs: {e}"));
                }
            }
        } else {
            check(
                &mut problems,
                !ran.stderr.trim().is_empty() && !ran.stderr.contains("Traceback"),
                || {
                    format!(
                        "{args:?}: a failure needs one clear line, got {:?}",
                        ran.stderr
                    )
                },
            );
        }
    }
    server.stop();
    report("genesys-ipranges.py", problems);
}
