//! Socket-level tests on 127.0.0.1, port 0. Every read has a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Request, Response, Server};

const T: Duration = Duration::from_secs(5);

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    s
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response framed by Content-Length; `pending` keeps pipelined leftovers.
fn read_reply(s: &mut TcpStream, pending: &mut Vec<u8>, head_only: bool) -> Reply {
    let deadline = Instant::now() + T;
    let head_end = loop {
        assert!(Instant::now() < deadline, "response head timed out");
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read head");
        assert!(n > 0, "EOF before response head");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending[..head_end].to_vec()).expect("utf8 head");
    pending.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line[9..12].parse().expect("status");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("colon");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("content-length"))
        .unwrap_or(0);
    let len = if head_only { 0 } else { len };
    while pending.len() < len {
        assert!(Instant::now() < deadline, "response body timed out");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read body");
        assert!(n > 0, "EOF in body");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending.drain(..len).collect();
    Reply {
        status,
        headers,
        body,
    }
}

fn roundtrip(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(raw).expect("write");
    read_reply(&mut s, &mut Vec::new(), false)
}

fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} bytes"),
        Err(e) => assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset,
            "expected close, got {e}"
        ),
    }
}

/// A server that records each request and echoes method, path and body.
fn echo_server() -> (Server, Arc<Mutex<Vec<Request>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let server = Server::bind("127.0.0.1:0", move |req: &Request| {
        log.lock().expect("lock").push(req.clone());
        let mut body = format!("{} {} ", req.method, req.path()).into_bytes();
        body.extend_from_slice(&req.body);
        Response::new(200).with_body("application/octet-stream", body)
    })
    .expect("bind");
    (server, seen)
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let (server, seen) = echo_server();
    let mut s = connect(server.local_addr());
    let mut pending = Vec::new();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let r1 = read_reply(&mut s, &mut pending, false);
    s.write_all(b"POST /two?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .expect("write");
    let r2 = read_reply(&mut s, &mut pending, false);
    assert_eq!((r1.status, r1.body.as_slice()), (200, &b"GET /one "[..]));
    assert_eq!(r2.body, b"POST /two hello");
    assert_eq!(r1.header("connection"), None);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].peer, seen[1].peer, "same connection");
    assert_eq!(seen[1].target, "/two?a=1");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (server, _) = echo_server();
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        .expect("write");
    let mut pending = Vec::new();
    assert_eq!(read_reply(&mut s, &mut pending, false).body, b"GET /a ");
    assert_eq!(read_reply(&mut s, &mut pending, false).body, b"GET /b ");
}

#[test]
fn connection_close_is_honoured() {
    let (server, _) = echo_server();
    let mut s = connect(server.local_addr());
    s.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut pending = Vec::new();
    let r = read_reply(&mut s, &mut pending, false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(pending.is_empty());
    assert_closed(&mut s);
}

#[test]
fn http10_closes_unless_keep_alive() {
    let (server, _) = echo_server();
    let mut s = connect(server.local_addr());
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let _ = read_reply(&mut s, &mut Vec::new(), false);
    assert_closed(&mut s);

    let mut s = connect(server.local_addr());
    let mut pending = Vec::new();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("write");
        let r = read_reply(&mut s, &mut pending, false);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn chunked_body_is_decoded() {
    let (server, seen) = echo_server();
    let mut s = connect(server.local_addr());
    let mut pending = Vec::new();
    s.write_all(
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .expect("write");
    let r = read_reply(&mut s, &mut pending, false);
    assert_eq!(r.body, b"POST /c hello, world");
    // The connection is still usable after a chunked body.
    s.write_all(b"GET /after HTTP/1.1\r\n\r\n").expect("write");
    assert_eq!(read_reply(&mut s, &mut pending, false).body, b"GET /after ");
    assert_eq!(seen.lock().expect("lock")[0].body, b"hello, world");
    assert_eq!(
        seen.lock().expect("lock")[0].trailers,
        [("x-trailer".to_string(), "t".to_string())]
    );
    assert!(seen.lock().expect("lock")[1].trailers.is_empty());
}

#[test]
fn duplicate_headers_are_kept_in_order() {
    let (server, seen) = echo_server();
    roundtrip(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nX-Dup: one\r\nHost: h\r\nx-dup:two  \r\nX-DUP: \t three\r\n\r\n",
    );
    let seen = seen.lock().expect("lock");
    let req = &seen[0];
    assert_eq!(req.headers_named("X-Dup"), vec!["one", "two", "three"]);
    assert_eq!(req.header("x-DUP"), Some("one"));
    assert_eq!(req.header("absent"), None);
    let names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["x-dup", "host", "x-dup", "x-dup"]);
}

#[test]
fn expect_continue_gets_interim_response() {
    let (server, _) = echo_server();
    let mut s = connect(server.local_addr());
    s.write_all(b"PUT /e HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        .expect("write");
    let mut pending = Vec::new();
    let interim = read_reply(&mut s, &mut pending, true);
    assert_eq!(interim.status, 100);
    s.write_all(b"abc").expect("write");
    assert_eq!(read_reply(&mut s, &mut pending, false).body, b"PUT /e abc");
}

#[test]
fn head_has_length_but_no_body() {
    let server =
        Server::bind("127.0.0.1:0", |_: &Request| Response::text(200, "12345")).expect("bind");
    let mut s = connect(server.local_addr());
    let mut pending = Vec::new();
    s.write_all(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        .expect("write");
    let head = read_reply(&mut s, &mut pending, true);
    assert_eq!(head.header("content-length"), Some("5"));
    assert_eq!(read_reply(&mut s, &mut pending, false).body, b"12345");
}

#[test]
fn malformed_request_gets_400_and_close() {
    let (server, seen) = echo_server();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let mut s = connect(server.local_addr());
        s.write_all(raw).expect("write");
        let r = read_reply(&mut s, &mut Vec::new(), false);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("connection"), Some("close"));
        assert_closed(&mut s);
    }
    assert!(seen.lock().expect("lock").is_empty());
}

#[test]
fn oversized_headers_get_431() {
    let (server, _) = echo_server();
    let mut s = connect(server.local_addr());
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..1100 {
        raw.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(60)).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    // The server may answer before reading everything; a failed write is fine.
    let _ = s.write_all(&raw);
    let r = read_reply(&mut s, &mut Vec::new(), false);
    assert_eq!(r.status, 431);
}

#[test]
fn oversized_body_gets_413() {
    let (server, seen) = echo_server();
    let r = roundtrip(
        server.local_addr(),
        b"POST / HTTP/1.1\r\nContent-Length: 8388609\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    let r = roundtrip(
        server.local_addr(),
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n900000\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(seen.lock().expect("lock").is_empty());
}

#[test]
fn slow_handler_does_not_block_other_connections() {
    let server = Server::bind("127.0.0.1:0", |req: &Request| {
        if req.path() == "/slow" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Response::text(200, req.path())
    })
    .expect("bind");
    let addr = server.local_addr();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = roundtrip(addr, b"GET /slow HTTP/1.1\r\n\r\n");
        let _ = tx.send(r.status);
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let fast = roundtrip(addr, b"GET /fast HTTP/1.1\r\n\r\n");
    assert_eq!(fast.body, b"/fast");
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(rx.recv_timeout(T).expect("slow reply"), 200);
}

#[test]
fn handler_panic_answers_500() {
    let server =
        Server::bind("127.0.0.1:0", |_: &Request| -> Response { panic!("boom") }).expect("bind");
    let r = roundtrip(server.local_addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 500);
}

#[test]
fn response_framing_headers_come_from_the_server() {
    let server = Server::bind("127.0.0.1:0", |_: &Request| {
        Response::json(201, "{}")
            .with_header("Content-Length", "999")
            .with_header("x-evil", "a\r\nInjected: yes")
    })
    .expect("bind");
    let r = roundtrip(server.local_addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-length"), Some("2"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("injected"), None);
    assert_eq!(r.body, b"{}");
}

#[test]
fn stop_returns_promptly_and_closes_the_port() {
    let (server, _) = echo_server();
    let addr = server.local_addr();
    // An idle keep-alive connection must not hold stop() up.
    let mut idle = connect(addr);
    idle.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let _ = read_reply(&mut idle, &mut Vec::new(), false);

    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    assert_closed(&mut idle);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "port still accepts"
    );
}

#[test]
fn drop_stops_the_server() {
    let (server, _) = echo_server();
    let addr = server.local_addr();
    drop(server);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn request_helpers() {
    let req = Request {
        method: "GET".into(),
        target: "/p/q?audience=https%3A%2F%2Fa.run.app&x=a+b&flag&x=second&bad=%zz%4".into(),
        headers: vec![],
        body: vec![],
        trailers: vec![],
        peer: "127.0.0.1:1".parse().expect("addr"),
    };
    assert_eq!(req.path(), "/p/q");
    assert_eq!(req.query("audience").as_deref(), Some("https://a.run.app"));
    assert_eq!(req.query("x").as_deref(), Some("a b"));
    assert_eq!(req.query("flag").as_deref(), Some(""));
    assert_eq!(req.query("bad").as_deref(), Some("%zz%4"));
    assert_eq!(req.query("missing"), None);
    let bare = Request {
        target: "/only".into(),
        ..req
    };
    assert_eq!(bare.path(), "/only");
    assert_eq!(bare.query("x"), None);
}
