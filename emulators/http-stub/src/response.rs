//! Responses built by handlers, and their serialization on the wire.

/// A response; the server adds Content-Length (and Connection when it closes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (duplicates allowed).
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body and replaces any content-type.
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_string(), content_type.to_string()));
        self.body = body.into();
        self
    }

    /// A JSON body (`application/json`).
    pub fn json(status: u16, body: &str) -> Response {
        Response::new(status).with_body("application/json", body)
    }

    /// A plain-text body.
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status).with_body("text/plain; charset=utf-8", body)
    }

    /// True when the handler asked to close the connection.
    pub(crate) fn wants_close(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("connection")
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
    }

    /// The bytes sent on the wire. Framing headers are the server's job, so the
    /// handler's own Content-Length / Transfer-Encoding / Connection are dropped.
    pub(crate) fn serialize(&self, head_only: bool, close: bool, keep_alive_hdr: bool) -> Vec<u8> {
        // RFC 9110: no body and no Content-Length for 1xx and 204; 304 has no body.
        let bodyless =
            (100..200).contains(&self.status) || self.status == 204 || self.status == 304;
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes(),
        );
        for (name, value) in &self.headers {
            if ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
            {
                continue;
            }
            // A CR or LF from a handler would split the response; neutralise it.
            push_clean(&mut out, name);
            out.extend_from_slice(b": ");
            push_clean(&mut out, value);
            out.extend_from_slice(b"\r\n");
        }
        if !bodyless {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if keep_alive_hdr {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !bodyless && !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn push_clean(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}
