//! Shared helpers for the fuzz targets: small, independent reference checks (written without
//! the filter's code) that every accepted input must satisfy, so a target finds wrong answers
//! as well as panics.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// What a sender would put in a credential header for `secret`: does `value` present it?
/// `scheme`: the value must be `<scheme> SP+ <secret>` (scheme case-insensitive).
pub fn presents(value: &str, scheme: Option<&str>, secret: &str) -> bool {
    match scheme {
        None => value == secret,
        Some(s) => {
            let v = value.as_bytes();
            v.len() > s.len()
                && v[..s.len()].eq_ignore_ascii_case(s.as_bytes())
                && v[s.len()] == b' '
                && !secret.is_empty()
                && value[s.len()..].trim_start_matches(' ') == secret
        }
    }
}

/// An X-Forwarded-For entry as the standard library reads it: an address, `ip:port` or
/// `[v6]`/`[v6]:port`, after trimming spaces and tabs. The filter may refuse more (zone ids,
/// leading zeros) but never accept anything this refuses, nor read another address.
pub fn std_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim_matches(|c| c == ' ' || c == '\t');
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = e.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inside = e.strip_prefix('[')?.strip_suffix(']')?;
    inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// IPv4-mapped IPv6 as IPv4, by octets.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            if o[..10].iter().all(|&b| b == 0) && o[10] == 0xff && o[11] == 0xff {
                IpAddr::V4([o[12], o[13], o[14], o[15]].into())
            } else {
                ip
            }
        }
        v4 => v4,
    }
}

/// Splits fuzz input into `n` byte fields at 0xff separators (missing fields are empty).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == 0xff).collect();
    out.resize(n, &[]);
    out
}

use bcsp_guard::policy::Policy;

/// Whether two compiled policies are the same policy: every field the request path reads.
pub fn same_policy(a: &Policy, b: &Policy) -> bool {
    let hooks = |p: &Policy| -> Vec<(String, String, String)> {
        p.webhooks
            .iter()
            .map(|w| {
                (
                    w.path_prefix.clone(),
                    w.header.clone(),
                    w.secret.sign(b"probe"),
                )
            })
            .collect()
    };
    let routes = |p: &Policy| -> Option<Vec<bcsp_guard::policy::routes::Route>> {
        p.routes.as_ref().map(|r| r.iter().cloned().collect())
    };
    a.summary() == b.summary()
        && a.keys.headers() == b.keys.headers()
        && a.keys.keys == b.keys.keys
        && a.client_ip == b.client_ip
        && a.allow.as_ref().map(|s| s.len()) == b.allow.as_ref().map(|s| s.len())
        && a.key_id_header == b.key_id_header
        && a.www_authenticate == b.www_authenticate
        && a.upstream_token == b.upstream_token
        && a.ip_ranges == b.ip_ranges
        && routes(a) == routes(b)
        && a.max_body_bytes == b.max_body_bytes
        && hooks(a) == hooks(b)
        && a.lockout == b.lockout
        && a.warnings == b.warnings
}
