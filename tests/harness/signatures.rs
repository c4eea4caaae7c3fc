//! Webhook signatures, written out independently of the filter.

/// HMAC-SHA256 written out here (RFC 2104), independent of the filter's implementation.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Standard, padded base64, as Genesys sends it.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `X-Hub-Signature-256` value Genesys sends: `sha256=<base64(HMAC-SHA256(secret, body))>`.
pub fn om_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", base64(&hmac_sha256(secret.as_bytes(), body)))
}

/// An Open Messaging-like event body of exactly `len` bytes (for `len` past its fixed head).
pub fn om_event(len: usize) -> Vec<u8> {
    let head =
        r#"{"id":"evt-1","channel":{"platform":"Open","type":"Public"},"type":"Text","text":""#;
    let mut b = head.as_bytes().to_vec();
    while b.len() + 2 < len {
        b.push(b'a' + (b.len() % 26) as u8);
    }
    b.extend_from_slice(br#""}"#);
    b
}

/// Sends a correctly signed Open Messaging delivery of `body` to `path` over HTTP/1.1 but
/// stops after its first `sent` bytes, then reads the reply (for at most 20 s) as text.
pub fn stalled_delivery(
    addr: std::net::SocketAddr,
    path: &str,
    request_id: &str,
    secret: &str,
    body: &[u8],
    sent: usize,
) -> String {
    use std::io::{Read, Write};
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: bcsp.test\r\ncontent-type: application/json\r\n\
         x-request-id: {request_id}\r\nx-hub-signature-256: {}\r\ncontent-length: {}\r\n\r\n",
        om_signature(secret, body),
        body.len()
    );
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("read timeout");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(&body[..sent]).expect("part of the body");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"}\n") && !got.ends_with(b"}") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).to_string()
}
