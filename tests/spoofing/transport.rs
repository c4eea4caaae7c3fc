//! Putting a row on the wire: raw HTTP/1.1 through the harness, HTTP/2 through the system curl
//! (or raw frames, see `frames`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::frames;
use crate::harness::*;
use crate::model::*;

/// What the client saw.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    /// None: no HTTP reply (stream reset, connection closed).
    pub(crate) status: Option<u16>,
    pub(crate) body: Vec<u8>,
    pub(crate) detail: String,
}

impl Observed {
    pub(crate) fn show(&self) -> String {
        match self.status {
            Some(s) => s.to_string(),
            None => format!("no reply ({})", self.detail),
        }
    }
}

pub(crate) fn send_h1(addr: SocketAddr, q: &Req) -> Observed {
    let result = match &q.raw_h1 {
        Some(raw) => send_raw(addr, Some(lo(q.peer)), raw),
        None => {
            let mut b = request(&q.method, &q.path).to(addr).from(lo(q.peer));
            for (n, v) in &q.headers {
                b = b.header(n, v);
            }
            b = match &q.body {
                Body::Empty => b,
                Body::Fixed(ct, bytes) => b.body(ct, bytes.clone()),
                Body::Streamed(ct, parts) => b.chunked(ct, parts.clone()),
            };
            b.try_send()
        }
    };
    match result {
        Ok(r) => Observed {
            status: Some(r.status),
            body: r.body,
            detail: String::new(),
        },
        Err(e) => Observed {
            status: None,
            body: Vec::new(),
            detail: format!("connection closed: {e}"),
        },
    }
}

/// The system curl, checked once: the suite fails (never skips) without it.
pub(crate) fn curl_check() {
    let out = Command::new("curl").arg("--version").output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "the spoofing matrix sends its HTTP/2 half with the system curl, and `curl --version` \
             failed ({}): install curl with HTTP2 support (Debian: apt-get install curl)",
            o.status
        ),
        Err(e) => panic!(
            "the spoofing matrix sends its HTTP/2 half with the system curl, which is missing \
             ({e}): install curl with HTTP2 support (Debian: apt-get install curl)"
        ),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let has_h2 = text
        .lines()
        .find(|l| l.starts_with("Features:"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "HTTP2"));
    assert!(
        has_h2,
        "the system curl has no HTTP2 feature, which the spoofing matrix needs for its HTTP/2 \
         half (Debian's curl has it):\n{text}"
    );
}

/// curl 7.88 (Debian 12) loses a complete reply that Envoy follows with RST_STREAM(NO_ERROR)
/// while curl is still uploading (exit 92, or 16/52/55 under load; nothing printed): a refusal
/// that comes before the body went out. Raw frames show Envoy's reply every time, so such a
/// request is sent again, up to 5 times in all, and the detail says so; every attempt still
/// counts against the upstream.
pub(crate) fn send_curl(addr: SocketAddr, q: &Req, dir: &Path) -> Observed {
    let mut obs = curl_once(addr, q, dir);
    for attempt in 2..=5 {
        let lost = obs.status.is_none()
            && [
                "curl exit 16:",
                "curl exit 52:",
                "curl exit 55:",
                "curl exit 92:",
            ]
            .iter()
            .any(|c| obs.detail.starts_with(c))
            && !matches!(q.body, Body::Empty);
        if !lost {
            break;
        }
        obs = curl_once(addr, q, dir);
        obs.detail = format!(
            "{} (attempt {attempt}: curl lost the reply before)",
            obs.detail
        );
    }
    if obs.status.is_none()
        && !matches!(q.body, Body::Empty)
        && obs.detail.contains("curl lost the reply")
    {
        // Still curl's bug, not Envoy's answer: read the reply from raw frames instead.
        let mut framed = frames::send(addr, q);
        framed.detail = format!(
            "{} (raw frames after curl lost the reply 5 times)",
            framed.detail
        );
        return framed;
    }
    obs
}

pub(crate) fn curl_once(addr: SocketAddr, q: &Req, dir: &Path) -> Observed {
    // Headers from a file: a 64 KiB value stays out of argv, and `name;` sends an empty value.
    let mut hdrs = String::from("expect:\n");
    for (n, v) in &q.headers {
        if v.is_empty() {
            let _ = writeln!(hdrs, "{n};");
        } else {
            let _ = writeln!(hdrs, "{n}: {v}");
        }
    }
    let hfile = dir.join("headers");
    std::fs::write(&hfile, hdrs).expect("write curl headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--http2-prior-knowledge", "--path-as-is"])
        .args(["--max-time", "10", "--interface", &lo(q.peer).to_string()])
        .args(["-X", &q.method])
        .arg("-H")
        .arg(format!("@{}", hfile.display()));
    if let Some(t) = &q.h2_target {
        cmd.arg("--request-target").arg(t);
    }
    let mut stdin_body = None;
    match &q.body {
        Body::Empty => {}
        Body::Fixed(ct, bytes) => {
            let bfile = dir.join("body");
            std::fs::write(&bfile, bytes).expect("write curl body");
            cmd.arg("-H")
                .arg(format!("content-type: {ct}"))
                .arg("--data-binary")
                .arg(format!("@{}", bfile.display()));
        }
        Body::Streamed(ct, parts) => {
            cmd.arg("-H")
                .arg(format!("content-type: {ct}"))
                .args(["-T", "-"]);
            stdin_body = Some(parts.concat());
        }
    }
    let path = if q.path.starts_with('/') {
        q.path.clone()
    } else {
        "/".into() // absolute-form rows: the target comes from --request-target
    };
    cmd.arg(format!("http://{addr}{path}"))
        .stdin(if stdin_body.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn curl (checked at start)");
    if let Some(body) = stdin_body {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("curl stdin");
        let _ = stdin.write_all(&body);
    }
    let out = child.wait_with_output().expect("wait for curl");
    let mut rest: &[u8] = &out.stdout;
    let mut status = None;
    while rest.starts_with(b"HTTP/") {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let line = String::from_utf8_lossy(&rest[..end]);
        let code = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok());
        rest = &rest[end + 4..];
        if code.is_some_and(|c| c >= 200) {
            status = code;
            break;
        }
    }
    Observed {
        status,
        body: rest.to_vec(),
        detail: format!(
            "curl exit {}: {}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}
