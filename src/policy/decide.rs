//! One request's verdict: admit with the matched key, or deny with a reason that maps to a
//! status, a counter and a log line. IP is checked before credentials.

use super::client_ip::Unknown;
use super::keys::{Key, KeyId, KeyMatch};
use super::Policy;
use std::net::IpAddr;

/// What the host hands over about one request.
pub struct RequestView<'a> {
    /// All request headers; names lower-case as proxy-wasm delivers them.
    pub headers: &'a [(&'a str, &'a str)],
    /// Envoy's `source.address`, read only when [`Policy::needs_downstream`].
    pub downstream: Option<&'a str>,
    pub now_ms: i64,
}

impl RequestView<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[derive(Debug)]
pub enum Decision<'p> {
    Admit(&'p Key),
    Deny(Denial<'p>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Denial<'p> {
    pub reason: DenyReason,
    /// The client address when the IP rule was evaluated.
    pub client: Option<IpAddr>,
    /// The key whose secret matched but whose window is closed.
    pub key: Option<&'p KeyId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    ClientUnknown(Unknown),
    ClientNotAllowed,
    MissingKey,
    DuplicateHeader,
    InvalidKey,
    KeyOutsideWindow,
}

impl DenyReason {
    pub fn status(self) -> u32 {
        match self {
            DenyReason::ClientUnknown(_) | DenyReason::ClientNotAllowed => 403,
            _ => 401,
        }
    }

    /// For the log line; callers never see it (every 401 looks the same).
    pub fn describe(self) -> &'static str {
        match self {
            DenyReason::ClientUnknown(u) => u.as_str(),
            DenyReason::ClientNotAllowed => "client address not in allow_cidrs",
            DenyReason::MissingKey => "no credential header",
            DenyReason::DuplicateHeader => "credential header repeated",
            DenyReason::InvalidKey => "credential matches no key",
            DenyReason::KeyOutsideWindow => "key outside its validity window",
        }
    }
}

pub fn decide<'p>(policy: &'p Policy, req: &RequestView<'_>) -> Decision<'p> {
    match check_ip(policy, req) {
        Err(d) => Decision::Deny(d),
        Ok(client) => check_key(policy, req, client),
    }
}

/// The client address by the configured rule (for the allowlist, lockout and logs).
pub fn client_of(policy: &Policy, req: &RequestView<'_>) -> Result<IpAddr, Unknown> {
    let xff: Vec<&str> = req.headers_named("x-forwarded-for").collect();
    policy.client_ip.client(&xff, req.downstream)
}

/// The allowlist step: `Ok(Some(client))` inside it, `Ok(None)` when there is no allowlist.
pub fn check_ip<'p>(
    policy: &'p Policy,
    req: &RequestView<'_>,
) -> Result<Option<IpAddr>, Denial<'p>> {
    let Some(allow) = &policy.allow else {
        return Ok(None);
    };
    match client_of(policy, req) {
        Err(why) => Err(denial(DenyReason::ClientUnknown(why), None, None)),
        Ok(ip) if !allow.contains(ip) => Err(denial(DenyReason::ClientNotAllowed, Some(ip), None)),
        Ok(ip) => Ok(Some(ip)),
    }
}

/// The credential step; `client` is only carried into a denial for the log.
pub fn check_key<'p>(
    policy: &'p Policy,
    req: &RequestView<'_>,
    client: Option<IpAddr>,
) -> Decision<'p> {
    match policy.keys.check(req.headers, req.now_ms) {
        KeyMatch::Valid(key) => Decision::Admit(key),
        KeyMatch::Missing => deny(DenyReason::MissingKey, client, None),
        KeyMatch::Duplicate => deny(DenyReason::DuplicateHeader, client, None),
        KeyMatch::Invalid => deny(DenyReason::InvalidKey, client, None),
        KeyMatch::OutsideWindow(k) => deny(DenyReason::KeyOutsideWindow, client, Some(&k.id)),
    }
}

fn deny<'p>(reason: DenyReason, client: Option<IpAddr>, key: Option<&'p KeyId>) -> Decision<'p> {
    Decision::Deny(denial(reason, client, key))
}

fn denial<'p>(reason: DenyReason, client: Option<IpAddr>, key: Option<&'p KeyId>) -> Denial<'p> {
    Denial {
        reason,
        client,
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn policy(extra: &str) -> Policy {
        let hash = crate::policy::keys::SecretHash::of(b"s3cret").to_hex();
        let json = format!(
            r#"{{"keys":[{{"id":"k1","sha256":"{hash}","not_after":"2030-01-01T00:00:00Z"}}]{extra}}}"#
        );
        config::compile(json.as_bytes()).unwrap()
    }

    fn verdict(
        p: &Policy,
        headers: &[(&str, &str)],
        downstream: Option<&str>,
        now_ms: i64,
    ) -> String {
        let view = RequestView {
            headers,
            downstream,
            now_ms,
        };
        match decide(p, &view) {
            Decision::Admit(k) => format!("admit {}", k.id),
            Decision::Deny(d) => format!("{} {:?}", d.reason.status(), d.reason),
        }
    }

    #[test]
    fn ip_is_checked_before_credentials() {
        let p = policy(r#","allow_cidrs":["10.0.0.0/8"]"#);
        assert_eq!(
            verdict(&p, &[("x-bcsp-key", "s3cret")], Some("10.1.2.3:5555"), 0),
            "admit k1"
        );
        assert_eq!(verdict(&p, &[], Some("10.1.2.3:5555"), 0), "401 MissingKey");
        assert_eq!(
            verdict(&p, &[("x-bcsp-key", "s3cret")], Some("11.1.2.3:5555"), 0),
            "403 ClientNotAllowed"
        );
        assert_eq!(
            verdict(&p, &[], Some("11.1.2.3:5555"), 0),
            "403 ClientNotAllowed"
        );
        assert_eq!(
            verdict(
                &p,
                &[("x-bcsp-key", "s3cret"), ("x-forwarded-for", "10.0.0.1")],
                Some("10.0.0.1:0"),
                0
            ),
            "403 ClientUnknown(DownstreamFromHeader)"
        );
    }

    #[test]
    fn forwarded_for_rule_ignores_a_forged_leftmost_entry() {
        let p = policy(
            r#","allow_cidrs":["10.0.0.0/8"],"client_ip":{"from":"x-forwarded-for","trusted_hops":2}"#,
        );
        let key = ("x-bcsp-key", "s3cret");
        assert_eq!(
            verdict(
                &p,
                &[key, ("x-forwarded-for", "10.9.9.9, 10.0.0.7, 127.0.0.1")],
                None,
                0
            ),
            "admit k1"
        );
        assert_eq!(
            verdict(
                &p,
                &[key, ("x-forwarded-for", "10.9.9.9, 8.8.8.8, 127.0.0.1")],
                None,
                0
            ),
            "403 ClientNotAllowed"
        );
        assert_eq!(
            verdict(&p, &[key, ("x-forwarded-for", "127.0.0.1")], None, 0),
            "403 ClientUnknown(TooFewForwardedEntries)"
        );
    }

    #[test]
    fn no_allowlist_means_no_ip_check_at_all() {
        let p = policy("");
        assert_eq!(
            verdict(&p, &[("x-bcsp-key", "s3cret")], None, 0),
            "admit k1"
        );
    }

    #[test]
    fn every_credential_failure_is_a_401() {
        let p = policy("");
        let late = 1_893_456_000_000; // 2030-01-01
        assert_eq!(
            verdict(&p, &[("x-bcsp-key", "s3cret")], None, late),
            "401 KeyOutsideWindow"
        );
        assert_eq!(
            verdict(&p, &[("x-bcsp-key", "nope")], None, 0),
            "401 InvalidKey"
        );
        assert_eq!(
            verdict(
                &p,
                &[("x-bcsp-key", "s3cret"), ("x-bcsp-key", "s3cret")],
                None,
                0
            ),
            "401 DuplicateHeader"
        );
        assert_eq!(verdict(&p, &[], None, 0), "401 MissingKey");
    }
}
