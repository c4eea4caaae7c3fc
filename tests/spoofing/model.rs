//! The row model: groups, requests in protocol-neutral form, what the client and the upstream
//! must see, and the small builders the rows share.

use crate::config::*;
use crate::model::Want::*;

/// The matrix's groups; each belongs to one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Group {
    Credential,
    Bytes,
    Identity,
    Downstream,
    Xff1,
    Xff2,
    Path,
    Body,
    Stream,
    Webhook,
    Serverless,
    Variant,
    Trailer,
    KeyRoute,
}

impl Group {
    pub(crate) fn cfg(self) -> Cfg {
        match self {
            Group::Serverless => Cfg::Serverless,
            Group::Stream | Group::Trailer => Cfg::Stream,
            Group::Xff1 => Cfg::Xff1,
            Group::Xff2 => Cfg::Xff2,
            Group::KeyRoute => Cfg::KeyRoute,
            _ => Cfg::Guard,
        }
    }
    pub(crate) fn title(self) -> &'static str {
        match self {
            Group::Credential => "Credential headers",
            Group::Bytes => "Header bytes that are not UTF-8",
            Group::Identity => "A valid key plus forged identity headers",
            Group::Downstream => "Client address: `downstream`, `use_remote_address: true`",
            Group::Xff1 => {
                "Client address: `x-forwarded-for`, `trusted_hops: 1`, `use_remote_address: false`"
            }
            Group::Xff2 => {
                "Client address: `x-forwarded-for`, `trusted_hops: 2`, `use_remote_address: true`"
            }
            Group::Path => "Path tricks against the route allowlist, with a valid key",
            Group::Body => "Bodies and framing",
            Group::Stream => "Bodies on a configuration without webhooks",
            Group::Webhook => "Open Messaging webhook signatures",
            Group::Serverless => "Token in `x-serverless-authorization` mode",
            Group::Variant => "Header names a server reads as ours (`_` for `-`, any case)",
            Group::Trailer => "Request trailers",
            Group::KeyRoute => "Envoy routes that match the key id header; an audience per key",
        }
    }
    /// What the group's rows assume beyond their configuration.
    pub(crate) fn remark(self) -> &'static str {
        match self {
            Group::Bytes => " Each protocol runs on a fresh Envoy, since the attack may break the one it hits.",
            Group::Downstream => " The client writes the X-Forwarded-For shown; Envoy appends the TCP peer.",
            Group::Variant => " Every spelling that folds to a controlled name is removed; only the exact name is a credential.",
            Group::Trailer => " Each body also carries `x-note: kept` as a trailer, which must arrive.",
            Group::Xff1 => {
                " The last entry stands for what a trusted front end (Cloud Run) appended; everything \
                 left of it is the caller's."
            }
            Group::Xff2 => {
                " Envoy appends the TCP peer (127.0.0.5), so the client is the last entry the trusted \
                 front end sent."
            }
            _ => "",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    Empty,
    /// With `content-length`.
    Fixed(String, Vec<u8>),
    /// HTTP/1.1 chunked; HTTP/2 DATA frames without `content-length` (curl `-T -`).
    Streamed(String, Vec<Vec<u8>>),
}

/// A request in protocol-neutral form; each transport puts it on the wire as literally as it
/// can.
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Body,
    pub(crate) peer: u8,
    /// Exact HTTP/1.1 bytes, for framing attacks the builder cannot express.
    pub(crate) raw_h1: Option<Vec<u8>>,
    /// HTTP/2 only: leave the stream open after the headers (the headers alone must decide).
    pub(crate) hold: bool,
    /// curl `--request-target` (e.g. absolute-form); the `:path` the frames client sends.
    pub(crate) h2_target: Option<String>,
    /// HTTP/2 frames only: fields with bytes a `String` cannot hold (not UTF-8).
    pub(crate) raw_fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// HTTP/2 frames only: a trailing HEADERS block after the body.
    pub(crate) trailers: Vec<(String, String)>,
}

pub(crate) fn req(method: &str, path: &str) -> Req {
    Req {
        method: method.into(),
        path: path.into(),
        headers: Vec::new(),
        body: Body::Empty,
        peer: ALLOWED,
        raw_h1: None,
        hold: false,
        h2_target: None,
        raw_fields: Vec::new(),
        trailers: Vec::new(),
    }
}

pub(crate) fn get(path: &str) -> Req {
    req("GET", path)
}

impl Req {
    pub(crate) fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub(crate) fn key(self) -> Req {
        self.header("x-bcsp-key", KEY)
    }
    pub(crate) fn from(mut self, peer: u8) -> Req {
        self.peer = peer;
        self
    }
    pub(crate) fn xff(self, value: &str) -> Req {
        self.header("x-forwarded-for", value)
    }
    pub(crate) fn json(mut self, body: impl Into<Vec<u8>>) -> Req {
        self.body = Body::Fixed("application/json".into(), body.into());
        self
    }
    pub(crate) fn streamed(mut self, body: &[u8], part: usize) -> Req {
        let parts = body.chunks(part).map(<[u8]>::to_vec).collect();
        self.body = Body::Streamed("application/json".into(), parts);
        self
    }
    pub(crate) fn raw_h1(mut self, bytes: impl Into<Vec<u8>>) -> Req {
        self.raw_h1 = Some(bytes.into());
        self
    }
    pub(crate) fn hold(mut self) -> Req {
        self.hold = true;
        self
    }
    pub(crate) fn raw_field(mut self, name: &[u8], value: &[u8]) -> Req {
        self.raw_fields.push((name.to_vec(), value.to_vec()));
        self
    }
    pub(crate) fn target(mut self, t: &str) -> Req {
        self.h2_target = Some(t.into());
        self
    }
}

/// What the client must see.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Want {
    /// 200, and the upstream got exactly this request (with the configuration's invariants and
    /// the row's `Up` checks).
    Pass,
    /// The filter's JSON refusal with this status; the upstream saw nothing.
    Deny(u16),
    /// Refused with one of these statuses, by Envoy or the filter; 0 = no HTTP reply at all (an
    /// HTTP/2 stream or connection reset). The upstream saw nothing.
    Refused(&'static [u16]),
    /// The filter's refusal after the request had started upstream (a streamed body cut off
    /// mid-way): the upstream never received a whole request.
    Cut(u16),
}

/// How a row reaches Envoy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Via {
    /// HTTP/1.1 bytes through the harness (`send_raw` / the request builder).
    Raw,
    /// HTTP/2 through the system curl.
    Curl,
    /// HTTP/2 as raw frames (what curl would rewrite).
    Frames,
}

/// One protocol's half of a row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Leg {
    Run(Via, Want),
    /// This protocol has no form of the attack (reason shown in the matrix).
    None(&'static str),
}

/// Row-specific expectations on an admitted request, beyond the configuration's invariants.
#[derive(Clone, Debug)]
pub(crate) enum Up {
    Target(String),
    KeyId(&'static str),
    NoKeyId,
    /// Exactly one value, this one.
    Header(&'static str, String),
    Absent(&'static str),
    /// Exactly one value in this header: an identity token the emulator issued for AUD.
    OurToken(&'static str),
    XffLast(&'static str),
    BodyLen(usize),
    /// Exactly one trailer of this name, with this value.
    Trailer(&'static str, &'static str),
    NoTrailer(&'static str),
}

#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) group: Group,
    pub(crate) name: String,
    pub(crate) req: Req,
    pub(crate) h1: Leg,
    pub(crate) h2: Leg,
    pub(crate) up: Vec<Up>,
    pub(crate) note: &'static str,
    /// Runs each protocol on a fresh Envoy (the attack may break the one it hits).
    pub(crate) isolated: bool,
    /// An open finding: the row asserts the safe outcome, which the filter does not give yet.
    pub(crate) finding: Option<&'static str>,
}

pub(crate) fn row(group: Group, name: &str, req: Req, want: Want) -> Row {
    Row {
        group,
        name: name.into(),
        req,
        h1: Leg::Run(Via::Raw, want),
        h2: Leg::Run(Via::Curl, want),
        up: Vec::new(),
        note: "",
        isolated: false,
        finding: None,
    }
}

impl Row {
    pub(crate) fn h2(mut self, via: Via, want: Want) -> Row {
        self.h2 = Leg::Run(via, want);
        self
    }
    pub(crate) fn no_h1(mut self, why: &'static str) -> Row {
        self.h1 = Leg::None(why);
        self
    }
    pub(crate) fn no_h2(mut self, why: &'static str) -> Row {
        self.h2 = Leg::None(why);
        self
    }
    pub(crate) fn up(mut self, u: Up) -> Row {
        self.up.push(u);
        self
    }
    pub(crate) fn isolated(mut self) -> Row {
        self.isolated = true;
        self
    }
    #[allow(dead_code)] // kept for the next open finding; none is open now
    pub(crate) fn finding(mut self, what: &'static str) -> Row {
        self.finding = Some(what);
        self
    }
    pub(crate) fn note(mut self, note: &'static str) -> Row {
        self.note = note;
        self
    }
}

/// Envoy's own 400 over HTTP/1.1.
pub(crate) const E400: Want = Refused(&[400]);
/// HTTP/2: the codec refuses the request (a 400 or a stream/connection reset, by release).
pub(crate) const H2BAD: Want = Refused(&[400, 0]);

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` forged entries followed by `last`.
pub(crate) fn xff_list(n: usize, last: &str) -> String {
    let mut s: Vec<String> = (0..n)
        .map(|i| format!("198.51.100.{}", i % 250 + 1))
        .collect();
    s.push(last.into());
    s.join(", ")
}

/// `GET path` over HTTP/1.1 with these header lines, byte for byte.
pub(crate) fn raw_get(path: &str, lines: &[&[u8]]) -> Vec<u8> {
    let mut raw = format!("GET {path} HTTP/1.1\r\nhost: bcsp.test\r\n").into_bytes();
    for l in lines {
        raw.extend_from_slice(l);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"connection: close\r\n\r\n");
    raw
}

pub(crate) fn hook(path: &str, body: &[u8], sig: &str) -> Req {
    req("POST", path)
        .header("x-hub-signature-256", sig)
        .json(body.to_vec())
}
