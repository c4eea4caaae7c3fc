//! deploy/genesys-ipranges.py, which turns Genesys's published ranges into allow_cidrs: from a
//! file or the API (with and without a token), filtered by direction and service, and refusing
//! rather than widening a range with host bits set.

use std::path::Path;

use crate::common::{assert_no_problems, check, run_genesys_ipranges};
use crate::harness::{sha256_hex, TempDir};

const IPRANGES: &str = r#"{"entities":[
 {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-east-1"},
 {"cidr":"52.1.2.0/24","service":"bot-connector","region":"us-east-2","direction":"outbound"},
 {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-west-2"},
 {"cidr":"2600:1f18:4a3:6900::/56","service":"bot-connector","region":"us-east-1"},
 {"cidr":"198.51.100.0/24","service":"web-messaging","region":"us-east-1"}]}"#;

#[test]
fn genesys_ipranges_feeds_allow_cidrs() {
    let dir = TempDir::new("ipranges");
    let good = dir.path().join("good.json");
    std::fs::write(&good, IPRANGES).expect("write");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, IPRANGES.replace("52.1.2.0/24", "52.1.2.9/24")).expect("write");
    let none = dir.path().join("none.json");
    std::fs::write(&none, r#"{"entities":[]}"#).expect("write");
    let gs = |p: &Path| p.display().to_string();

    // A fake Genesys API: the path and the optional bearer token are checked there.
    let server = http_stub::Server::bind("127.0.0.1:0", |req: &http_stub::Request| {
        if req.path() != "/api/v2/ipranges" {
            return http_stub::Response::json(404, "{}");
        }
        match req.header("authorization") {
            Some("Bearer tok-1") | None => http_stub::Response::json(200, IPRANGES),
            Some(_) => http_stub::Response::json(401, "{}"),
        }
    })
    .expect("bind fake API");
    let api = format!("http://{}", server.local_addr());

    let all = r#"["34.200.73.250/32", "52.1.2.0/24", "2600:1f18:4a3:6900::/56"]"#;
    struct Case<'a> {
        args: Vec<String>,
        env: Vec<(&'a str, &'a str)>,
        ok: bool,
        out: &'a str,
    }
    let cases = vec![
        Case {
            args: vec!["--file".into(), gs(&good)],
            env: vec![],
            ok: true,
            out: all,
        },
        Case {
            args: vec!["--api".into(), api.clone()],
            env: vec![],
            ok: true,
            out: all,
        },
        Case {
            args: vec!["--api".into(), api.clone()],
            env: vec![("GENESYS_TOKEN", "tok-1")],
            ok: true,
            out: all,
        },
        Case {
            args: vec!["--api".into(), api.clone()],
            env: vec![("GENESYS_TOKEN", "wrong")],
            ok: false,
            out: "",
        },
        Case {
            args: vec![
                "--file".into(),
                gs(&good),
                "--direction".into(),
                "outbound".into(),
                "--format".into(),
                "lines".into(),
            ],
            env: vec![],
            ok: true,
            out: "52.1.2.0/24",
        },
        Case {
            args: vec![
                "--file".into(),
                gs(&good),
                "--service".into(),
                "web-messaging".into(),
            ],
            env: vec![],
            ok: true,
            out: r#"["198.51.100.0/24"]"#,
        },
        // Host bits set: refused, never widened.
        Case {
            args: vec!["--file".into(), gs(&bad)],
            env: vec![],
            ok: false,
            out: "",
        },
        Case {
            args: vec!["--file".into(), gs(&none)],
            env: vec![],
            ok: false,
            out: "",
        },
    ];
    let mut problems = Vec::new();
    for c in &cases {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let ran = run_genesys_ipranges(&args, &c.env);
        check(&mut problems, ran.ok() == c.ok, || {
            format!(
                "{args:?}: exit {:?}, expected success={}: {}",
                ran.code, c.ok, ran.stderr
            )
        });
        if c.ok {
            check(&mut problems, ran.stdout.trim() == c.out, || {
                format!(
                    "{args:?}: printed {:?}, expected {:?}",
                    ran.stdout.trim(),
                    c.out
                )
            });
            if c.out.starts_with('[') {
                let cfg = format!(
                    r#"{{"keys":[{{"id":"k","sha256":"{}"}}],"allow_cidrs":{}}}"#,
                    sha256_hex("x"),
                    ran.stdout.trim()
                );
                if let Err(e) = bcsp_guard::config::compile(cfg.as_bytes()) {
                    problems.push(format!("{args:?}: output refused as allow_cidrs: {e}"));
                }
            }
        } else {
            check(
                &mut problems,
                !ran.stderr.trim().is_empty() && !ran.stderr.contains("Traceback"),
                || {
                    format!(
                        "{args:?}: a failure needs one clear line, got {:?}",
                        ran.stderr
                    )
                },
            );
        }
    }
    server.stop();
    assert_no_problems("genesys-ipranges.py", problems);
}
