//! `bcsp-guard explain`: what the filter would do with one request, and why.

use crate::common::*;
use bcsp_guard::policy::webhook::WebhookSecret;
use serde_json::json;

fn explain_config(dir: &Dir) -> String {
    dir.file(
        "cfg.json",
        &json!({
            "keys": [{"id": "genesys-a", "sha256": sha256_hex(SECRET), "not_after": "2030-01-01T00:00:00Z"}],
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
            !r.all().contains(SECRET) && !r.all().contains(&sha256_hex(SECRET)),
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
