//! A minimal HTTP/2 client for the spoofing matrix: exactly the header bytes a row gives, as
//! HPACK literals (no indexing, no Huffman), with none of the validation a real client applies.

use crate::harness::hpack_literal as literal;
use crate::harness::{h2_frame as frame, h2_status as status, h2_unpad as unpad};
use crate::model::{Body, Req};
use crate::transport::Observed;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("error {code}"), |s| s.to_string())
}

pub fn send(addr: SocketAddr, q: &Req) -> Observed {
    match exchange(addr, q) {
        Ok(o) => o,
        Err(e) => Observed {
            status: None,
            body: Vec::new(),
            detail: format!("connection closed: {e}"),
        },
    }
}

fn exchange(addr: SocketAddr, q: &Req) -> std::io::Result<Observed> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(super::lo(q.peer), 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;

    let mut fields: Vec<(Vec<u8>, Vec<u8>)> =
        vec![(b":method".to_vec(), q.method.clone().into_bytes())];
    if q.method == "CONNECT" {
        fields.push((b":authority".to_vec(), q.path.clone().into_bytes()));
    } else {
        let path = q.h2_target.as_deref().unwrap_or(&q.path);
        fields.push((b":scheme".to_vec(), b"http".to_vec()));
        fields.push((b":authority".to_vec(), b"bcsp.test".to_vec()));
        fields.push((b":path".to_vec(), path.as_bytes().to_vec()));
    }
    let body = match &q.body {
        Body::Empty => Vec::new(),
        Body::Fixed(ct, b) => {
            fields.push((b"content-type".to_vec(), ct.clone().into_bytes()));
            fields.push((b"content-length".to_vec(), b.len().to_string().into_bytes()));
            b.clone()
        }
        Body::Streamed(ct, parts) => {
            fields.push((b"content-type".to_vec(), ct.clone().into_bytes()));
            parts.concat()
        }
    };
    for (n, v) in &q.headers {
        fields.push((n.clone().into_bytes(), v.clone().into_bytes()));
    }
    fields.extend(q.raw_fields.iter().cloned());
    let mut block = Vec::new();
    for (n, v) in &fields {
        literal(&mut block, n, v);
    }
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let ends = body.is_empty() && !q.hold;
    let pieces: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let (kind, mut flags) = if i == 0 {
            (HEADERS, 0)
        } else {
            (CONTINUATION, 0)
        };
        if last {
            flags |= END_HEADERS;
        }
        if i == 0 && ends {
            flags |= END_STREAM;
        }
        out.extend(frame(kind, flags, 1, piece));
    }
    if !body.is_empty() {
        let chunks: Vec<&[u8]> = body.chunks(16_384).collect();
        for (i, c) in chunks.iter().enumerate() {
            let flags = if i + 1 == chunks.len() && !q.hold && q.trailers.is_empty() {
                END_STREAM
            } else {
                0
            };
            out.extend(frame(DATA, flags, 1, c));
        }
    }
    if !q.trailers.is_empty() {
        let mut block = Vec::new();
        for (n, v) in &q.trailers {
            literal(&mut block, n.as_bytes(), v.as_bytes());
        }
        out.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    }
    s.write_all(&out)?;

    let mut status = None;
    let mut got_body = Vec::new();
    let mut detail = String::new();
    loop {
        let mut head = [0u8; 9];
        if let Err(e) = s.read_exact(&mut head) {
            if detail.is_empty() {
                detail = format!("connection closed: {e}");
            }
            break;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)?;
        match kind {
            SETTINGS if flags & 1 == 0 => s.write_all(&frame(SETTINGS, 1, 0, &[]))?,
            PING if flags & 1 == 0 => s.write_all(&frame(PING, 1, 0, &payload))?,
            HEADERS if stream == 1 => {
                if status.is_none() {
                    status = self::status(unpad(kind, flags, &payload));
                    if status.is_none() {
                        detail = "undecodable :status".into();
                    }
                }
                if flags & END_STREAM != 0 {
                    break;
                }
            }
            DATA if stream == 1 => {
                got_body.extend_from_slice(unpad(kind, flags, &payload));
                if flags & END_STREAM != 0 {
                    break;
                }
            }
            RST_STREAM if stream == 1 => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                detail = format!("RST_STREAM {}", error_name(code));
                break;
            }
            GOAWAY => {
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                detail = format!("GOAWAY {} (last stream {last})", error_name(code));
                if last < 1 || code != 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(Observed {
        status,
        body: got_body,
        detail,
    })
}
