//! What the deployment checks share: repository files and YAML, collecting problems, running a
//! tool with a time limit, walking deploy/, and reading a static Envoy bootstrap.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{envoy_binary, TempDir};

/// The filter's root id in every Envoy config and manifest.
pub const ROOT_ID: &str = "bcsp_guard";

// ---------------------------------------------------------------------------------------------
// Repository files
// ---------------------------------------------------------------------------------------------

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file's text, by its path relative to the repository root.
pub fn read_repo_file(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel))
        .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// YAML text as JSON values (every file here is one document with string keys).
pub fn parse_yaml(name: &str, text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// A repository YAML file as JSON values.
pub fn read_yaml(rel: &str) -> Value {
    parse_yaml(rel, &read_repo_file(rel))
}

pub fn str_at<'a>(v: &'a Value, pointer: &str, file: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: no string at {pointer}"))
}

pub fn u64_at(v: &Value, pointer: &str, file: &str) -> u64 {
    v.pointer(pointer)
        .and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or_else(|| panic!("{file}: no number at {pointer}"))
}

pub fn array_at<'a>(v: &'a Value, pointer: &str, file: &str) -> &'a Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{file}: no list at {pointer}"))
}

/// Every file under deploy/ whose name ends with one of `suffixes`, as sorted paths relative
/// to the repository root.
pub fn files_under_deploy(suffixes: &[&str]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let root = repo_root();
    let mut all = Vec::new();
    walk(&root.join("deploy"), &mut all);
    let mut out: Vec<String> = all
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            suffixes.iter().any(|x| name.ends_with(x))
        })
        .map(|p| {
            p.strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// Every Envoy bootstrap under deploy/: a YAML file with top-level static_resources.
pub fn envoy_configs_under_deploy() -> Vec<String> {
    files_under_deploy(&[".yaml", ".yml"])
        .into_iter()
        .filter(|f| {
            read_repo_file(f)
                .lines()
                .any(|l| l.starts_with("static_resources:"))
        })
        .collect()
}

/// Shell commands of a document: lines of fenced code blocks (or, for a non-Markdown file,
/// every line with a leading `#` removed), with `\` continuations joined.
pub fn shell_commands(name: &str, text: &str) -> Vec<String> {
    let markdown = name.ends_with(".md");
    let mut in_block = false;
    let mut lines = Vec::new();
    for l in text.lines() {
        if markdown && l.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !markdown || in_block {
            lines.push(l.trim_start().trim_start_matches('#').trim().to_string());
        }
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in lines {
        match l.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(&l);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Collected problems
// ---------------------------------------------------------------------------------------------

/// Panics with every collected problem, one per line.
pub fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

/// Records `msg` when `ok` is false.
pub fn check(problems: &mut Vec<String>, ok: bool, msg: impl FnOnce() -> String) {
    if !ok {
        problems.push(msg());
    }
}

// ---------------------------------------------------------------------------------------------
// Small computations
// ---------------------------------------------------------------------------------------------

pub fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Lowercase hex SHA-256 of raw bytes (blobs, modules); `harness::sha256_hex` takes a secret.
pub fn sha256_hex_of_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Seconds of an Envoy duration string such as `30s`, rounded up.
pub fn envoy_duration_secs(s: &str) -> u64 {
    s.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .map(|f| f.ceil() as u64)
        .unwrap_or_else(|| panic!("not a duration in seconds: {s:?}"))
}

// ---------------------------------------------------------------------------------------------
// Running tools
// ---------------------------------------------------------------------------------------------

/// Output of a finished child process.
pub struct RunOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn stdout_and_stderr(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `cmd` with output to files (no pipe can fill up) and kill it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> RunOutput {
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
    RunOutput {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// deploy/genesys-ipranges.py with `args` and extra environment.
pub fn run_genesys_ipranges(args: &[&str], env: &[(&str, &str)]) -> RunOutput {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("deploy/genesys-ipranges.py"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, Duration::from_secs(60), "genesys-ipranges.py")
}

/// `envoy --mode validate` on `text` (the config `name`) with its module path pointed at `wasm`.
pub fn envoy_validate_text(name: &str, text: &str, wasm: &Path) -> RunOutput {
    let from = EnvoyDoc {
        file: name.to_string(),
        v: parse_yaml(name, text),
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

/// `envoy --mode validate` on a repository config file.
pub fn envoy_validate_file(rel: &str, wasm: &Path) -> RunOutput {
    envoy_validate_text(rel, &read_repo_file(rel), wasm)
}

// ---------------------------------------------------------------------------------------------
// Envoy bootstraps
// ---------------------------------------------------------------------------------------------

/// The connection managers of a bootstrap, each with its listener's name.
pub fn connection_managers(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let listeners = v["static_resources"]["listeners"].as_array().cloned();
    for l in listeners.unwrap_or_default() {
        let name = l["name"].as_str().unwrap_or("?").to_string();
        for chain in l["filter_chains"].as_array().cloned().unwrap_or_default() {
            for f in chain["filters"].as_array().cloned().unwrap_or_default() {
                if f["name"] == "envoy.filters.network.http_connection_manager" {
                    out.push((name.clone(), f["typed_config"].clone()));
                }
            }
        }
    }
    out
}

/// Where Envoy's admin interface listens.
pub enum AdminAddress {
    Tcp(String, u64),
    /// A unix socket path (`pipe`).
    Pipe(String),
}

/// The parts of a static Envoy bootstrap these checks look at.
pub struct EnvoyDoc {
    pub file: String,
    pub v: Value,
}

impl EnvoyDoc {
    pub fn load(rel: &str) -> EnvoyDoc {
        EnvoyDoc {
            file: rel.to_string(),
            v: read_yaml(rel),
        }
    }
    pub fn listener_addr(&self) -> (String, u64) {
        let sa = "/static_resources/listeners/0/address/socket_address";
        (
            str_at(&self.v, &format!("{sa}/address"), &self.file).to_string(),
            u64_at(&self.v, &format!("{sa}/port_value"), &self.file),
        )
    }
    pub fn admin(&self) -> AdminAddress {
        if let Some(path) = self.v.pointer("/admin/address/pipe/path") {
            return AdminAddress::Pipe(path.as_str().unwrap_or_default().to_string());
        }
        AdminAddress::Tcp(
            str_at(&self.v, "/admin/address/socket_address/address", &self.file).to_string(),
            u64_at(
                &self.v,
                "/admin/address/socket_address/port_value",
                &self.file,
            ),
        )
    }
    /// The HTTP connection manager of the first listener.
    pub fn first_connection_manager(&self) -> &Value {
        array_at(
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
    pub fn wasm_filter_config(&self) -> &Value {
        array_at(self.first_connection_manager(), "/http_filters", &self.file)
            .iter()
            .find(|f| f["name"] == "envoy.filters.http.wasm")
            .map(|f| &f["typed_config"]["config"])
            .unwrap_or_else(|| panic!("{}: no envoy.filters.http.wasm filter", self.file))
    }
    pub fn wasm_filename(&self) -> String {
        str_at(
            self.wasm_filter_config(),
            "/vm_config/code/local/filename",
            &self.file,
        )
        .to_string()
    }
    /// The plugin configuration text (`configuration.value`).
    pub fn plugin_text(&self) -> String {
        str_at(
            self.wasm_filter_config(),
            "/configuration/value",
            &self.file,
        )
        .to_string()
    }
    pub fn plugin(&self) -> Value {
        serde_json::from_str(&self.plugin_text())
            .unwrap_or_else(|e| panic!("{}: plugin configuration is not JSON: {e}", self.file))
    }
    pub fn routes(&self) -> Vec<&Value> {
        array_at(
            self.first_connection_manager(),
            "/route_config/virtual_hosts",
            &self.file,
        )
        .iter()
        .flat_map(|vh| array_at(vh, "/routes", &self.file))
        .collect()
    }
    pub fn clusters(&self) -> &Vec<Value> {
        array_at(&self.v, "/static_resources/clusters", &self.file)
    }
    pub fn cluster(&self, name: &str) -> Option<&Value> {
        self.clusters().iter().find(|c| c["name"] == name)
    }
    /// The single endpoint of a cluster: (address, port).
    pub fn endpoint(&self, cluster: &Value) -> (String, u64) {
        let sa = "/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address";
        (
            str_at(cluster, &format!("{sa}/address"), &self.file).to_string(),
            u64_at(cluster, &format!("{sa}/port_value"), &self.file),
        )
    }
}
