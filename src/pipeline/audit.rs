//! The audit record: what the pipeline decided for one request and why, in fields an access
//! log prints as they are (no parsing). Hosts only write it out (the Wasm build as filter
//! state, the dynamic module as dynamic metadata). It never holds a secret, hash, token or
//! signature: every value is either chosen by the operator's config (key id, route, webhook
//! prefix, audience), a fixed code, or a parsed IP address.

use super::metrics::Stats;
use crate::config::fields::printable;
use crate::policy::client_ip::ClientIpRule;
use crate::policy::decide::DenyReason;
use std::borrow::Cow;
use std::net::IpAddr;

/// Why a request ended as it did. Its code is the counter's name without the `bcsp_guard.`
/// prefix, so access-log lines and Prometheus series group the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Allowed,
    WebhookAccepted,
    Ip,
    MissingKey,
    InvalidKey,
    ExpiredKey,
    LockedOut,
    Route,
    MediaType,
    BodyTooLarge,
    WebhookSignature,
    WebhookIncomplete,
    NoToken,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::Allowed,
        Reason::WebhookAccepted,
        Reason::Ip,
        Reason::MissingKey,
        Reason::InvalidKey,
        Reason::ExpiredKey,
        Reason::LockedOut,
        Reason::Route,
        Reason::MediaType,
        Reason::BodyTooLarge,
        Reason::WebhookSignature,
        Reason::WebhookIncomplete,
        Reason::NoToken,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::WebhookAccepted => "webhook.accepted",
            Reason::Ip => "denied.ip",
            Reason::MissingKey => "denied.missing_key",
            Reason::InvalidKey => "denied.invalid_key",
            Reason::ExpiredKey => "denied.expired_key",
            Reason::LockedOut => "denied.locked_out",
            Reason::Route => "denied.route",
            Reason::MediaType => "denied.media_type",
            Reason::BodyTooLarge => "denied.body_too_large",
            Reason::WebhookSignature => "denied.webhook_signature",
            Reason::WebhookIncomplete => "denied.webhook_incomplete",
            Reason::NoToken => "denied.no_token",
        }
    }

    /// The counter this outcome increments.
    pub fn counter(self, stats: &Stats) -> Option<u32> {
        match self {
            Reason::Allowed => stats.allowed,
            Reason::WebhookAccepted => stats.webhook_accepted,
            Reason::Ip => stats.denied_ip,
            Reason::MissingKey => stats.denied_missing_key,
            Reason::InvalidKey => stats.denied_invalid_key,
            Reason::ExpiredKey => stats.denied_expired_key,
            Reason::LockedOut => stats.denied_locked_out,
            Reason::Route => stats.denied_route,
            Reason::MediaType => stats.denied_media_type,
            Reason::BodyTooLarge => stats.denied_body_too_large,
            Reason::WebhookSignature => stats.denied_webhook_signature,
            Reason::WebhookIncomplete => stats.denied_webhook_incomplete,
            Reason::NoToken => stats.denied_no_token,
        }
    }

    pub fn of_denial(reason: DenyReason) -> Reason {
        match reason {
            DenyReason::ClientUnknown(_) | DenyReason::ClientNotAllowed => Reason::Ip,
            DenyReason::MissingKey => Reason::MissingKey,
            DenyReason::DuplicateHeader | DenyReason::InvalidKey => Reason::InvalidKey,
            DenyReason::KeyOutsideWindow => Reason::ExpiredKey,
        }
    }
}

/// The lockout book's view of the client, when lockout is configured and the client known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lockout {
    /// Checked: not locked out.
    Clear,
    /// This 401 was counted towards a lockout.
    Counted,
    /// This 401 started a lockout.
    Started,
    /// Refused because the client is locked out.
    Locked,
}

impl Lockout {
    pub fn code(self) -> &'static str {
        match self {
            Lockout::Clear => "clear",
            Lockout::Counted => "counted",
            Lockout::Started => "started",
            Lockout::Locked => "locked",
        }
    }
}

/// What the pipeline decided for a request. A host writes every field that is `Some` and
/// keeps what an earlier record of the same request set: a request admitted and later cut
/// off (413 mid-body, 503 after waiting for a token) keeps its key, route and audience.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// The key that authenticated the request.
    pub key_id: Option<String>,
    /// `None`: not decided by this record. `Some(None)`: forwarded; `Some(Some(s))`: refused
    /// with status `s`.
    pub verdict: Option<Option<u32>>,
    pub reason: Option<Reason>,
    /// The client address the IP rule (allowlist, lockout) worked with.
    pub client: Option<IpAddr>,
    /// Where `client` came from: `peer`, or `xff-N` (the N-th X-Forwarded-For entry from the
    /// right).
    pub client_source: Option<String>,
    /// The route (`METHOD /path`) or webhook (`webhook /prefix`) the request matched.
    pub route: Option<String>,
    /// The audience of the identity token injected (never the token).
    pub audience: Option<String>,
    pub lockout: Option<Lockout>,
}

/// One audit field as hosts export it.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name: the dynamic module's metadata key (namespace `bcsp_guard`), and the key of
    /// the access log's JSON line.
    pub name: &'static str,
    /// The Wasm property it is written to (Envoy's filter state `wasm.<property>`).
    pub property: &'static str,
}

const fn field(name: &'static str, property: &'static str) -> Field {
    Field { name, property }
}

/// Every field, in [`Audit::fields`] order.
pub const FIELDS: [Field; 8] = [
    field("key_id", "bcsp_guard.key_id"),
    field("verdict", "bcsp_guard.verdict"),
    field("reason", "bcsp_guard.reason"),
    field("client", "bcsp_guard.client"),
    field("client_source", "bcsp_guard.client_source"),
    field("route", "bcsp_guard.route"),
    field("audience", "bcsp_guard.audience"),
    field("lockout", "bcsp_guard.lockout"),
];

/// The longest value written; config-chosen values are short, this only bounds surprises.
const MAX_VALUE: usize = 64;

/// `s` as written out: lent when already printable and short, else cut and cleaned.
fn bounded(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_VALUE && s.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(printable(s))
    }
}

impl Audit {
    pub fn decided(reason: Reason, status: Option<u32>) -> Audit {
        Audit {
            verdict: Some(status),
            reason: Some(reason),
            ..Audit::default()
        }
    }

    /// The client and where the rule took it from.
    pub fn with_client(mut self, client: Option<IpAddr>, rule: ClientIpRule) -> Audit {
        if let Some(ip) = client {
            self.client = Some(ip);
            self.client_source = Some(match rule {
                ClientIpRule::Downstream => "peer".to_owned(),
                ClientIpRule::ForwardedFor { trusted_hops } => format!("xff-{trusted_hops}"),
            });
        }
        self
    }

    /// Every field that is set, with its value: printable ASCII, at most 64 characters (plus
    /// `...` when cut). Values already in that shape are lent, not copied.
    pub fn fields(&self) -> impl Iterator<Item = (&'static Field, Cow<'_, str>)> + '_ {
        let values: [Option<Cow<'_, str>>; 8] = [
            self.key_id.as_deref().map(bounded),
            self.verdict.map(|v| match v {
                None => Cow::Borrowed("forwarded"),
                Some(status) => Cow::Owned(status.to_string()),
            }),
            self.reason.map(|r| Cow::Borrowed(r.code())),
            self.client.map(|ip| Cow::Owned(ip.to_string())),
            self.client_source.as_deref().map(Cow::Borrowed),
            self.route.as_deref().map(bounded),
            self.audience.as_deref().map(bounded),
            self.lockout.map(|l| Cow::Borrowed(l.code())),
        ];
        FIELDS
            .iter()
            .zip(values)
            .filter_map(|(field, v)| v.map(|v| (field, v)))
    }

    /// `later` on top of `self`: its set fields win, the others stay.
    pub fn merge(&mut self, later: &Audit) {
        fn over<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if b.is_some() {
                a.clone_from(b);
            }
        }
        over(&mut self.key_id, &later.key_id);
        over(&mut self.verdict, &later.verdict);
        over(&mut self.reason, &later.reason);
        over(&mut self.client, &later.client);
        over(&mut self.client_source, &later.client_source);
        over(&mut self.route, &later.route);
        over(&mut self.audience, &later.audience);
        over(&mut self.lockout, &later.lockout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_is_the_field_name_under_the_filter_prefix() {
        for f in &FIELDS {
            assert_eq!(f.property, format!("bcsp_guard.{}", f.name));
        }
    }

    #[test]
    fn fields_are_bounded_and_printable() {
        let a = Audit {
            route: Some(format!("GET /{}\u{7}", "x".repeat(100))),
            ..Audit::decided(Reason::Route, Some(404))
        };
        let f: Vec<_> = a.fields().map(|(f, v)| (f.name, v.into_owned())).collect();
        assert_eq!(f[0], ("verdict", "404".to_owned()));
        assert_eq!(f[1], ("reason", "denied.route".to_owned()));
        let route = &f[2].1;
        assert!(route.len() <= 67 && route.ends_with("..."), "{route}");
        assert!(route.bytes().all(|c| c.is_ascii_graphic() || c == b' '));
    }

    #[test]
    fn merge_keeps_what_the_later_record_leaves_unset() {
        let mut a = Audit {
            key_id: Some("a".into()),
            audience: Some("aud".into()),
            ..Audit::decided(Reason::Allowed, None)
        };
        a.merge(&Audit::decided(Reason::NoToken, Some(503)));
        assert_eq!(a.key_id.as_deref(), Some("a"));
        assert_eq!(a.audience.as_deref(), Some("aud"));
        assert_eq!(a.verdict, Some(Some(503)));
        assert_eq!(a.reason, Some(Reason::NoToken));
    }

    #[test]
    fn client_source_names_the_rule() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a =
            Audit::default().with_client(Some(ip), ClientIpRule::ForwardedFor { trusted_hops: 2 });
        assert_eq!(a.client_source.as_deref(), Some("xff-2"));
        let a = Audit::default().with_client(Some(ip), ClientIpRule::Downstream);
        assert_eq!(a.client_source.as_deref(), Some("peer"));
        let a = Audit::default().with_client(None, ClientIpRule::Downstream);
        assert_eq!(a.client_source, None);
    }
}
