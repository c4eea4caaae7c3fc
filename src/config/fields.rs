//! Validators for single config values. Each returns the normalised value or a message
//! that never echoes more than a short, printable form of the input.

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(is_tchar)
}

/// Headers that carry routing or framing meaning; using one as a credential or id header
/// would break requests or let a caller steer the filter.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-envoy-original-path",
];

/// A lower-cased header name.
pub fn header_name(s: &str) -> Result<String, String> {
    if !is_token(s) {
        return Err(format!("`{}` is not a valid header name", printable(s)));
    }
    let lower = s.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) {
        return Err(format!("`{lower}` is reserved and cannot be used here"));
    }
    Ok(lower)
}

pub fn cluster_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 255 && s.bytes().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{}` is not a valid Envoy cluster name",
            printable(s)
        ))
    }
}

/// An `https://` (or `http://`, for local emulators) URL without whitespace or fragments.
pub fn audience(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split(['/', '?']).next().unwrap_or("");
        !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c))
    });
    let ok =
        host_ok && s.len() <= 2048 && s.bytes().all(|c| c.is_ascii_graphic()) && !s.contains('#');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{}` is not an http(s) URL such as https://bcsp-abc-uc.a.run.app",
            printable(s)
        ))
    }
}

pub fn authority(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("`{}` is not a host or host:port", printable(s)))
    }
}

pub fn url_path(s: &str) -> Result<String, String> {
    let ok = s.starts_with('/')
        && s.len() <= 1024
        && s.bytes().all(|c| c.is_ascii_graphic())
        && !s.contains(['?', '#']);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{}` must be an absolute path without query or fragment",
            printable(s)
        ))
    }
}

/// At most 64 visible characters of user input, for error messages.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}
