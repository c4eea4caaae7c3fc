//! Envoy whose only listener comes from a watched file (filesystem LDS), so a config change
//! is a listener update, as an operator's config push is.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::WAIT;

/// Envoy whose only listener comes from `<dir>/lds.yaml` (clusters are static). `push`
/// replaces that file atomically (write a temp file, rename it over), which is the move event
/// Envoy's file watch reacts to.
pub struct LdsEnvoy {
    child: Child,
    admin: SocketAddr,
    pub listener: SocketAddr,
    lds_path: PathBuf,
    log_path: PathBuf,
    /// The module's path, as the listener names it.
    wasm: String,
    version: u32,
    dir: TempDir,
}

impl Drop for LdsEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The listener as an LDS resource: the harness's listener (bcsp-guard, then the router to
/// the recording upstream), with `filter` as the plugin configuration.
fn lds_document(version: u32, filter: &Value, wasm: &str) -> String {
    let doc = json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
            "name": "ingress",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "ingress",
                    "use_remote_address": true,
                    "preserve_external_request_id": true,
                    "route_config": {"virtual_hosts": [{
                        "name": "bcsp", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "bcsp"}}]
                    }]},
                    "http_filters": [
                        {"name": "envoy.filters.http.wasm", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": {
                                "name": "bcsp_guard",
                                "root_id": "bcsp_guard",
                                "fail_open": false,
                                "vm_config": {
                                    "vm_id": "bcsp_guard",
                                    "runtime": "envoy.wasm.runtime.v8",
                                    "code": {"local": {"filename": wasm}}
                                },
                                "configuration": {
                                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                                    "value": filter.to_string()
                                }
                            }
                        }},
                        {"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                        }}
                    ]
                }
            }]}]
        }]
    });
    // JSON is a YAML flow document: Envoy parses `lds.yaml` as YAML.
    serde_json::to_string_pretty(&doc).expect("serialise the LDS document")
}

/// Write `text` to a temp file beside `path`, then rename it over `path`: Envoy never reads
/// a half-written file, and the rename is the move event its watch reacts to.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write the new listener file");
    std::fs::rename(&tmp, path).expect("rename it over the watched file");
}

fn admin_text(admin: SocketAddr, path: &str) -> Option<String> {
    get(admin, path, &[])
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.text())
}

impl LdsEnvoy {
    pub fn start(filter: &Value, upstream: SocketAddr) -> LdsEnvoy {
        let wasm = wasm_path();
        let envoy = envoy_binary();
        let dir = TempDir::new("rotation-lds");
        let lds_path = dir.path().join("lds.yaml");
        let config_path = dir.path().join("envoy.yaml");
        let log_path = dir.path().join("envoy.log");
        let admin_path = dir.path().join("admin.addr");
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let bootstrap = format!(
            r#"node: {{id: bcsp-guard-rotation, cluster: bcsp-guard-rotation}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
dynamic_resources:
  lds_config:
    resource_api_version: V3
    path_config_source: {{path: {lds}}}
static_resources:
  clusters:
  - name: bcsp
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: bcsp
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {up_ip}, port_value: {up_port}}}}}}}
"#,
            lds = q(&lds_path.display().to_string()),
            up_ip = q(&upstream.ip().to_string()),
            up_port = upstream.port(),
        );
        std::fs::write(&config_path, bootstrap).expect("write envoy.yaml");
        let wasm = wasm.display().to_string();
        replace_file(&lds_path, &lds_document(1, filter, &wasm));
        let stderr = std::fs::File::create(dir.path().join("envoy.stderr")).expect("stderr");
        let child = Command::new(&envoy)
            .arg("--config-path")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log_path)
            .args(["-l", "info", "--disable-hot-restart"])
            // Two workers, so each update reaches more than one; replaced filter chains drain
            // in 1 s (default 600 s), so the test also sees Envoy after the old ones are gone.
            .args(["--concurrency", "2", "--drain-time-s", "1"])
            .args(["--file-flush-interval-msec", "50"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", envoy.display()));
        let mut me = LdsEnvoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            lds_path,
            log_path,
            wasm,
            version: 1,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Admin address, then LIVE (which with LDS means the first listener is warm).
        loop {
            if let Ok(Some(st)) = me.child.try_wait() {
                panic!("Envoy exited during startup ({st}):\n{}", me.log());
            }
            if let Some(a) = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                me.admin = a;
                if admin_text(a, "/ready").is_some_and(|t| t.trim() == "LIVE") {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not LIVE within 20 s:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me.listener = me.listener_addr();
        me
    }

    /// Envoy's log file and stderr.
    pub fn full_log(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        s += &std::fs::read_to_string(self.dir.path().join("envoy.stderr")).unwrap_or_default();
        s
    }

    /// The last 40 lines of [`Self::full_log`], for failure messages.
    fn log(&self) -> String {
        let s = self.full_log();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The operator's config push: a new listener version with `filter`; returns once Envoy
    /// has it active (not warming) and the listener kept its address.
    pub fn push(&mut self, filter: &Value) {
        let before = self.envoy_stat("listener_manager.lds.update_success");
        self.version += 1;
        replace_file(
            &self.lds_path,
            &lds_document(self.version, filter, &self.wasm),
        );
        let want = filter.to_string();
        let deadline = Instant::now() + WAIT;
        loop {
            let updated = self.envoy_stat("listener_manager.lds.update_success") > before;
            let warming = self.envoy_stat("listener_manager.total_listeners_warming");
            if updated && warming == 0 && self.active_filter_config().as_ref() == Some(&want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "listener version {} not active within {WAIT:?} (update_success {before} → {}, \
                 lds.update_rejected {}):\n{}",
                self.version,
                self.envoy_stat("listener_manager.lds.update_success"),
                self.envoy_stat("listener_manager.lds.update_rejected"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            self.listener_addr(),
            self.listener,
            "the listener moved: clients would lose it"
        );
    }

    /// The bcsp-guard configuration of the active (not warming) `ingress` listener, per
    /// `/config_dump`. (Its `version_info` is no help: an in-place filter-chain update keeps
    /// the version the listener was first added with; `lds.version_text` has the new one.)
    fn active_filter_config(&self) -> Option<String> {
        let dump = admin_text(self.admin, "/config_dump?resource=dynamic_listeners")?;
        let v: Value = serde_json::from_str(&dump).ok()?;
        let listener = v["configs"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "ingress" && c["warming_state"].is_null())?;
        let hcm = &listener["active_state"]["listener"]["filter_chains"][0]["filters"][0];
        hcm["typed_config"]["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .map(str::to_owned)
    }

    fn listener_addr(&self) -> SocketAddr {
        let text = admin_text(self.admin, "/listeners?format=json").expect("admin /listeners");
        let v: Value = serde_json::from_str(&text).expect("/listeners JSON");
        let sa = &v["listener_statuses"][0]["local_address"]["socket_address"];
        let ip = sa["address"].as_str().and_then(|a| a.parse().ok());
        let port = sa["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok());
        match (ip, port) {
            (Some(ip), Some(port)) => SocketAddr::new(ip, port),
            _ => panic!("no listener address in {v}"),
        }
    }

    /// An Envoy stat from `/stats` (`name: value`) as text; "" when absent.
    pub fn envoy_stat_text(&self, name: &str) -> String {
        let text = admin_text(self.admin, "/stats").unwrap_or_default();
        text.lines()
            .find_map(|l| Some(l.strip_prefix(name)?.strip_prefix(": ")?.trim().to_owned()))
            .unwrap_or_default()
    }

    /// A numeric Envoy stat; 0 when absent.
    pub fn envoy_stat(&self, name: &str) -> u64 {
        self.envoy_stat_text(name).parse().unwrap_or(0)
    }

    /// A plugin counter as a user sees it in `/stats/prometheus`; None while not defined.
    pub fn plugin_counter(&self, stat: &str) -> Option<u64> {
        let prom = admin_text(self.admin, "/stats/prometheus").unwrap_or_default();
        prom_counter(&prom, &prom_name(stat))
    }
}
