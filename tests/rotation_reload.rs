//! Key rotation, end to end: docs/OPERATIONS.md "Rotating a key without downtime", step by step, on
//! a real Envoy that reads its listener from a file (filesystem LDS) while a client keeps
//! sending valid requests. Every config change is a listener update — what an operator's
//! config push does — and not one request of the stream may fail.

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OLD_ID: &str = "genesys-2026q4";
const NEW_ID: &str = "genesys-2027q1";
const OLD_SECRET: &str = "k3y-OLD-rotation-4f1a9c2e7b";
const NEW_SECRET: &str = "k3y-NEW-rotation-8d3e5a1c0f";
/// Pause between two requests of the stream.
const STREAM_EVERY: Duration = Duration::from_millis(20);
/// Bound on every wait for Envoy (a reload, a counter).
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Envoy with its listener in a watched file
// ---------------------------------------------------------------------------------------------

/// Envoy whose only listener comes from `<dir>/lds.yaml` (clusters are static). `push`
/// replaces that file atomically (write a temp file, rename it over), which is the move event
/// Envoy's file watch reacts to.
struct LdsEnvoy {
    child: Child,
    admin: SocketAddr,
    listener: SocketAddr,
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
    fn start(filter: &Value, upstream: SocketAddr) -> LdsEnvoy {
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
    fn full_log(&self) -> String {
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
    fn push(&mut self, filter: &Value) {
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
    fn envoy_stat_text(&self, name: &str) -> String {
        let text = admin_text(self.admin, "/stats").unwrap_or_default();
        text.lines()
            .find_map(|l| Some(l.strip_prefix(name)?.strip_prefix(": ")?.trim().to_owned()))
            .unwrap_or_default()
    }

    /// A numeric Envoy stat; 0 when absent.
    fn envoy_stat(&self, name: &str) -> u64 {
        self.envoy_stat_text(name).parse().unwrap_or(0)
    }

    /// A plugin counter as a user sees it in `/stats/prometheus`; None while not defined.
    fn plugin_counter(&self, stat: &str) -> Option<u64> {
        let prom = admin_text(self.admin, "/stats/prometheus").unwrap_or_default();
        prom_counter(&prom, &prom_name(stat))
    }
}

// ---------------------------------------------------------------------------------------------
// The client: a steady stream of valid requests with Genesys's current secret
// ---------------------------------------------------------------------------------------------

/// What Genesys's credential field holds.
const USING_OLD: u8 = 0;
const USING_NEW: u8 = 1;

#[derive(Clone, Debug)]
struct Sent {
    seq: u64,
    /// The step of the walk-through that was under way.
    step: char,
    secret: u8,
    /// Status, or the I/O error.
    result: Result<u16, String>,
}

struct Stream {
    stop: Arc<AtomicBool>,
    secret: Arc<AtomicU8>,
    step: Arc<Mutex<char>>,
    sent: Arc<Mutex<Vec<Sent>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn start(addr: SocketAddr) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let secret = Arc::new(AtomicU8::new(USING_OLD));
        let step = Arc::new(Mutex::new('a'));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (s, c, p, log) = (stop.clone(), secret.clone(), step.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = 0u64;
            while !s.load(Ordering::SeqCst) {
                seq += 1;
                let using = c.load(Ordering::SeqCst);
                let step = *p.lock().unwrap();
                let value = if using == USING_NEW {
                    NEW_SECRET
                } else {
                    OLD_SECRET
                };
                let result = request("GET", &format!("/bots?seq={seq}"))
                    .to(addr)
                    .header("x-bcsp-key", value)
                    .header("x-request-id", &format!("stream-{seq}"))
                    .try_send()
                    .map(|r| r.status)
                    .map_err(|e| e.to_string());
                log.lock().unwrap().push(Sent {
                    seq,
                    step,
                    secret: using,
                    result,
                });
                std::thread::sleep(STREAM_EVERY);
            }
        });
        Stream {
            stop,
            secret,
            step,
            sent,
            thread: Some(thread),
        }
    }

    fn step(&self, step: char) {
        *self.step.lock().unwrap() = step;
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Requests completed so far with `secret`.
    fn completed_with(&self, secret: u8) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.secret == secret)
            .count()
    }

    /// Bounded wait until `n` more requests completed with `secret`.
    fn wait_for(&self, secret: u8, n: usize) {
        let target = self.completed_with(secret) + n;
        let deadline = Instant::now() + WAIT;
        while self.completed_with(secret) < target {
            assert!(
                Instant::now() < deadline,
                "the stream stalled: {:?}",
                self.sent().last()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("stream thread panicked");
        }
        self.sent()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bounded wait until `cond` holds; `what` names it in the failure.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accepted(id: &str) -> String {
    format!("bcsp_guard.key.{id}.accepted")
}

// ---------------------------------------------------------------------------------------------
// The walk-through
// ---------------------------------------------------------------------------------------------

#[test]
fn rotating_a_key_by_listener_updates_loses_no_request() {
    let start = Instant::now();
    let t = now();
    let old_key = with(
        key(OLD_ID, OLD_SECRET),
        json!({"not_before": rfc3339(t - 90 * 86_400)}),
    );
    let upstream = Recorder::start();

    // (a) The old key only; Genesys sends the old secret, steadily.
    let mut envoy = LdsEnvoy::start(&json!({"keys": [old_key.clone()]}), upstream.addr());
    let updates_at_start = envoy.envoy_stat("listener_manager.lds.update_success");
    let stream = Stream::start(envoy.listener);
    // Genesys keeps connections open: one opened now, before any update.
    let mut held = Connection::open(envoy.listener, None);
    let reply = held.send(&request("GET", "/held").header("x-bcsp-key", OLD_SECRET));
    assert_eq!(reply.status, 200, "{}", reply.text());
    stream.wait_for(USING_OLD, 10);
    let old_before_reload = envoy.plugin_counter(&accepted(OLD_ID)).unwrap_or(0);
    assert!(old_before_reload >= 10, "{old_before_reload}");
    assert_eq!(envoy.plugin_counter(&accepted(NEW_ID)), None);

    // (b) Add the new key's hash, valid from a second ago → reload.
    stream.step('b');
    let new_key = with(
        key(NEW_ID, NEW_SECRET),
        json!({"not_before": rfc3339(now() - 1)}),
    );
    envoy.push(&json!({"keys": [old_key.clone(), new_key.clone()]}));
    // What the operator sees once the new config is live: the new key's counter, at 0, and
    // the old key's counter carried over the update (not reset).
    wait_until("key.<new>.accepted is defined", || {
        envoy.plugin_counter(&accepted(NEW_ID)).is_some()
    });
    assert_eq!(envoy.plugin_counter(&accepted(NEW_ID)), Some(0));
    // Envoy applies a listener update to new connections; one opened before it keeps the
    // old config until it drains. So the operator waits for the drain before step (c).
    let reply = held.send(&request("GET", "/held").header("x-bcsp-key", OLD_SECRET));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = held.send(&request("GET", "/held").header("x-bcsp-key", NEW_SECRET));
    assert_eq!(
        reply.status,
        401,
        "a connection older than the update already has the new key: {}",
        reply.text()
    );
    drop(held);
    wait_until("the replaced filter chain drains", || {
        envoy.envoy_stat("listener_manager.total_filter_chains_draining") == 0
    });
    stream.wait_for(USING_OLD, 10);
    let old_after_reload = envoy.plugin_counter(&accepted(OLD_ID)).unwrap_or(0);
    assert!(
        old_after_reload > old_before_reload,
        "key.{OLD_ID}.accepted went from {old_before_reload} to {old_after_reload} over a listener update"
    );

    // (c) Genesys's credential field is updated: the client now sends the new secret.
    stream.step('c');
    stream.secret.store(USING_NEW, Ordering::SeqCst);
    stream.wait_for(USING_NEW, 1);

    // (d) Traffic moves: key.<new>.accepted rises, key.<old>.accepted stands still.
    stream.step('d');
    let old_settled = envoy.plugin_counter(&accepted(OLD_ID)).unwrap_or(0);
    let new_then = envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0);
    assert!(
        new_then >= 1,
        "the first new-secret request was not counted"
    );
    wait_until("key.<new>.accepted rises by 10", || {
        envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0) >= new_then + 10
    });
    assert_eq!(
        envoy.plugin_counter(&accepted(OLD_ID)),
        Some(old_settled),
        "key.{OLD_ID}.accepted still rises after the switch"
    );

    // (e) Retire the old key: not_after = now → reload. Its secret is now refused.
    stream.step('e');
    let old_expired = with(old_key.clone(), json!({"not_after": rfc3339(now())}));
    envoy.push(&json!({"keys": [old_expired, new_key.clone()]}));
    let expired_before = envoy.plugin_counter("bcsp_guard.denied.expired_key");
    let id = rid("retired");
    let reply = request("GET", "/bots")
        .to(envoy.listener)
        .header("x-bcsp-key", OLD_SECRET)
        .header("x-request-id", &id)
        .send();
    assert_unauthenticated(&reply, &id, "x-bcsp-key", &[OLD_SECRET, NEW_SECRET]);
    assert_eq!(
        envoy.plugin_counter("bcsp_guard.denied.expired_key"),
        Some(expired_before.unwrap_or(0) + 1),
        "the old secret is refused as outside its window"
    );
    stream.wait_for(USING_NEW, 10);

    // (f) Remove the old key → reload. The stream keeps going on the new key.
    stream.step('f');
    envoy.push(&json!({"keys": [new_key.clone()]}));
    let id = rid("removed");
    let reply = request("GET", "/bots")
        .to(envoy.listener)
        .header("x-bcsp-key", OLD_SECRET)
        .header("x-request-id", &id)
        .send();
    assert_unauthenticated(&reply, &id, "x-bcsp-key", &[OLD_SECRET, NEW_SECRET]);
    stream.wait_for(USING_NEW, 10);
    // Once the replaced filter chains have drained (--drain-time-s 1), what the operator
    // sees: the removed key's counter frozen at its last value (the plugin VM, and the
    // metric it defined, outlive the listener versions), the new key's still rising.
    wait_until("the replaced filter chains drain", || {
        envoy.envoy_stat("listener_manager.total_filter_chains_draining") == 0
    });
    let new_drained = envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0);
    stream.wait_for(USING_NEW, 5);
    assert!(envoy.plugin_counter(&accepted(NEW_ID)).unwrap_or(0) >= new_drained + 5);
    assert_eq!(
        envoy.plugin_counter(&accepted(OLD_ID)),
        Some(old_settled),
        "key.{OLD_ID}.accepted after its key was removed"
    );
    let sent = stream.finish();

    // Not one request of the stream failed.
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.result != Ok(200)).collect();
    let per_step = |step: char| sent.iter().filter(|s| s.step == step).count();
    eprintln!(
        "rotation stream: {} requests ({} old secret, {} new secret); per step a={} b={} c={} d={} \
         e={} f={}; failed {}; {:?} in all",
        sent.len(),
        sent.iter().filter(|s| s.secret == USING_OLD).count(),
        sent.iter().filter(|s| s.secret == USING_NEW).count(),
        per_step('a'),
        per_step('b'),
        per_step('c'),
        per_step('d'),
        per_step('e'),
        per_step('f'),
        failed.len(),
        start.elapsed(),
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rotation: {:?}",
        failed.len(),
        sent.len(),
        failed.iter().take(10).collect::<Vec<_>>()
    );

    // Three listener updates really happened, in place, on the same address.
    let updates = envoy.envoy_stat("listener_manager.lds.update_success") - updates_at_start;
    assert_eq!(updates, 3, "LDS updates after startup");
    let modified = envoy.envoy_stat("listener_manager.listener_modified")
        + envoy.envoy_stat("listener_manager.listener_in_place_updated");
    assert!(modified >= 3, "listener updates applied: {modified}");
    assert_eq!(envoy.envoy_stat("listener_manager.lds.update_rejected"), 0);
    assert_eq!(
        envoy.envoy_stat_text("listener_manager.lds.version_text"),
        "\"4\""
    );

    // The upstream saw each stream request once, stamped with the key its secret belongs to,
    // and never a credential.
    let seen = upstream.requests();
    for s in &sent {
        let target = format!("/bots?seq={}", s.seq);
        let hits: Vec<&Seen> = seen.iter().filter(|r| r.target == target).collect();
        assert_eq!(hits.len(), 1, "upstream saw {target} {} times", hits.len());
        let want = if s.secret == USING_NEW {
            NEW_ID
        } else {
            OLD_ID
        };
        assert_eq!(
            hits[0].headers_named("x-bcsp-key-id"),
            vec![want],
            "seq {} (step {})",
            s.seq,
            s.step
        );
        assert!(hits[0].headers_named("x-bcsp-key").is_empty());
    }
    let others: Vec<&str> = seen
        .iter()
        .filter(|r| !r.target.starts_with("/bots?seq="))
        .map(|r| r.target.as_str())
        .collect();
    assert_eq!(
        others,
        ["/held", "/held"],
        "only the admitted requests of the held connection, none of the refused ones"
    );
    for (step, secret) in [('a', USING_OLD), ('b', USING_OLD), ('d', USING_NEW)] {
        assert!(
            sent.iter().any(|s| s.step == step && s.secret == secret),
            "no request in step {step}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    // Four configs were loaded; none of them put a secret or a hash in the log.
    std::thread::sleep(Duration::from_millis(200));
    let log = envoy.full_log();
    for secret in [OLD_SECRET, NEW_SECRET] {
        let hash = sha256_hex(secret);
        for leak in [secret.to_owned(), hash.clone(), hash.to_uppercase()] {
            assert!(!log.contains(&leak), "Envoy's log holds {leak}");
        }
    }
}
