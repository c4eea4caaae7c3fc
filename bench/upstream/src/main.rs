//! `bench-upstream --listen 127.0.0.1:PORT`: a fixed-response HTTP/1.1 upstream for benchmarks.
//!
//! One thread per connection, keep-alive, pipelining. Requests must not carry a body (the
//! benchmark sends GETs): a request ends at its blank line. Every request gets
//! `200 ok`, except `GET /_echo…`, which answers with the request head as the body, so the
//! benchmark can check what each Envoy setup forwarded (credential stripped, token injected).
//! Serves until killed.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n";
/// Longest request head accepted; a longer one closes the connection.
const MAX_HEAD: usize = 64 * 1024;

fn main() {
    let mut listen = String::from("127.0.0.1:18080");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            _ => {
                eprintln!("usage: bench-upstream --listen ADDR");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench-upstream: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("bench-upstream listening on {listen}");
    let _ = io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let _ = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || serve(stream));
    }
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        // Answer every complete request in the buffer with one write.
        let mut start = 0;
        while let Some(end) = find_head_end(&buf[start..filled]) {
            let head = &buf[start..start + end];
            if head.starts_with(b"GET /_echo") {
                let body = head;
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                out.extend_from_slice(body);
            } else {
                out.extend_from_slice(OK);
            }
            start += end;
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            return; // head too large
        }
    }
}

/// Length of the first request head (through its blank line), if complete.
fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}
