//! Reading one HTTP/1.x request off a connection, within size and time limits.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::request::Request;

/// Request line plus header fields (and, separately, chunked trailers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Request body after de-chunking.
pub(crate) const MAX_BODY: usize = 8 * 1024 * 1024;
/// A chunk-size line is tiny; anything longer is an attack or garbage.
const MAX_CHUNK_LINE: usize = 1024;
/// Empty lines tolerated before a request line (RFC 9112 §2.2).
const MAX_LEADING_EMPTY: usize = 4;

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// Peer closed or went idle before sending a byte: close silently.
    Idle,
    /// I/O failure or EOF mid-request: nobody to answer.
    Io,
    /// Deadline passed mid-request.
    Timeout,
    Bad(&'static str),
    HeadTooLarge,
    BodyTooLarge,
    /// A transfer coding we do not decode.
    Unsupported,
    Version,
}

/// Buffered reader whose every read honours an absolute deadline.
pub(crate) struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Reader {
    pub(crate) fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::with_capacity(8192),
            pos: 0,
            deadline: Instant::now(),
        }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes; `Ok(0)` is EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // set_read_timeout rejects zero, hence the floor.
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn fill_or_fail(&mut self) -> Result<(), ParseError> {
        match self.fill() {
            Ok(0) => Err(ParseError::Io),
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Err(ParseError::Timeout),
            Err(_) => Err(ParseError::Io),
        }
    }

    /// One line without its CRLF (or bare LF); `limit` bounds its length.
    fn line(&mut self, limit: usize, too_long: ParseError) -> Result<Vec<u8>, ParseError> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buffered()[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                if end > limit {
                    return Err(too_long);
                }
                let mut line = self.buffered()[..end].to_vec();
                self.pos += end + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.contains(&b'\r') {
                    return Err(ParseError::Bad("bare CR in line"));
                }
                return Ok(line);
            }
            scanned = self.buffered().len();
            if scanned > limit {
                return Err(too_long);
            }
            self.fill_or_fail()?;
        }
    }

    fn exact(&mut self, n: usize, out: &mut Vec<u8>) -> Result<(), ParseError> {
        let mut need = n;
        while need > 0 {
            if self.buffered().is_empty() {
                self.fill_or_fail()?;
            }
            let take = need.min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.pos += take;
            need -= take;
        }
        Ok(())
    }

    /// Waits up to `idle` for the first byte of a request.
    fn await_request(&mut self, idle: Duration) -> Result<(), ParseError> {
        if !self.buffered().is_empty() {
            return Ok(());
        }
        self.deadline = Instant::now() + idle;
        match self.fill() {
            Ok(0) => Err(ParseError::Idle),
            Ok(_) => Ok(()),
            Err(_) => Err(ParseError::Idle),
        }
    }

    /// Discards up to `max` unread bytes (bounded in time) so that closing
    /// does not reset the connection before the peer reads our answer.
    pub(crate) fn drain(&mut self, max: usize, within: Duration) {
        self.deadline = Instant::now() + within;
        let mut seen = 0;
        while seen < max {
            match self.fill() {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    seen += n;
                    self.pos = self.buf.len();
                }
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What the connection loop needs besides the request itself.
pub(crate) struct Parsed {
    pub(crate) request: Request,
    /// Client asked to close (or HTTP/1.0 without keep-alive).
    pub(crate) close: bool,
    /// HTTP/1.0 client that asked for keep-alive: echo it.
    pub(crate) keep_alive_hdr: bool,
}

/// Reads one request: waits `idle` for it to start, then allows `timeout` to finish it.
/// `on_continue` is called when the client waits for `100 Continue`.
pub(crate) fn read_request(
    r: &mut Reader,
    peer: SocketAddr,
    idle: Duration,
    timeout: Duration,
    on_continue: &mut dyn FnMut(&TcpStream),
) -> Result<Parsed, ParseError> {
    r.await_request(idle)?;
    r.deadline = Instant::now() + timeout;

    let mut budget = MAX_HEAD;
    let mut request_line = Vec::new();
    for _ in 0..=MAX_LEADING_EMPTY {
        request_line = r.line(budget, ParseError::HeadTooLarge)?;
        if !request_line.is_empty() {
            break;
        }
    }
    budget = budget.saturating_sub(request_line.len() + 2);
    let (method, target, http10) = parse_request_line(&request_line)?;

    let mut headers = Vec::new();
    read_fields(r, &mut budget, &mut headers)?;

    let connection: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    let has = |t: &str| connection.iter().any(|c| c == t);
    let close = has("close") || (http10 && !has("keep-alive"));
    let keep_alive_hdr = http10 && !close;

    let (body, trailers) = read_body(r, &headers, http10, on_continue)?;
    Ok(Parsed {
        request: Request {
            method,
            target,
            headers,
            body,
            trailers,
            peer,
        },
        close,
        keep_alive_hdr,
    })
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, bool), ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::Bad("request line not UTF-8"))?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Bad("request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(ParseError::Bad("method"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ParseError::Bad("request target"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => return Err(ParseError::Version),
        _ => return Err(ParseError::Bad("version")),
    };
    Ok((method.to_string(), target.to_string(), http10))
}

/// Header fields (or chunked trailers) up to the empty line.
fn read_fields(
    r: &mut Reader,
    budget: &mut usize,
    out: &mut Vec<(String, String)>,
) -> Result<(), ParseError> {
    // Each field costs at least 2 bytes of budget, so this ends.
    loop {
        let line = r.line(*budget, ParseError::HeadTooLarge)?;
        *budget = budget
            .checked_sub(line.len() + 2)
            .ok_or(ParseError::HeadTooLarge)?;
        if line.is_empty() {
            return Ok(());
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(ParseError::Bad("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::Bad("header without colon"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(ParseError::Bad("header name"));
        }
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().any(|&b| b == 0 || b == b'\n') {
            return Err(ParseError::Bad("header value"));
        }
        out.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
}

/// A request body and its chunked trailer fields.
type BodyAndTrailers = (Vec<u8>, Vec<(String, String)>);

fn read_body(
    r: &mut Reader,
    headers: &[(String, String)],
    http10: bool,
    on_continue: &mut dyn FnMut(&TcpStream),
) -> Result<BodyAndTrailers, ParseError> {
    let te: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let cl: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    // Both framings at once is the classic smuggling vector: refuse it.
    if !te.is_empty() && !cl.is_empty() {
        return Err(ParseError::Bad("both transfer-encoding and content-length"));
    }
    let expects_continue = !http10
        && headers
            .iter()
            .any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue"));

    if !te.is_empty() {
        if te.len() != 1 || !te[0].eq_ignore_ascii_case("chunked") {
            return Err(ParseError::Unsupported);
        }
        if expects_continue {
            on_continue(r.stream());
        }
        return read_chunked(r);
    }

    let Some(first) = cl.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    if cl.iter().any(|v| v != first) {
        return Err(ParseError::Bad("conflicting content-length"));
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Bad("content-length"));
    }
    let len: usize = match first.parse::<u64>() {
        Ok(n) if n <= MAX_BODY as u64 => n as usize,
        _ => return Err(ParseError::BodyTooLarge),
    };
    if len > 0 && expects_continue {
        on_continue(r.stream());
    }
    let mut body = Vec::with_capacity(len);
    r.exact(len, &mut body)?;
    Ok((body, Vec::new()))
}

/// The de-chunked body and the trailer fields.
fn read_chunked(r: &mut Reader) -> Result<BodyAndTrailers, ParseError> {
    let mut body = Vec::new();
    // Each round consumes a non-empty chunk within MAX_BODY, so this ends.
    loop {
        let line = r.line(MAX_CHUNK_LINE, ParseError::Bad("chunk size line too long"))?;
        let size_part = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let size_hex = trim_ows(size_part);
        if size_hex.is_empty() || size_hex.len() > 16 || !size_hex.iter().all(u8::is_ascii_hexdigit)
        {
            return Err(ParseError::Bad("chunk size"));
        }
        let size = std::str::from_utf8(size_hex)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or(ParseError::Bad("chunk size"))?;
        if size == 0 {
            break;
        }
        if size > (MAX_BODY - body.len()) as u64 {
            return Err(ParseError::BodyTooLarge);
        }
        r.exact(size as usize, &mut body)?;
        if !r
            .line(2, ParseError::Bad("chunk not followed by CRLF"))?
            .is_empty()
        {
            return Err(ParseError::Bad("chunk not followed by CRLF"));
        }
    }
    let mut trailers = Vec::new();
    let mut budget = MAX_HEAD;
    read_fields(r, &mut budget, &mut trailers)?;
    Ok((body, trailers))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
