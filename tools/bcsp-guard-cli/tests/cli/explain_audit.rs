//! `bcsp-guard explain` prints the access-log fields Envoy would write for the request.

use crate::common::*;
use serde_json::json;

fn config(dir: &Dir) -> String {
    dir.file(
        "cfg.json",
        &json!({
            "keys": [{"id": "genesys-a", "sha256": sha256_hex(SECRET)}],
            "client_ip": {"from": "x-forwarded-for", "trusted_hops": 2},
            "allow_cidrs": ["34.200.73.250/32"],
            "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
            "upstream_token": {"cluster": "gcp_metadata", "audience": "https://bcsp.a.run.app"},
        })
        .to_string(),
    )
}

/// The `access log (audit fields):` block as (field, value) pairs.
fn audit_block(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|l| *l != "access log (audit fields):")
        .skip(1)
        .map_while(|l| {
            let l = l.strip_prefix("  ")?;
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().to_string()))
        })
        .collect()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn explain_prints_the_access_log_fields_of_each_verdict() {
    let dir = Dir::new("explain-audit");
    let cfg = config(&dir);
    let key = format!("x-bcsp-key: {SECRET}");
    let run = |path: &str, header: &str| {
        cli(&[
            "explain",
            cfg.as_str(),
            "--client-ip",
            "34.200.73.250",
            "--method",
            "GET",
            "--path",
            path,
            "--header",
            header,
        ])
    };

    let r = run("/botconnector/bots", &key);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        audit_block(&r.stdout),
        pairs(&[
            ("key_id", "genesys-a"),
            ("verdict", "forwarded"),
            ("reason", "allowed"),
            ("client", "34.200.73.250"),
            ("client_source", "xff-2"),
            ("route", "GET /botconnector/bots"),
            ("audience", "https://bcsp.a.run.app"),
            ("lockout", "-"),
        ]),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(SECRET));

    let r = run("/botconnector/bots", "x-bcsp-key: wrong");
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(
        audit_block(&r.stdout),
        pairs(&[
            ("key_id", "-"),
            ("verdict", "401"),
            ("reason", "denied.invalid_key"),
            ("client", "34.200.73.250"),
            ("client_source", "xff-2"),
            ("route", "-"),
            ("audience", "-"),
            ("lockout", "-"),
        ]),
        "{}",
        r.stdout
    );

    let r = run("/botconnector/nowhere", &key);
    assert_eq!(r.code, 2, "{}", r.all());
    let block = audit_block(&r.stdout);
    assert!(
        block.contains(&("verdict".into(), "404".into())),
        "{block:?}"
    );
    assert!(
        block.contains(&("reason".into(), "denied.route".into())),
        "{block:?}"
    );
    assert!(
        block.contains(&("key_id".into(), "genesys-a".into())),
        "{block:?}"
    );
}
