//! The emulator over real loopback sockets, through its public API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metadata_emulator::{decode_claims, Emulator, Mode, IDENTITY_PATH};

const AUD: &str = "https://bcsp-abc-uc.a.run.app";
const T: Duration = Duration::from_secs(10);

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One request on a fresh connection with `Connection: close`; reads to EOF.
fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: metadata.google.internal\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("Connection: close\r\nContent-Length: 0\r\n\r\n");
    s.write_all(raw.as_bytes()).expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    let text = String::from_utf8(all).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    Reply {
        status: head[9..12].parse().expect("status"),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn identity_target(aud: &str) -> String {
    let enc: String = aud
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{IDENTITY_PATH}?audience={enc}")
}

fn fetch(em: &Emulator, aud: &str) -> Reply {
    request(
        em.addr(),
        "GET",
        &identity_target(aud),
        &[("Metadata-Flavor", "Google")],
    )
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn start(lifetime: u64) -> Emulator {
    Emulator::start("127.0.0.1:0", lifetime).expect("start")
}

#[test]
fn issues_jwt_with_audience_and_lifetime() {
    let em = start(3600);
    let before = now();
    let r = fetch(&em, AUD);
    assert_eq!(r.status, 200);
    assert!(r.head.contains("content-type: text/html"), "{}", r.head);
    assert!(r.head.contains("metadata-flavor: google"));
    let header = r.body.split('.').next().expect("header");
    assert_eq!(
        header,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImVtdWxhdG9yIiwidHlwIjoiSldUIn0"
    );
    let c = decode_claims(&r.body).expect("claims");
    assert_eq!(c.aud, AUD);
    assert!(c.iat >= before && c.iat <= now());
    assert_eq!(c.exp - c.iat, 3600);
    assert_eq!((em.fetch_count(AUD), em.total_fetches()), (1, 1));
}

#[test]
fn format_full_is_accepted() {
    let em = start(60);
    let target = format!("{}&format=full", identity_target(AUD));
    let r = request(em.addr(), "GET", &target, &[("Metadata-Flavor", "Google")]);
    assert_eq!(r.status, 200);
    assert_eq!(decode_claims(&r.body).expect("claims").aud, AUD);
}

#[test]
fn tokens_are_distinct() {
    let em = start(3600);
    let a = fetch(&em, AUD).body;
    let b = fetch(&em, AUD).body;
    assert_ne!(a, b);
    let (ca, cb) = (decode_claims(&a).expect("a"), decode_claims(&b).expect("b"));
    assert_ne!(ca.jti, cb.jti);
    assert_ne!(
        a.rsplit('.').next(),
        b.rsplit('.').next(),
        "signatures differ"
    );
}

#[test]
fn rejections_are_counted() {
    let em = start(3600);
    let target = identity_target(AUD);
    let no_flavor = request(em.addr(), "GET", &target, &[]);
    assert_eq!(no_flavor.status, 403);
    assert!(!no_flavor.body.is_empty());
    let wrong_flavor = request(
        em.addr(),
        "GET",
        &target,
        &[("Metadata-Flavor", "google-ish")],
    );
    assert_eq!(wrong_flavor.status, 403);
    let xff = request(
        em.addr(),
        "GET",
        &target,
        &[
            ("Metadata-Flavor", "Google"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    );
    assert_eq!(xff.status, 400);
    let flavor = [("Metadata-Flavor", "Google")];
    assert_eq!(
        request(em.addr(), "GET", IDENTITY_PATH, &flavor).status,
        400
    );
    let empty = format!("{IDENTITY_PATH}?audience=");
    assert_eq!(request(em.addr(), "GET", &empty, &flavor).status, 400);
    assert_eq!(em.rejected_count(), 5);
    assert_eq!(em.fetch_count(AUD), 3, "rejected fetches still count");
    assert_eq!(em.total_fetches(), 5);
    // Other paths are not identity fetches.
    let other = request(
        em.addr(),
        "GET",
        "/computeMetadata/v1/project/project-id",
        &flavor,
    );
    assert_eq!(other.status, 404);
    assert_eq!((em.total_fetches(), em.rejected_count()), (5, 5));
}

#[test]
fn fail_next_fails_exactly_k_fetches() {
    let em = start(3600);
    em.fail_next(2, 500);
    assert_eq!(fetch(&em, AUD).status, 500);
    assert_eq!(fetch(&em, AUD).status, 500);
    let ok = fetch(&em, AUD);
    assert_eq!(ok.status, 200);
    assert!(decode_claims(&ok.body).is_some());
    assert_eq!(em.fetch_count(AUD), 3);
    em.fail_next(1, 429);
    assert_eq!(fetch(&em, AUD).status, 429);
}

#[test]
fn delay_holds_the_answer() {
    let em = start(3600);
    em.set_delay(Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(fetch(&em, AUD).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    em.set_delay(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(fetch(&em, AUD).status, 200);
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[test]
fn set_lifetime_changes_exp() {
    let em = start(3600);
    em.set_lifetime(10);
    let c = decode_claims(&fetch(&em, AUD).body).expect("claims");
    assert_eq!(c.exp - c.iat, 10);
}

#[test]
fn modes() {
    let em = start(3600);
    em.set_mode(Mode::Garbage);
    let g = fetch(&em, AUD);
    assert_eq!(g.status, 200);
    assert!(decode_claims(&g.body).is_none());

    em.set_mode(Mode::Expired);
    let e = fetch(&em, AUD);
    assert_eq!(e.status, 200);
    let c = decode_claims(&e.body).expect("claims");
    assert!(
        c.exp <= now() - 3600 + 1 && c.exp >= now() - 3600 - 5,
        "exp {}",
        c.exp
    );
    assert_eq!(c.aud, AUD);

    em.set_mode(Mode::Down);
    assert_eq!(fetch(&em, AUD).status, 503);
    let flavor = [("Metadata-Flavor", "Google")];
    assert_eq!(
        request(em.addr(), "GET", "/computeMetadata/v1/", &flavor).status,
        503
    );
    assert_eq!(request(em.addr(), "GET", "/healthz", &[]).status, 200);

    em.set_mode(Mode::Normal);
    assert_eq!(fetch(&em, AUD).status, 200);
    assert_eq!(em.fetch_count(AUD), 4);
}

#[test]
fn counts_per_audience() {
    let em = start(3600);
    let other = "https://bcsp-eu-ew.a.run.app";
    fetch(&em, AUD);
    fetch(&em, other);
    fetch(&em, other);
    assert_eq!(em.fetch_count(AUD), 1);
    assert_eq!(em.fetch_count(other), 2);
    assert_eq!(em.fetch_count("https://never.example"), 0);
    assert_eq!(em.total_fetches(), 3);
}

#[test]
fn http_control_endpoints() {
    let em = start(3600);
    let a = em.addr();
    assert_eq!(request(a, "GET", "/healthz", &[]).status, 200);
    assert_eq!(
        request(a, "POST", "/_emulator/fail?count=1&status=502", &[]).status,
        200
    );
    assert_eq!(fetch(&em, AUD).status, 502);
    assert_eq!(
        request(a, "POST", "/_emulator/lifetime?s=42", &[]).status,
        200
    );
    let c = decode_claims(&fetch(&em, AUD).body).expect("claims");
    assert_eq!(c.exp - c.iat, 42);
    assert_eq!(
        request(a, "POST", "/_emulator/mode?m=down", &[]).status,
        200
    );
    assert_eq!(fetch(&em, AUD).status, 503);
    assert_eq!(
        request(a, "POST", "/_emulator/mode?m=normal", &[]).status,
        200
    );
    assert_eq!(
        request(a, "POST", "/_emulator/delay?ms=300", &[]).status,
        200
    );
    let started = Instant::now();
    assert_eq!(fetch(&em, AUD).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    request(em.addr(), "GET", &identity_target("a\"b"), &[]);

    let stats = request(a, "GET", "/_emulator/stats", &[]);
    assert_eq!(stats.status, 200);
    assert!(stats.head.contains("content-type: application/json"));
    assert_eq!(
        stats.body,
        format!(r#"{{"total":5,"rejected":1,"by_audience":{{"a\"b":1,"{AUD}":4}}}}"#)
    );

    // Bad input is refused and changes nothing.
    for bad in [
        "/_emulator/mode?m=sideways",
        "/_emulator/fail?count=x",
        "/_emulator/fail?count=1&status=42",
        "/_emulator/delay",
        "/_emulator/lifetime?s=-1",
    ] {
        assert_eq!(request(a, "POST", bad, &[]).status, 400, "{bad}");
    }
    assert_eq!(request(a, "GET", "/_emulator/mode?m=down", &[]).status, 405);
    assert_eq!(request(a, "POST", "/_emulator/nope", &[]).status, 404);

    assert_eq!(request(a, "POST", "/_emulator/reset", &[]).status, 200);
    assert_eq!(em.total_fetches(), 0);
    let started = Instant::now();
    let c = decode_claims(&fetch(&em, AUD).body).expect("claims");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "delay reset"
    );
    assert_eq!(c.exp - c.iat, 3600, "lifetime reset");
}

#[test]
fn stop_closes_the_port_even_with_a_delayed_fetch_pending() {
    let em = start(3600);
    let addr = em.addr();
    em.set_delay(Duration::from_secs(30));
    let pending = std::thread::spawn(move || {
        let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
        let _ = s.write_all(
            format!(
                "GET {} HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n",
                identity_target(AUD)
            )
            .as_bytes(),
        );
        s.set_read_timeout(Some(T)).expect("timeout");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    });
    let deadline = Instant::now() + T;
    while em.total_fetches() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    em.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    pending.join().expect("client thread");
}
