//! The Cloud Run sidecar (deploy/cloud-run/sidecar/): admin stays off TCP (the BCSP container
//! shares localhost), and the shipped config, run in a real Envoy, admits Genesys behind Cloud
//! Run's front end and nobody else.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    assert_no_problems, check, last_lines, read_repo_file, read_yaml, AdminAddress, EnvoyDoc,
};
use crate::harness::{self, envoy_binary, sha256_hex, wasm_path, TempDir};

#[test]
fn cloud_run_sidecar_admin_is_not_on_a_tcp_port() {
    let rel = "deploy/cloud-run/sidecar/envoy.yaml";
    let v = read_yaml(rel);
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
    let svc = read_yaml("deploy/cloud-run/sidecar/service.yaml");
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
    assert_no_problems("Cloud Run sidecar admin", problems);
}

/// `GET path` over a unix socket; the raw reply, or "" when nothing answers yet.
fn http_get_over_unix_socket(socket: &Path, path: &str) -> String {
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
fn free_loopback_port() -> u16 {
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
    let listen = free_loopback_port();
    let doc = EnvoyDoc::load(rel);
    let AdminAddress::Pipe(shipped_socket) = doc.admin() else {
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
    let text = read_repo_file(rel);
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
                last_lines(&std::fs::read_to_string(&envoy.log).unwrap_or_default(), 20)
            );
        }
        // Admin answers on the shipped unix socket (moved into the temp dir).
        if http_get_over_unix_socket(&admin_socket, "/ready").starts_with("HTTP/1.1 200") {
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
    assert_no_problems("sidecar config behind Cloud Run's front end", problems);
}
