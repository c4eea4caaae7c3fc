//! The `bcsp-guard` binary, run as an operator would: every subcommand, good and bad input.

use bcsp_guard::base64::{self, Alphabet};
use bcsp_guard::policy::keys::SecretHash;
use bcsp_guard::policy::webhook::WebhookSecret;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn cli(args: &[&str]) -> Run {
    cli_with_stdin(args, None)
}

fn cli_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bcsp-guard"))
        .args(args)
        .env_remove("OM_WEBHOOK_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bcsp-guard");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A file in a fresh temp dir, removed with the dir when the test passes.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "bcsp-guard-cli-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const SECRET: &str = "cli-suite-secret-0b9e7d";

fn hash(s: &str) -> String {
    SecretHash::of(s.as_bytes()).to_hex()
}

// ---- keygen --------------------------------------------------------------------------------

#[test]
fn keygen_makes_a_fresh_256_bit_secret_and_the_entry_that_admits_it() {
    let r = cli(&[
        "keygen",
        "--id",
        "genesys-2027q1",
        "--not-before",
        "2027-01-01T00:00:00Z",
        "--not-after",
        "2027-04-15T00:00:00Z",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    let secret = out["secret"].as_str().unwrap();
    let bytes = base64::decode(secret.as_bytes(), Alphabet::Url).expect("base64url");
    assert_eq!(bytes.len(), 32, "256 bits");
    assert_eq!(out["header"], "x-bcsp-key");
    assert_eq!(out["value"], secret);
    assert_eq!(out["key"]["sha256"], hash(secret));
    assert_eq!(out["key"]["id"], "genesys-2027q1");
    assert_eq!(out["key"]["not_after"], "2027-04-15T00:00:00Z");

    let again = cli(&["keygen", "--id", "x", "--json"]);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_ne!(again["secret"], out["secret"], "every secret is fresh");

    // The entry is a valid configuration as it stands.
    let dir = Dir::new("keygen");
    let cfg = dir.file(
        "cfg.json",
        &json!({"keys": [out["key"].clone()]}).to_string(),
    );
    let c = cli(&["check", &cfg]);
    assert_eq!(c.code, 0, "{}", c.all());
    assert!(!c.all().contains(secret), "check never prints a secret");
}

#[test]
fn keygen_prints_the_credential_field_and_a_bearer_value_with_a_scheme() {
    let r = cli(&[
        "keygen",
        "--id",
        "genesys-bearer",
        "--header",
        "Authorization",
        "--scheme",
        "Bearer",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("name:  authorization"), "{}", r.stdout);
    assert!(r.stdout.contains("value: Bearer "), "{}", r.stdout);
    assert!(r.stdout.contains(r#""scheme":"Bearer""#), "{}", r.stdout);
}

#[test]
fn keygen_refuses_bad_input_with_the_filters_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["keygen"], "--id is required"),
        (
            &["keygen", "--id", "bad id"],
            "keys[0].id: must be 1-64 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            &["keygen", "--id", "k", "--not-after", "soon"],
            "keys[0].not_after: expected an RFC 3339 timestamp",
        ),
        (
            &[
                "keygen",
                "--id",
                "k",
                "--not-before",
                "2027-02-01T00:00:00Z",
                "--not-after",
                "2027-01-01T00:00:00Z",
            ],
            "keys[0].not_after: must be later than not_before",
        ),
        (
            &["keygen", "--id", "k", "--header", "host"],
            "keys[0].header: `host` is reserved",
        ),
        (
            &["keygen", "--id", "k", "--colour"],
            "unknown option --colour",
        ),
        (&["keygen", "--id"], "--id needs a value"),
    ];
    for (args, want) in cases {
        let r = cli(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains(want),
            "{args:?}\n  got: {}\n  want: {want}",
            r.stderr
        );
        assert!(
            r.stdout.is_empty(),
            "no secret is printed on error: {}",
            r.stdout
        );
    }
}

// ---- check ---------------------------------------------------------------------------------

#[test]
fn check_accepts_a_valid_config_and_reports_with_the_filters_summary_and_warnings() {
    let dir = Dir::new("check-ok");
    let soon = bcsp_guard::policy::time::format_rfc3339(
        (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 5 * 86_400)
            * 1000,
    );
    let cfg = dir.file(
        "cfg.json",
        &json!({
            "keys": [{"id": "k1", "sha256": hash(SECRET), "not_after": soon}],
            "webhooks": [{"path_prefix": "/om", "secret": "inline-secret-0123456789"}],
        })
        .to_string(),
    );
    let r = cli(&["check", &cfg]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(": OK"), "{}", r.stdout);
    assert!(
        r.stdout.contains("bcsp-guard policy: keys [k1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("warning: key k1 expires in 4 days"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("warning: webhooks[0] (/om) has an inline secret"),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains("inline-secret-0123456789") && !r.all().contains(&hash(SECRET)));
}

#[test]
fn check_refuses_with_exactly_the_filters_message_and_exit_1() {
    let dir = Dir::new("check-bad");
    let cases = [
        (
            json!({"keys": [{"id": "k1", "sha256": "abc"}]}).to_string(),
            "keys[0].sha256: expected 64 hex characters (SHA-256 of the secret)",
        ),
        (
            json!({"keys": [{"id": "k1", "sha256": hash(SECRET)}], "routes": [{"method": "get", "path": "/a"}]})
                .to_string(),
            "routes[0].method: `get` must be an upper-case HTTP method such as GET",
        ),
        (
            json!({"keys": [{"id": "k1", "sha256": hash(SECRET)}],
                   "webhooks": [{"path_prefix": "/om", "secret_env": "OM_WEBHOOK_SECRET"}]})
            .to_string(),
            "webhooks[0].secret_env: environment variable `OM_WEBHOOK_SECRET` is not set in the Wasm VM",
        ),
        ("{\"keys\": [".to_owned(), "keys: EOF while parsing a list"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let f = dir.file(&format!("bad{i}.json"), text);
        let r = cli(&["check", &f]);
        assert_eq!(r.code, 1, "{text}: {}", r.all());
        let line = format!("{f}: bcsp-guard: invalid configuration: {want}");
        assert!(r.stderr.contains(&line), "got:  {}\nwant: {line}", r.stderr);
        // The very text the filter logs in Envoy.
        if let Err(e) = bcsp_guard::config::compile_with_env(text.as_bytes(), &|_| None) {
            assert!(r.stderr.contains(&e.to_string()), "{}", r.stderr);
        }
    }
    let r = cli(&["check", "/nonexistent/cfg.json"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot read /nonexistent/cfg.json"),
        "{}",
        r.stderr
    );
    let r = cli(&["check"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("is required"), "{}", r.stderr);
    // --env supplies a VM variable.
    let f = dir.file("env.json", cases[2].0.as_str());
    let r = cli(&[
        "check",
        &f,
        "--env",
        "OM_WEBHOOK_SECRET=from-the-command-line-123",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("from-the-command-line-123"));
}

/// An Envoy YAML around `filter`; `flag` goes into the Wasm plugin config (see [`FLAG`]).
fn envoy_yaml(filter: &Value, env: &str, flag: &str, hcm: &str) -> String {
    let value = serde_json::to_string(&filter.to_string()).unwrap();
    format!(
        r#"static_resources:
  listeners:
  - name: genesys
    address: {{socket_address: {{address: 0.0.0.0, port_value: 8080}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{hcm}          route_config: {{virtual_hosts: [{{name: b, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: bcsp}}}}]}}]}}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: bcsp_guard
{flag}                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: /etc/envoy/bcsp_guard.wasm}}}}
{env}                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {value}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

const SHIPPED_HCM: &str = "          use_remote_address: true\n          normalize_path: true\n          merge_slashes: true\n          path_with_escaped_slashes_action: REJECT_REQUEST\n";
const FLAG: &str = "                allow_on_headers_stop_iteration: true\n";
const VM_ENV: &str = "                  environment_variables:\n                    key_values: {OM_WEBHOOK_SECRET: \"yaml-provided-secret-0123\"}\n";

#[test]
fn check_finds_the_filter_in_an_envoy_yaml_with_its_vm_environment() {
    let dir = Dir::new("check-yaml");
    let filter = json!({
        "keys": [{"id": "k1", "sha256": hash(SECRET)}],
        "allow_cidrs": ["34.200.73.250/32"],
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
        "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_WEBHOOK_SECRET"}],
    });
    let f = dir.file(
        "envoy.yaml",
        &envoy_yaml(&filter, VM_ENV, FLAG, SHIPPED_HCM),
    );
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: OK"),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains("yaml-provided-secret-0123"));

    // The same filter without the flag: every delivery would be refused.
    let f = dir.file("noflag.yaml", &envoy_yaml(&filter, VM_ENV, "", SHIPPED_HCM));
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(
            "webhooks need allow_on_headers_stop_iteration: true in this filter's Wasm plugin config"
        ),
        "{}",
        r.stderr
    );

    // Without the connection-manager settings: spoofable client address (error), warnings.
    let f = dir.file("nohcm.yaml", &envoy_yaml(&filter, VM_ENV, FLAG, ""));
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("use_remote_address is not true"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout
            .contains("set normalize_path: true and merge_slashes: true"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("path_with_escaped_slashes_action: REJECT_REQUEST"),
        "{}",
        r.stdout
    );

    // host_env_keys: Envoy's own environment, which the CLI cannot see.
    let host_env = "                  environment_variables:\n                    host_env_keys: [OM_WEBHOOK_SECRET]\n";
    let f = dir.file(
        "hostenv.yaml",
        &envoy_yaml(&filter, host_env, FLAG, SHIPPED_HCM),
    );
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout
            .contains("OM_WEBHOOK_SECRET comes from Envoy's own environment"),
        "{}",
        r.stdout
    );

    // A broken filter config inside the YAML: the filter's message, with where it is.
    let bad = json!({"keys": [{"id": "k1", "sha256": hash(SECRET)}], "lockout": {"cooldown_s": 0}});
    let f = dir.file("bad.yaml", &envoy_yaml(&bad, "", "", SHIPPED_HCM));
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("http_filters[0]: bcsp-guard: invalid configuration: lockout.cooldown_s: must be 1 to 86400, got 0"),
        "{}",
        r.stderr
    );

    let f = dir.file("none.yaml", "static_resources:\n  listeners: []\n");
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no bcsp-guard filter"), "{}", r.stderr);
    let f = dir.file("junk.yaml", "key: [unclosed\n");
    let r = cli(&["check", &f]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not JSON and not valid YAML"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_accepts_the_shipped_local_envoy_config() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../envoy.yaml");
    let r = cli(&["check", path]);
    assert_eq!(r.code, 0, "{}", r.all());
}

// ---- ipranges ------------------------------------------------------------------------------

const GENESYS: &str = r#"{"entities":[
  {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-east-1","direction":"outbound"},
  {"cidr":"52.5.17.0/24","service":"bot-connector","region":"us-east-1"},
  {"cidr":"3.120.0.0/14","service":"bot-connector","region":"eu-central-1"},
  {"cidr":"99.0.0.0/8","service":"web-services","region":"us-east-1"}]}"#;

#[test]
fn ipranges_makes_a_snippet_of_the_selected_entries_that_the_filter_accepts() {
    let dir = Dir::new("ipranges");
    let saved = dir.file("ipranges.json", GENESYS);
    let r = cli(&["ipranges", &saved, "--region", "us-east-1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let snippet: Value = serde_json::from_str(&r.stdout).unwrap();
    let ranges = &snippet["genesys_ip_ranges"];
    let cidrs: Vec<&str> = ranges["document"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cidr"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["34.200.73.250/32", "52.5.17.0/24"]);
    assert_eq!(
        ranges["document"]["entities"][0]["direction"], "outbound",
        "entries verbatim"
    );
    assert_eq!(ranges["regions"], json!(["us-east-1"]));
    assert_eq!(ranges["services"], json!(["bot-connector"]));
    assert!(r.stderr.contains("selected 2 of 4 entries"), "{}", r.stderr);

    // Merged into a configuration, the filter accepts it.
    let mut cfg = json!({"keys": [{"id": "k1", "sha256": hash(SECRET)}]});
    cfg["genesys_ip_ranges"] = ranges.clone();
    let f = dir.file("cfg.json", &cfg.to_string());
    let c = cli(&["check", &f]);
    assert_eq!(c.code, 0, "{}", c.all());
    assert!(
        c.stdout.contains("2 CIDRs (2 from genesys_ip_ranges"),
        "{}",
        c.stdout
    );

    // Standard input, several regions and services.
    let r = cli_with_stdin(
        &[
            "ipranges",
            "-",
            "--region",
            "us-east-1",
            "--region",
            "eu-central-1",
            "--service",
            "bot-connector",
            "--service",
            "web-services",
        ],
        Some(GENESYS.as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("selected 4 of 4 entries"), "{}", r.stderr);
}

#[test]
fn ipranges_refuses_bad_input_clearly() {
    let dir = Dir::new("ipranges-bad");
    let saved = dir.file("ipranges.json", GENESYS);
    let junk = dir.file("junk.json", "<html>");
    let wrong_shape = dir.file("shape.json", r#"{"items": []}"#);
    let bad_cidr = dir.file(
        "cidr.json",
        r#"{"entities":[{"cidr":"10.0.0.1/8","service":"bot-connector","region":"r1"}]}"#,
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ipranges", &saved], "--region is required"),
        (
            vec!["ipranges", &saved, "--region", "ap-south-9"],
            "selects no entries for services [bot-connector] in regions [ap-south-9] (Genesys would be locked out); regions the document has for these services: [eu-central-1, us-east-1]",
        ),
        (vec!["ipranges", &junk, "--region", "r1"], "not JSON"),
        (vec!["ipranges", &wrong_shape, "--region", "r1"], "not a Genesys ipranges response"),
        (
            vec!["ipranges", &bad_cidr, "--region", "r1"],
            "document.entities[0].cidr: `10.0.0.1/8`: address has bits set beyond the prefix length",
        ),
        (vec!["ipranges", "--region", "r1"], "is required"),
    ];
    for (args, want) in cases {
        let r = cli(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains(want),
            "{args:?}\n  got: {}\n  want: {want}",
            r.stderr
        );
    }
}

// ---- explain -------------------------------------------------------------------------------

fn explain_config(dir: &Dir) -> String {
    dir.file(
        "cfg.json",
        &json!({
            "keys": [{"id": "genesys-a", "sha256": hash(SECRET), "not_after": "2030-01-01T00:00:00Z"}],
            "allow_cidrs": ["34.200.73.250/32"],
            "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
            "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_WEBHOOK_SECRET"}],
            "upstream_token": {"cluster": "gcp_metadata", "audience": "https://bcsp.a.run.app"},
        })
        .to_string(),
    )
}

const OM: &str = "OM_WEBHOOK_SECRET=explain-webhook-secret-42";

#[test]
fn explain_says_what_the_filter_would_do_and_why_without_echoing_secrets() {
    let dir = Dir::new("explain");
    let cfg = explain_config(&dir);
    let key_header = format!("x-bcsp-key: {SECRET}");
    let base = [
        "explain",
        cfg.as_str(),
        "--env",
        OM,
        "--client-ip",
        "34.200.73.250",
    ];
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        cli(&a)
    };

    let r = run(&[
        "--method",
        "GET",
        "--path",
        "/botconnector/bots/b1",
        "--header",
        &key_header,
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    for want in [
        "verdict: forwarded to the upstream",
        "why: key genesys-a matched (header x-bcsp-key), valid until 2030-01-01T00:00:00Z",
        "why: route GET /botconnector/bots/*",
        "removed x-bcsp-key",
        "set     x-bcsp-key-id: genesys-a",
        "set     authorization: Bearer <Google identity token for https://bcsp.a.run.app>",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing {want:?} in:\n{}",
            r.stdout
        );
    }

    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            vec![
                "--method",
                "GET",
                "--path",
                "/botconnector/bots",
                "--header",
                "x-bcsp-key: wrong",
            ],
            "verdict: refused with 401 unauthenticated",
            "why: denied 401 (credential matches no key) client=34.200.73.250",
        ),
        (
            vec![
                "--method",
                "GET",
                "--path",
                "/botconnector/bots",
                "--header",
                &key_header,
                "--at",
                "2030-06-01T00:00:00Z",
            ],
            "verdict: refused with 401 unauthenticated",
            "(key outside its validity window)",
        ),
        (
            vec![
                "--method",
                "GET",
                "--path",
                "/admin",
                "--header",
                &key_header,
            ],
            "verdict: refused with 404 not_found",
            "no route for GET /admin",
        ),
        (
            vec![
                "--method",
                "DELETE",
                "--path",
                "/botconnector/bots",
                "--header",
                &key_header,
            ],
            "allow: GET",
            "verdict: refused with 405 method_not_allowed",
        ),
        (
            vec![
                "--method",
                "GET",
                "--path",
                "/botconnector/bots/../admin",
                "--header",
                &key_header,
            ],
            "verdict: refused with 404 not_found",
            "path has a . or .. segment",
        ),
        (
            vec![
                "--method",
                "POST",
                "--path",
                "/botconnector/messages",
                "--header",
                &key_header,
                "--body",
                "{}",
            ],
            "verdict: refused with 415 unsupported_media_type",
            "POST body is not JSON",
        ),
    ];
    for (extra, want1, want2) in cases {
        let r = run(&extra);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.all());
        assert!(
            r.stdout.contains(want1) && r.stdout.contains(want2),
            "{extra:?}:\n{}",
            r.stdout
        );
        assert!(
            !r.all().contains(SECRET) && !r.all().contains(&hash(SECRET)),
            "{}",
            r.all()
        );
    }

    // Outside the allowlist.
    let r = cli(&[
        "explain",
        &cfg,
        "--env",
        OM,
        "--client-ip",
        "198.51.100.1",
        "--method",
        "GET",
        "--path",
        "/botconnector/bots",
        "--header",
        &key_header,
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stdout.contains("verdict: refused with 403 forbidden"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_checks_webhook_signatures_over_the_given_body() {
    let dir = Dir::new("explain-wh");
    let cfg = explain_config(&dir);
    let body = r#"{"id":"m1","type":"Text","text":"hi"}"#;
    let sig = WebhookSecret::new(b"explain-webhook-secret-42")
        .unwrap()
        .sign(body.as_bytes());
    let sig_header = format!("x-hub-signature-256: {sig}");
    let common = [
        "explain",
        cfg.as_str(),
        "--env",
        OM,
        "--client-ip",
        "34.200.73.250",
        "--method",
        "POST",
        "--path",
        "/openmessaging/in",
    ];
    let mut ok: Vec<&str> = common.to_vec();
    ok.extend(["--header", &sig_header, "--body", body]);
    let r = cli(&ok);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(
            "why: webhook /openmessaging: the x-hub-signature-256 signature matches the body"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.all().contains(&sig), "the signature is not echoed");

    let mut bad: Vec<&str> = common.to_vec();
    bad.extend(["--header", &sig_header, "--body", r#"{"id":"m2"}"#]);
    let r = cli(&bad);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stdout
            .contains("webhook signature does not match the body on /openmessaging"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_refuses_bad_input_clearly() {
    let dir = Dir::new("explain-bad");
    let cfg = explain_config(&dir);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["explain", &cfg, "--env", OM, "--path", "/x"],
            "--method is required",
        ),
        (
            vec!["explain", &cfg, "--env", OM, "--method", "GET"],
            "--path is required",
        ),
        (
            vec![
                "explain", &cfg, "--env", OM, "--method", "GET", "--path", "x",
            ],
            "--path must start with /",
        ),
        (
            vec![
                "explain",
                &cfg,
                "--env",
                OM,
                "--method",
                "GET",
                "--path",
                "/x",
                "--client-ip",
                "not-an-ip",
            ],
            "--client-ip: `not-an-ip` is not an IP address",
        ),
        (
            vec![
                "explain", &cfg, "--env", OM, "--method", "GET", "--path", "/x", "--header",
                "no colon",
            ],
            "--header expects 'name: value'",
        ),
        (
            vec![
                "explain", &cfg, "--env", OM, "--method", "GET", "--path", "/x", "--at", "tomorrow",
            ],
            "--at: `tomorrow` is not an RFC 3339 time",
        ),
        (
            vec!["explain", &cfg, "--method", "GET", "--path", "/x"],
            "webhooks[0].secret_env: environment variable `OM_WEBHOOK_SECRET` is not set",
        ),
        (
            vec!["explain", "--method", "GET", "--path", "/x"],
            "is required",
        ),
    ];
    for (args, want) in cases {
        let r = cli(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains(want),
            "{args:?}\n  got: {}\n  want: {want}",
            r.stderr
        );
    }
}

#[test]
fn unknown_commands_and_help() {
    let r = cli(&[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("USAGE"), "{}", r.stderr);
    let r = cli(&["--help"]);
    assert_eq!(r.code, 0);
    for sub in ["keygen", "check", "ipranges", "explain"] {
        assert!(
            r.stdout.contains(&format!("bcsp-guard {sub}")),
            "{}",
            r.stdout
        );
    }
    let r = cli(&["frobnicate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown command `frobnicate`"),
        "{}",
        r.stderr
    );
}
