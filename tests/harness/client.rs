//! A raw HTTP/1.1 client: builds requests byte by byte, picks its loopback source address,
//! can pace a chunked body, and parses the reply.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Connect / read / write timeout of the test client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP/1.1 response.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON; panics with the raw body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Send `raw` bytes on a fresh connection to `addr`, from source address `from` if given, and
/// read the reply until the server closes (send `Connection: close`).
pub fn send_raw(addr: SocketAddr, from: Option<IpAddr>, raw: &[u8]) -> std::io::Result<Reply> {
    send_parts(addr, from, &[raw.to_vec()])
}

/// As [`send_raw`], writing `parts` one after another with a 30 ms pause between them. A write
/// the server refused (it already answered and closed) ends the sending, not the request.
pub fn send_parts(
    addr: SocketAddr,
    from: Option<IpAddr>,
    parts: &[Vec<u8>],
) -> std::io::Result<Reply> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        if let Err(e) = stream.write_all(part) {
            if i == 0 {
                return Err(e);
            }
            break;
        }
    }
    // Read until the reply is complete rather than until EOF: after a local reply Envoy
    // delays its close (delayed_close_timeout, 1 s) waiting for us to close first.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if reply_complete(&buf) {
            break;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_reply(&buf)
}

/// A kept-alive client connection: several requests, one after another, on one TCP
/// connection (so on one Envoy worker).
pub struct Connection {
    stream: TcpStream,
}

impl Connection {
    pub fn open(addr: SocketAddr, from: Option<IpAddr>) -> Connection {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
        if let Some(ip) = from {
            socket
                .bind(&SocketAddr::new(ip, 0).into())
                .expect("bind source");
        }
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Connection { stream }
    }

    /// Send `req` (its destination is ignored) without `connection: close`; read one reply.
    pub fn send(&mut self, req: &RequestBuilder) -> Reply {
        let raw = req.raw_bytes();
        let text = String::from_utf8_lossy(&raw).replacen("connection: close\r\n", "", 1);
        self.stream.write_all(text.as_bytes()).expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        while !reply_complete(&buf) {
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed before a whole reply: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
        parse_reply(&buf).expect("parse reply")
    }
}

/// True once `buf` holds a whole response with a Content-Length or a chunked body.
pub(super) fn reply_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match (k.trim(), v.trim()) {
            ("content-length", n) => return n.parse::<usize>().is_ok_and(|n| body.len() >= n),
            ("transfer-encoding", "chunked") => return body.ends_with(b"0\r\n\r\n"),
            _ => {}
        }
    }
    false
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

pub(super) fn parse_reply(buf: &[u8]) -> std::io::Result<Reply> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no header end in {:?}",
                String::from_utf8_lossy(buf)
            ))
        })?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk".into()))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(bad("truncated chunk".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `GET path` with extra headers and `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Reply> {
    let mut b = request("GET", path).to(addr);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.try_send()
}

/// Start building a request; finish with `.to(addr)` (or `Stack::request`) and `.send()`.
pub fn request(method: &str, path: &str) -> RequestBuilder {
    RequestBuilder {
        method: method.to_string(),
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        from: None,
        addr: None,
        chunks: None,
    }
}

#[derive(Clone, Debug)]
pub struct RequestBuilder {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    from: Option<IpAddr>,
    addr: Option<SocketAddr>,
    /// A chunked body, each chunk written separately after a short pause.
    chunks: Option<Vec<Vec<u8>>>,
}

impl RequestBuilder {
    pub fn to(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }
    /// Connect from this local source address (e.g. `lo(5)` = 127.0.0.5).
    pub fn from(mut self, ip: IpAddr) -> Self {
        self.from = Some(ip);
        self
    }
    /// Add a header (repeat the call to send a header twice).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }
    /// Send the body with `transfer-encoding: chunked`, one HTTP chunk per part, each written
    /// 30 ms after the previous one so that Envoy sees them as separate body callbacks.
    pub fn chunked(mut self, content_type: &str, parts: Vec<Vec<u8>>) -> Self {
        self.chunks = Some(parts);
        self.header("content-type", content_type)
            .header("transfer-encoding", "chunked")
    }
    /// The parts written to the socket: one for a plain request, several when chunked.
    fn wire_parts(&self) -> Vec<Vec<u8>> {
        let Some(parts) = &self.chunks else {
            return vec![self.raw_bytes()];
        };
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: bcsp.test\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        head.push_str("connection: close\r\n\r\n");
        let mut out = vec![head.into_bytes()];
        for p in parts {
            let mut c = format!("{:x}\r\n", p.len()).into_bytes();
            c.extend_from_slice(p);
            c.extend_from_slice(b"\r\n");
            out.push(c);
        }
        out.push(b"0\r\n\r\n".to_vec());
        out
    }
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: bcsp.test\r\n",
            self.method, self.path
        );
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" {
            let _ = write!(head, "content-length: {}\r\n", self.body.len());
        }
        head.push_str("connection: close\r\n\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(&self.body);
        raw
    }
    pub fn try_send(&self) -> std::io::Result<Reply> {
        let addr = self
            .addr
            .expect("request without a destination: call .to(addr)");
        send_parts(addr, self.from, &self.wire_parts())
    }
    /// Send and return the reply; panics on an I/O error.
    pub fn send(&self) -> Reply {
        self.try_send()
            .unwrap_or_else(|e| panic!("{} {} failed: {e}", self.method, self.path))
    }
}
