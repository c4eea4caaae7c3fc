//! Webhook deliveries are held whole inside bcsp-guard — headers included — until their
//! signature is verified, with Envoy's `allow_on_headers_stop_iteration: true` and no other
//! filter in the chain. Every case goes over HTTP/1.1 and HTTP/2, and a tap between Envoy and
//! the upstream proves that a refused delivery sent nothing at all, not even its headers.
//!
//! Run with `--nocapture` to see the matrix rows (`MATRIX | release | case | protocol | ...`).

mod harness;

use harness::*;
use metadata_emulator::{decode_claims, Emulator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const OM_SECRET: &str = "om-hold-secret-from-the-vm-5e2a91";
const KEY: &str = "k3y-hold-suite-0b7d3c";
const AUD: &str = "https://bcsp-hold.a.run.app";
const LIMIT: usize = 4096;

fn hex_signature(body: &[u8]) -> String {
    let hex: String = hmac_sha256(OM_SECRET.as_bytes(), body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The tested chain: bcsp-guard then the router, nothing else; `upstream_token` against the
/// metadata emulator, so a good delivery must also carry the identity token.
fn config(metadata: &Emulator) -> EnvoyConfig {
    let cluster = format!(
        "  - name: gcp_metadata\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: gcp_metadata\n      endpoints:\n      - lb_endpoints:\n        - endpoint: \
         {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
        metadata.addr().port()
    );
    EnvoyConfig::new(json!({
        "keys": [key("k1", KEY)],
        "max_body_bytes": LIMIT,
        "upstream_token": {"cluster": "gcp_metadata", "audience": AUD},
        "webhooks": [{"path_prefix": "/openmessaging", "secret_env": "OM_WEBHOOK_SECRET"}],
    }))
    .path_normalization(true)
    .vm_env("OM_WEBHOOK_SECRET", OM_SECRET)
    .extra_clusters(&cluster)
}

/// Envoy in front of a tap in front of the recording upstream.
struct Tapped {
    envoy: Envoy,
    tap: WireTap,
    upstream: Recorder,
    release: String,
}

impl Tapped {
    fn start(cfg: &EnvoyConfig) -> Tapped {
        let upstream = Recorder::start();
        let tap = WireTap::start(upstream.addr());
        let envoy = Envoy::start(cfg, tap.addr());
        let info: Value = serde_json::from_str(&envoy.admin_get("/server_info")).expect("json");
        let version = info["version"].as_str().unwrap_or("?");
        let release = version.split('/').nth(1).unwrap_or(version).to_string();
        Tapped {
            envoy,
            tap,
            upstream,
            release,
        }
    }
    /// (bytes Envoy sent upstream, whole requests the upstream recorded, router starts).
    fn upstream_mark(&self) -> (u64, usize, u64) {
        let text = self
            .envoy
            .admin_get("/stats?filter=^cluster\\.bcsp\\.upstream_rq_total$");
        let rq = text
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (self.tap.bytes(), self.upstream.count(), rq)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

#[derive(Clone, Copy, Debug)]
enum Sig {
    Good,
    Missing,
    Wrong,
    Hex,
}

#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    sig: Sig,
    len: usize,
    /// Body parts (DATA frames / chunks or writes).
    parts: usize,
    /// No `content-length`: HTTP/1.1 chunked, HTTP/2 DATA frames alone.
    streamed: bool,
    gap_ms: u64,
    expect: bool,
    want: u16,
}

fn case(name: &'static str, sig: Sig, want: u16) -> Case {
    Case {
        name,
        sig,
        len: 900,
        parts: 1,
        streamed: false,
        gap_ms: 0,
        expect: false,
        want,
    }
}

fn cases() -> Vec<Case> {
    let chunked = |c: Case| Case {
        parts: 4,
        streamed: true,
        gap_ms: 30,
        ..c
    };
    let slow = |c: Case| Case {
        parts: 5,
        streamed: true,
        gap_ms: 300,
        ..c
    };
    vec![
        case("valid", Sig::Good, 200),
        chunked(case("valid, chunked", Sig::Good, 200)),
        Case {
            expect: true,
            ..case("valid, expect: 100-continue", Sig::Good, 200)
        },
        slow(case(
            "valid, slow body (5 parts, 300 ms apart)",
            Sig::Good,
            200,
        )),
        case("missing signature", Sig::Missing, 401),
        case("wrong signature", Sig::Wrong, 401),
        chunked(case("wrong signature, chunked", Sig::Wrong, 401)),
        Case {
            expect: true,
            ..case("wrong signature, expect: 100-continue", Sig::Wrong, 401)
        },
        case("hex-encoded signature", Sig::Hex, 401),
        slow(case("wrong signature, slow body", Sig::Wrong, 401)),
        Case {
            len: LIMIT + 1,
            ..case("too large (content-length)", Sig::Good, 413)
        },
        Case {
            len: LIMIT + 1,
            ..chunked(case("too large, streamed", Sig::Good, 413))
        },
    ]
}

/// What the caller saw.
struct Seen {
    status: Option<u16>,
    interim: Vec<u16>,
    body: Vec<u8>,
    detail: String,
}

fn send(addr: std::net::SocketAddr, proto: Proto, c: &Case, id: &str) -> Seen {
    let body = om_event(c.len);
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-request-id".to_string(), id.to_string()),
        (
            "authorization".to_string(),
            "Bearer caller-chosen".to_string(),
        ),
    ];
    let sig = match c.sig {
        Sig::Good => Some(om_signature(OM_SECRET, &body)),
        Sig::Missing => None,
        Sig::Wrong => Some(om_signature("not-the-om-secret-0123456", &body)),
        Sig::Hex => Some(hex_signature(&body)),
    };
    if let Some(s) = sig {
        headers.push(("x-hub-signature-256".into(), s));
    }
    let per = body.len().div_ceil(c.parts);
    let parts: Vec<Vec<u8>> = body.chunks(per).map(<[u8]>::to_vec).collect();
    let gap = Duration::from_millis(c.gap_ms);
    match proto {
        Proto::H1 => {
            let r = h1_send(
                addr,
                &H1Request {
                    method: "POST".into(),
                    path: "/openmessaging/inbound".into(),
                    headers,
                    parts,
                    chunked: c.streamed,
                    gap,
                    expect_continue: c.expect,
                },
            );
            match r.reply {
                Ok(reply) => Seen {
                    status: Some(reply.status),
                    interim: r.interim,
                    body: reply.body,
                    detail: String::new(),
                },
                Err(e) => Seen {
                    status: None,
                    interim: r.interim,
                    body: Vec::new(),
                    detail: e.to_string(),
                },
            }
        }
        Proto::H2 => {
            if c.expect {
                headers.push(("expect".into(), "100-continue".into()));
            }
            if !c.streamed {
                headers.push(("content-length".into(), body.len().to_string()));
            }
            let r = h2_send(
                addr,
                None,
                &H2Request {
                    headers,
                    method: "POST".into(),
                    path: "/openmessaging/inbound".into(),
                    data: parts,
                    gap,
                    expect_continue: c.expect,
                },
            );
            Seen {
                status: r.status,
                interim: r.interim,
                body: r.body,
                detail: r.detail,
            }
        }
    }
}

fn error_code(status: u16) -> &'static str {
    match status {
        401 => "unauthenticated",
        413 => "payload_too_large",
        503 => "webhook_body_unavailable",
        _ => "?",
    }
}

/// One case over one protocol; Err says what went wrong.
fn run(t: &Tapped, proto: Proto, c: &Case) -> Result<String, String> {
    let id = rid("hold");
    let before = t.upstream_mark();
    let seen = send(t.envoy.addr(), proto, c, &id);
    // A refused delivery must not show up a moment later either.
    std::thread::sleep(Duration::from_millis(if c.want == 200 { 0 } else { 100 }));
    let after = t.upstream_mark();
    let (bytes, whole, started) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let shown = format!(
        "caller {}{} | upstream: {whole} request(s), {bytes} bytes on the wire",
        seen.status
            .map_or("no reply".to_string(), |s| s.to_string()),
        if seen.interim.is_empty() {
            String::new()
        } else {
            format!(" (after {:?})", seen.interim)
        }
    );
    let fail = |why: String| Err(format!("{why}: {shown} {}", seen.detail));
    if seen.status != Some(c.want) {
        return fail(format!("want {}", c.want));
    }
    if c.want == 200 {
        let got = t.upstream.last();
        if whole != 1 || got.body != om_event(c.len) {
            return fail("want the whole body upstream, once".into());
        }
        if got.header("x-request-id") != Some(id.as_str()) {
            return fail(format!(
                "upstream x-request-id {:?}",
                got.header("x-request-id")
            ));
        }
        let auth = got.headers_named("authorization");
        let ours = auth.len() == 1
            && auth[0]
                .strip_prefix("Bearer ")
                .and_then(decode_claims)
                .is_some_and(|c| c.aud == AUD);
        if !ours {
            return fail(format!("upstream authorization {auth:?}, want our token"));
        }
    } else {
        let v: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
        if v["error"] != error_code(c.want) || v["request_id"] != id.as_str() {
            return fail(format!(
                "want the filter's JSON body, got {:?}",
                String::from_utf8_lossy(&seen.body)
            ));
        }
        if bytes != 0 || whole != 0 || started != 0 {
            return fail(format!(
                "the upstream saw something (router started {started})"
            ));
        }
    }
    Ok(shown)
}

fn matrix(proto: Proto) {
    let metadata = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let t = Tapped::start(&config(&metadata));
    let mut failures = Vec::new();
    for c in cases() {
        match run(&t, proto, &c) {
            Ok(shown) => eprintln!("MATRIX | {} | {} | {proto:?} | {shown}", t.release, c.name),
            Err(e) => failures.push(format!("{} over {proto:?}: {e}", c.name)),
        }
    }
    // Refusals are logged; the secret and the caller's signature never are.
    t.envoy.assert_log_free_of(&[OM_SECRET, KEY], &[]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still serving afterwards.
    let c = case("valid again", Sig::Good, 200);
    run(&t, proto, &c).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn deliveries_over_http1_are_held_until_verified_and_refusals_send_nothing_upstream() {
    matrix(Proto::H1);
}

#[test]
fn deliveries_over_http2_are_held_until_verified_and_refusals_send_nothing_upstream() {
    matrix(Proto::H2);
}

/// Without the flag Envoy turns the pause into "stop everything" and passes no body: the
/// delivery must still fail closed, soon, and the log must name the missing setting.
#[test]
fn without_the_flag_a_delivery_fails_closed_quickly_and_the_log_names_the_flag() {
    let metadata = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let cfg = config(&metadata).without_stop_iteration();
    if cfg.artifact == Artifact::DynamicModule {
        eprintln!(
            "skipped for the dynamic module: the flag belongs to the Wasm plugin config; the \
             module holds a delivery's headers natively and always gets its body"
        );
        return;
    }
    let t = Tapped::start(&cfg);
    let mut failures = Vec::new();
    let valid = case("valid", Sig::Good, 503);
    let chunked = Case {
        parts: 3,
        streamed: true,
        gap_ms: 30,
        ..case("valid, chunked", Sig::Good, 503)
    };
    for proto in [Proto::H1, Proto::H2] {
        for c in [&valid, &chunked] {
            let started = Instant::now();
            let r = run(&t, proto, c);
            let took = started.elapsed();
            match r {
                Ok(shown) if took < Duration::from_secs(12) => eprintln!(
                    "MATRIX | {} | no flag: {} | {proto:?} | {shown} | after {} ms",
                    t.release,
                    c.name,
                    took.as_millis()
                ),
                Ok(shown) => {
                    failures.push(format!("{} over {proto:?} took {took:?}: {shown}", c.name))
                }
                Err(e) => failures.push(format!("{} over {proto:?}: {e}", c.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let log = t
        .envoy
        .wait_for_log("set allow_on_headers_stop_iteration: true");
    assert!(
        log.contains(
            "set allow_on_headers_stop_iteration: true in this filter's Wasm plugin config"
        ),
        "{}",
        log
    );
    assert!(t.envoy.counter("bcsp_guard.denied.webhook_incomplete") >= 4);
    // Key-authenticated traffic is not held and still flows.
    let r = request("GET", "/x")
        .to(t.envoy.addr())
        .header("x-bcsp-key", KEY)
        .send();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A sender that stops half-way is not held forever: 408 at the filter's 10 s deadline, and
/// the upstream never hears of it.
#[test]
fn a_delivery_whose_body_stalls_gets_408_at_the_deadline() {
    let metadata = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let t = Tapped::start(&config(&metadata));
    let body = om_event(900);
    let id = rid("stall");
    let before = t.upstream_mark();
    let started = Instant::now();
    let text = stalled_delivery(t.envoy.addr(), "/openmessaging", &id, OM_SECRET, &body, 300);
    let took = started.elapsed();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"request_timeout\""), "{text}");
    assert!(text.contains(&id), "{text}");
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "answered after {took:?}"
    );
    assert_eq!(t.upstream_mark(), before, "the upstream saw something");
    eprintln!(
        "MATRIX | {} | stalled body (300 of 900 bytes) | H1 | caller 408 after {} ms | upstream: nothing",
        t.release,
        took.as_millis()
    );
}
