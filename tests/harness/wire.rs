//! What crosses the wire: a tap between Envoy and the recording upstream that counts every
//! byte Envoy sends (so "nothing reached the upstream" covers headers too, not only whole
//! requests), and a plain HTTP/2 (h2c, prior knowledge) client that can pace its DATA frames.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A TCP relay on 127.0.0.1 in front of `target`; counts connections and the bytes sent
/// towards `target`. Stops on drop.
pub struct WireTap {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    conns: Arc<AtomicU64>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl WireTap {
    pub fn start(target: SocketAddr) -> WireTap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind tap");
        let addr = listener.local_addr().expect("tap address");
        let bytes = Arc::new(AtomicU64::new(0));
        let conns = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (b, c, s) = (bytes.clone(), conns.clone(), stopping.clone());
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue;
                };
                relay(client, server, b.clone());
            }
        });
        WireTap {
            addr,
            bytes,
            conns,
            stopping,
            accept: Some(accept),
        }
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Bytes Envoy has sent towards the upstream so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
    /// Upstream connections Envoy has opened so far.
    pub fn connections(&self) -> u64 {
        self.conns.load(Ordering::SeqCst)
    }
}

impl Drop for WireTap {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn relay(client: TcpStream, server: TcpStream, counted: Arc<AtomicU64>) {
    let pipe = |mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(c) = &count {
                            c.fetch_add(n as u64, Ordering::SeqCst);
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
        pipe(client, server, Some(counted));
        pipe(s2, c2, None);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 client
// ---------------------------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// An HTTP/2 request: fields as HPACK literals, the body as DATA frames.
#[derive(Clone, Debug, Default)]
pub struct H2Request {
    /// Regular fields (the pseudo-headers are added from `method` and `path`).
    pub headers: Vec<(String, String)>,
    pub method: String,
    pub path: String,
    /// One DATA frame each; the last one ends the stream.
    pub data: Vec<Vec<u8>>,
    /// Pause between DATA frames.
    pub gap: Duration,
    /// Wait for a `100` (or a final answer) after the headers before sending DATA.
    pub expect_continue: bool,
}

/// What came back on stream 1.
#[derive(Clone, Debug)]
pub struct H2Reply {
    /// Final status; None: no final answer (reset, closed, timeout).
    pub status: Option<u16>,
    /// Interim (1xx) statuses seen.
    pub interim: Vec<u16>,
    pub body: Vec<u8>,
    pub detail: String,
}

/// One HTTP/2 frame.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn int(out: &mut Vec<u8>, prefix: u32, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(v as u8);
        return;
    }
    out.push(max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// Literal header field without indexing, new name (RFC 7541 6.2.2), raw strings: exactly the
/// bytes given, none of the validation a real client applies.
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    int(out, 7, name.len());
    out.extend_from_slice(name);
    int(out, 7, value.len());
    out.extend_from_slice(value);
}

fn read_int(b: &[u8], prefix: u32) -> Option<(usize, usize)> {
    let max = (1usize << prefix) - 1;
    let v = usize::from(*b.first()?) & max;
    if v < max {
        return Some((v, 1));
    }
    let (mut v, mut shift, mut i) = (v, 0, 1);
    loop {
        let byte = *b.get(i)?;
        v += usize::from(byte & 0x7f) << shift;
        shift += 7;
        i += 1;
        if byte & 0x80 == 0 {
            return Some((v, i));
        }
    }
}

/// Huffman-coded digits (RFC 7541 Appendix B: '0'-'2' are 5 bits, '3'-'9' 6 bits).
fn huffman_digits(s: &[u8]) -> Option<String> {
    let bits: Vec<u8> = s
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let (mut out, mut i) = (String::new(), 0);
    while i + 5 <= bits.len() {
        let v5 = bits[i..i + 5].iter().fold(0u8, |a, b| a * 2 + b);
        if v5 <= 2 {
            out.push(char::from(b'0' + v5));
            i += 5;
        } else if i + 6 <= bits.len() && (0x19..=0x1f).contains(&(v5 * 2 + bits[i + 5])) {
            out.push(char::from(b'0' + 3 + (v5 * 2 + bits[i + 5] - 0x19)));
            i += 6;
        } else {
            break;
        }
    }
    let pad = &bits[i..];
    (pad.len() < 8 && pad.iter().all(|&b| b == 1)).then_some(out)
}

/// `:status` from the first field of a response header block. Only `:status` is read, so a
/// literal "with incremental indexing" needs no dynamic table kept for it.
pub fn h2_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    loop {
        let b = *block.get(i)?;
        if b & 0x80 != 0 {
            let (idx, _) = read_int(&block[i..], 7)?;
            return [200, 204, 206, 304, 400, 404, 500]
                .get(idx.checked_sub(8)?)
                .copied();
        }
        if b & 0xe0 == 0x20 {
            i += read_int(&block[i..], 5)?.1;
            continue;
        }
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let (idx, n) = read_int(&block[i..], prefix)?;
        if !(8..=14).contains(&idx) {
            return None;
        }
        let rest = &block[i + n..];
        let (len, m) = read_int(rest, 7)?;
        let s = rest.get(m..m + len)?;
        let text = if rest[0] & 0x80 != 0 {
            huffman_digits(s)?
        } else {
            String::from_utf8(s.to_vec()).ok()?
        };
        return text.parse().ok();
    }
}

/// A HEADERS/DATA payload without its padding and priority fields.
pub fn h2_unpad(kind: u8, flags: u8, p: &[u8]) -> &[u8] {
    let mut p = p;
    let mut pad = 0;
    if flags & PADDED != 0 && !p.is_empty() {
        pad = usize::from(p[0]);
        p = &p[1..];
    }
    if kind == HEADERS && flags & PRIORITY != 0 {
        p = p.get(5..).unwrap_or_default();
    }
    &p[..p.len().saturating_sub(pad)]
}

/// Sends `req` on a fresh h2c connection from `from` and reads stream 1's answer.
pub fn h2_send(addr: SocketAddr, from: Option<IpAddr>, req: &H2Request) -> H2Reply {
    let mut reply = H2Reply {
        status: None,
        interim: Vec::new(),
        body: Vec::new(),
        detail: String::new(),
    };
    if let Err(e) = h2_exchange(addr, from, req, &mut reply) {
        if reply.detail.is_empty() {
            reply.detail = format!("connection: {e}");
        }
    }
    reply
}

/// Reads one frame; answers SETTINGS and PING on the way.
fn next_frame(s: &mut TcpStream) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head)?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let (kind, flags) = (head[3], head[4]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    match kind {
        SETTINGS if flags & 1 == 0 => s.write_all(&h2_frame(SETTINGS, 1, 0, &[]))?,
        PING if flags & 1 == 0 => s.write_all(&h2_frame(PING, 1, 0, &payload))?,
        _ => {}
    }
    Ok((kind, flags, stream, payload))
}

/// Handles one frame of stream 1; true once the exchange is over.
fn take(reply: &mut H2Reply, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> bool {
    match kind {
        HEADERS if stream == 1 => {
            match h2_status(h2_unpad(kind, flags, payload)) {
                Some(s) if s < 200 => reply.interim.push(s),
                Some(s) if reply.status.is_none() => reply.status = Some(s),
                Some(_) => {}
                None if reply.status.is_none() => reply.detail = "undecodable :status".into(),
                None => {}
            }
            flags & END_STREAM != 0
        }
        DATA if stream == 1 => {
            reply.body.extend_from_slice(h2_unpad(kind, flags, payload));
            flags & END_STREAM != 0
        }
        RST_STREAM if stream == 1 => {
            let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            reply.detail = format!("RST_STREAM {code}");
            true
        }
        GOAWAY => {
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            reply.detail = format!("GOAWAY {code}");
            code != 0
        }
        _ => false,
    }
}

fn h2_exchange(
    addr: SocketAddr,
    from: Option<IpAddr>,
    req: &H2Request,
    reply: &mut H2Reply,
) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(15)))?;

    let mut block = Vec::new();
    for (n, v) in [
        (":method", req.method.as_str()),
        (":scheme", "http"),
        (":authority", "bcsp.test"),
        (":path", req.path.as_str()),
    ] {
        hpack_literal(&mut block, n.as_bytes(), v.as_bytes());
    }
    for (n, v) in &req.headers {
        hpack_literal(&mut block, n.as_bytes(), v.as_bytes());
    }
    let mut out = PREFACE.to_vec();
    out.extend(h2_frame(SETTINGS, 0, 0, &[]));
    let flags = END_HEADERS | if req.data.is_empty() { END_STREAM } else { 0 };
    out.extend(h2_frame(HEADERS, flags, 1, &block));
    s.write_all(&out)?;

    if req.expect_continue && !req.data.is_empty() {
        loop {
            let (kind, flags, stream, payload) = next_frame(&mut s)?;
            if take(reply, kind, flags, stream, &payload) {
                return Ok(());
            }
            if !reply.interim.is_empty() || reply.status.is_some() {
                break;
            }
        }
    }
    for (i, d) in req.data.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(req.gap);
        }
        let last = i + 1 == req.data.len();
        if s.write_all(&h2_frame(DATA, if last { END_STREAM } else { 0 }, 1, d))
            .is_err()
        {
            break; // the server answered and closed already
        }
    }
    loop {
        let (kind, flags, stream, payload) = next_frame(&mut s)?;
        if take(reply, kind, flags, stream, &payload) {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 with paced body parts and `Expect: 100-continue`
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.1 request whose body goes out in parts, `gap` apart.
#[derive(Clone, Debug, Default)]
pub struct H1Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Vec<u8>>,
    /// `transfer-encoding: chunked` (one chunk per part) instead of `content-length`.
    pub chunked: bool,
    pub gap: Duration,
    /// Send `expect: 100-continue` and hold the body until `100` (or a final answer) comes.
    pub expect_continue: bool,
}

/// What an HTTP/1.1 exchange gave: interim statuses and the final reply (or the error).
#[derive(Debug)]
pub struct H1Reply {
    pub interim: Vec<u16>,
    pub reply: std::io::Result<super::Reply>,
}

pub fn h1_send(addr: SocketAddr, req: &H1Request) -> H1Reply {
    let mut interim = Vec::new();
    let reply = h1_exchange(addr, req, &mut interim);
    H1Reply { interim, reply }
}

fn h1_exchange(
    addr: SocketAddr,
    req: &H1Request,
    interim: &mut Vec<u16>,
) -> std::io::Result<super::Reply> {
    use std::fmt::Write as _;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: bcsp.test\r\n",
        req.method, req.path
    );
    for (k, v) in &req.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if req.chunked {
        head.push_str("transfer-encoding: chunked\r\n");
    } else {
        let len: usize = req.parts.iter().map(Vec::len).sum();
        let _ = write!(head, "content-length: {len}\r\n");
    }
    if req.expect_continue {
        head.push_str("expect: 100-continue\r\n");
    }
    head.push_str("connection: close\r\n\r\n");
    s.write_all(head.as_bytes())?;
    let mut buf = Vec::new();
    if req.expect_continue {
        // The first answer: `100 Continue`, or already the final one.
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let line = String::from_utf8_lossy(&buf[..end]).to_string();
                let code = line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
                if code == Some(100) {
                    interim.push(100);
                    buf.drain(..end + 4);
                    break;
                }
                return read_final(&mut s, buf);
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return super::parse_reply(&buf);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let mut wire: Vec<Vec<u8>> = Vec::new();
    for p in &req.parts {
        if req.chunked {
            let mut c = format!("{:x}\r\n", p.len()).into_bytes();
            c.extend_from_slice(p);
            c.extend_from_slice(b"\r\n");
            wire.push(c);
        } else {
            wire.push(p.clone());
        }
    }
    if req.chunked {
        wire.push(b"0\r\n\r\n".to_vec());
    }
    for (i, w) in wire.iter().enumerate() {
        if i > 0 && !(req.chunked && i + 1 == wire.len()) {
            std::thread::sleep(req.gap);
        }
        if s.write_all(w).is_err() {
            break; // answered and closed already
        }
    }
    read_final(&mut s, buf)
}

fn read_final(s: &mut TcpStream, mut buf: Vec<u8>) -> std::io::Result<super::Reply> {
    let mut chunk = [0u8; 16 * 1024];
    while !super::reply_complete(&buf) {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    super::parse_reply(&buf)
}
