//! The JSON access log the shipped configs carry, as the tests' Envoys write it: the format
//! per artifact, and reading it back line by line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Artifact, Envoy};

/// The audit fields the filter exports, as named in the access-log line.
pub const AUDIT_FIELDS: [&str; 8] = [
    "key_id",
    "verdict",
    "reason",
    "client",
    "client_source",
    "route",
    "audience",
    "lockout",
];

/// Where `launch` puts the access log: replaced by the Envoy's own temp dir.
pub(super) const ACCESS_LOG_PLACEHOLDER: &str = "{ACCESS_LOG_PATH}";

/// How Envoy prints one audit field of `artifact`.
pub fn audit_operator(artifact: Artifact, field: &str) -> String {
    match artifact {
        Artifact::Wasm => format!("%FILTER_STATE(wasm.bcsp_guard.{field}:PLAIN)%"),
        Artifact::DynamicModule => format!("%DYNAMIC_METADATA(bcsp_guard:{field})%"),
    }
}

/// The connection manager's `access_log` (indented for the harness's HCM), JSON to `path`.
pub(super) fn access_log_yaml(artifact: Artifact, path: &str) -> String {
    // The shipped configs' format, so a test's lines are what an operator sees.
    let mut fields = vec![
        ("time", "%START_TIME%".to_string()),
        ("request_id", "%REQ(X-REQUEST-ID)%".to_string()),
        ("method", "%REQ(:METHOD)%".to_string()),
        ("path", "%REQ(:PATH):100%".to_string()),
        ("status", "%RESPONSE_CODE%".to_string()),
        ("duration_ms", "%DURATION%".to_string()),
    ];
    for f in AUDIT_FIELDS {
        fields.push((f, audit_operator(artifact, f)));
    }
    let mut yaml = format!(
        "          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \
         \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              \
         path: {path}\n              log_format:\n                json_format:\n"
    );
    for (k, v) in fields {
        yaml.push_str(&format!("                  {k}: {}\n", Value::String(v)));
    }
    yaml
}

impl Envoy {
    pub fn access_log_path(&self) -> PathBuf {
        self.dir().join("access.log")
    }

    /// Every access-log line so far, as JSON; waits (bounded, 5 s) until there are at
    /// least `n` (Envoy writes a line when the stream ends and flushes every 50 ms).
    pub fn access_log(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = read_lines(&self.access_log_path());
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The access-log line of the request with this x-request-id (bounded wait, 5 s).
    pub fn access_log_line(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = read_lines(&self.access_log_path());
            if let Some(l) = lines.iter().find(|l| l["request_id"] == request_id) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no access-log line for {request_id} in {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
