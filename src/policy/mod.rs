//! The compiled policy and the pure decisions made with it. Nothing here knows about
//! proxy-wasm: every input is a plain value, so all of it is tested natively.

pub mod client_ip;
pub mod decide;
pub mod keys;
pub mod lockout;
pub mod names;
pub mod rotation;
pub mod routes;
pub mod time;
pub mod upstream;
pub mod webhook;

use client_ip::{CidrSet, ClientIpRule};
use keys::KeySet;
use lockout::LockoutRule;
use names::Controlled;
use routes::Routes;
use upstream::UpstreamToken;
use webhook::{SecretSource, Webhook};

/// A validated configuration. Once built it cannot be invalid, so the hot path has no
/// error handling for config.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Every header a caller must not choose, removed from each admitted request (and from
    /// its trailers) in any spelling that folds to it (see [`names`]): credential headers, the
    /// key id header, with `upstream_token` the identity headers, and with `routes` the path
    /// and method override headers. Built once.
    pub controlled: Controlled,
    pub keys: KeySet,
    pub client_ip: ClientIpRule,
    /// `None`: no IP restriction.
    pub allow: Option<CidrSet>,
    /// Lower-case header that tells the upstream which key matched; `None` when turned off.
    pub key_id_header: Option<String>,
    /// The `www-authenticate` value sent with every 401, built once.
    pub www_authenticate: String,
    pub upstream_token: Option<UpstreamToken>,
    /// How many CIDRs came from `genesys_ip_ranges`, for the startup summary.
    pub ip_ranges: Option<String>,
    /// `None`: every path is admitted with a valid key.
    pub routes: Option<Routes>,
    pub max_body_bytes: u64,
    pub webhooks: Vec<Webhook>,
    pub lockout: Option<LockoutRule>,
    /// Hand each request's audit record to the host for Envoy's access log (on by default;
    /// off saves the Wasm build one host call per field).
    pub audit_fields: bool,
    /// Startup warnings the configuration itself calls for (inline webhook secrets).
    pub warnings: Vec<String>,
}

impl Policy {
    /// See [`Policy::controlled`].
    pub fn controlled_headers(&self) -> Controlled {
        let mut names: Vec<&str> = self.keys.headers().iter().map(String::as_str).collect();
        names.extend(self.key_id_header.as_deref());
        if let Some(t) = &self.upstream_token {
            names.push(upstream::SERVERLESS_AUTHORIZATION);
            names.push(&t.header);
        }
        if self.routes.is_some() {
            names.extend(names::OVERRIDE_HEADERS);
        }
        Controlled::new(names)
    }

    /// Whether a decision needs Envoy's `source.address`.
    pub fn needs_downstream(&self) -> bool {
        (self.allow.is_some() || self.lockout.is_some())
            && self.client_ip == ClientIpRule::Downstream
    }

    /// The webhook whose prefix covers the clean `path`, if any.
    pub fn webhook_for(&self, path: &str) -> Option<&Webhook> {
        self.webhooks
            .iter()
            .find(|w| routes::under_prefix(path, &w.path_prefix))
    }

    /// The one startup line: key ids and windows, CIDR count, client-IP rule. No secrets.
    pub fn summary(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .keys
            .iter()
            .map(|k| {
                let header = self
                    .keys
                    .headers()
                    .get(k.header)
                    .map_or("?", String::as_str);
                let from = k.window.not_before_ms.map(time::format_rfc3339);
                let until = k.window.not_after_ms.map(time::format_rfc3339);
                format!(
                    "{} (header {}{}, valid {} .. {}{})",
                    k.id,
                    header,
                    k.scheme
                        .as_deref()
                        .map(|s| format!(" scheme {s}"))
                        .unwrap_or_default(),
                    from.as_deref().unwrap_or("-"),
                    until.as_deref().unwrap_or("-"),
                    k.audience
                        .as_deref()
                        .map(|a| format!(", audience {a}"))
                        .unwrap_or_default(),
                )
            })
            .collect();
        let rule = match self.client_ip {
            ClientIpRule::Downstream => "downstream (the connection's peer)".to_owned(),
            ClientIpRule::ForwardedFor { trusted_hops } => {
                format!("x-forwarded-for, trusted_hops {trusted_hops}")
            }
        };
        let allow = match (&self.allow, &self.ip_ranges) {
            (Some(set), Some(r)) => format!(
                "{} CIDRs ({r}; {} ranges once merged)",
                set.len(),
                set.ranges()
            ),
            (Some(set), None) => {
                format!("{} CIDRs ({} ranges once merged)", set.len(), set.ranges())
            }
            (None, _) => "off (no IP restriction)".to_owned(),
        };
        let token = match &self.upstream_token {
            Some(t) => t.summary(),
            None => "off".to_owned(),
        };
        let routes = match &self.routes {
            None => "any path".to_owned(),
            Some(r) => {
                let list: Vec<String> = r.iter().map(ToString::to_string).collect();
                match &r.preset {
                    Some(p) => format!("preset {p} [{}]", list.join(", ")),
                    None => format!("[{}]", list.join(", ")),
                }
            }
        };
        let webhooks = if self.webhooks.is_empty() {
            "off".to_owned()
        } else {
            let list: Vec<String> = self
                .webhooks
                .iter()
                .map(|w| {
                    let source = match &w.source {
                        SecretSource::Env(name) => format!("secret from env {name}"),
                        SecretSource::Generic(name) => format!("Envoy generic secret {name}"),
                        SecretSource::GenericSds(name) => {
                            format!("Envoy generic secret {name} over SDS")
                        }
                        SecretSource::Inline => "inline secret".to_owned(),
                    };
                    format!("{} (header {}, {source})", w.path_prefix, w.header)
                })
                .collect();
            list.join(", ")
        };
        let lockout = match &self.lockout {
            Some(l) => format!(
                "{} failures in {} s → 429 for {} s",
                l.max_failures, l.window_s, l.cooldown_s
            ),
            None => "off".to_owned(),
        };
        format!(
            "bcsp-guard policy: keys [{}]; client ip: {rule}; ip allowlist: {allow}; key id header: {}; \
             routes: {routes}; max body: {} bytes; webhooks: {webhooks}; lockout: {lockout}; upstream token: {token}",
            keys.join(", "),
            self.key_id_header.as_deref().unwrap_or("off"),
            self.max_body_bytes,
        )
    }
}
