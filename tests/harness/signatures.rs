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
