//! The Prometheus alert rules (deploy/prometheus/): they pass `promtool` with their unit tests,
//! and every bcsp_guard_* series they read is one a real Envoy with the filter serves.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::{
    array_at, assert_no_problems, check, last_lines, read_yaml, repo_root, run_bounded, str_at,
};
use crate::harness::{sha256_hex, EnvoyConfig, Stack};

fn promtool_path() -> PathBuf {
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
    let tool = promtool_path();
    let dir = repo_root().join("deploy/prometheus");
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
            last_lines(&ran.stdout_and_stderr(), 30)
        );
    }
}

/// Every bcsp_guard_* series the rules read is one a real Envoy with the filter serves (or a
/// planned one), so a renamed counter cannot leave an alert silently watching nothing.
#[test]
fn alert_rules_name_real_metrics() {
    let file = "deploy/prometheus/alerts.yaml";
    let rules = read_yaml(file);
    let exprs: Vec<String> = array_at(&rules, "/groups", file)
        .iter()
        .flat_map(|g| array_at(g, "/rules", file))
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
    assert_no_problems("alert rules vs served metrics", problems);
}
