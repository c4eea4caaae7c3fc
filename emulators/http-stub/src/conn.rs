//! Serving one connection: read requests, call the handler, write responses.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::parse::{read_request, ParseError, Reader};
use crate::response::Response;
use crate::server::Handler;

/// How long an idle keep-alive connection is kept. Long, because Envoy reuses
/// upstream connections and closing under it races with its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed to receive one whole request once it has started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on requests per connection, so even this loop ends.
const MAX_REQUESTS: usize = 1_000_000;

pub(crate) fn serve(stream: TcpStream, peer: SocketAddr, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut reader = Reader::new(stream);
    let mut send_continue = |s: &TcpStream| {
        let _ = (&*s).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    };

    for _ in 0..MAX_REQUESTS {
        let parsed = match read_request(
            &mut reader,
            peer,
            IDLE_TIMEOUT,
            REQUEST_TIMEOUT,
            &mut send_continue,
        ) {
            Ok(p) => p,
            Err(ParseError::Idle) | Err(ParseError::Io) => return,
            Err(e) => {
                let response = error_response(&e);
                let _ = write(&reader, &response, false, true, false);
                close_gracefully(&mut reader);
                return;
            }
        };

        let request = &parsed.request;
        // A panicking handler (e.g. a failed assert in a test) answers 500
        // instead of silently dropping the connection.
        let response = match catch_unwind(AssertUnwindSafe(|| handler(request))) {
            Ok(r) => r,
            Err(_) => Response::text(500, "handler panicked\n").with_header("connection", "close"),
        };
        let close = parsed.close || response.wants_close();
        let head_only = request.method.eq_ignore_ascii_case("HEAD");
        let keep_alive_hdr = parsed.keep_alive_hdr;
        if write(&reader, &response, head_only, close, keep_alive_hdr).is_err() {
            return;
        }
        if close {
            close_gracefully(&mut reader);
            return;
        }
    }
    close_gracefully(&mut reader);
}

fn write(
    reader: &Reader,
    response: &Response,
    head_only: bool,
    close: bool,
    keep_alive_hdr: bool,
) -> std::io::Result<()> {
    let bytes = response.serialize(head_only, close, keep_alive_hdr);
    let mut stream = reader.stream();
    stream.write_all(&bytes)?;
    stream.flush()
}

fn error_response(e: &ParseError) -> Response {
    match e {
        ParseError::HeadTooLarge => Response::text(431, "request header fields too large\n"),
        ParseError::BodyTooLarge => Response::text(413, "request body too large\n"),
        ParseError::Timeout => Response::text(408, "request timeout\n"),
        ParseError::Unsupported => Response::text(501, "unsupported transfer-encoding\n"),
        ParseError::Version => Response::text(505, "HTTP version not supported\n"),
        ParseError::Bad(why) => Response::text(400, &format!("bad request: {why}\n")),
        // Not answered; listed for completeness.
        ParseError::Idle | ParseError::Io => Response::text(400, "bad request\n"),
    }
}

/// Half-close then drain briefly: closing with unread input makes the kernel
/// send RST, which can destroy the answer before the client reads it.
fn close_gracefully(reader: &mut Reader) {
    let _ = reader.stream().shutdown(Shutdown::Write);
    reader.drain(256 * 1024, Duration::from_millis(500));
}
