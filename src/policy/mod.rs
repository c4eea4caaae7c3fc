//! The compiled policy and the pure decisions made with it. Nothing here knows about
//! proxy-wasm: every input is a plain value, so all of it is tested natively.

pub mod client_ip;
pub mod decide;
pub mod keys;
pub mod time;
pub mod upstream;

use client_ip::{CidrSet, ClientIpRule};
use keys::KeySet;
use upstream::UpstreamToken;

/// A validated configuration. Once built it cannot be invalid, so the hot path has no
/// error handling for config.
#[derive(Clone, Debug)]
pub struct Policy {
    pub keys: KeySet,
    pub client_ip: ClientIpRule,
    /// `None`: no IP restriction.
    pub allow: Option<CidrSet>,
    /// Lower-case header that tells the upstream which key matched; `None` when turned off.
    pub key_id_header: Option<String>,
    /// The `www-authenticate` value sent with every 401, built once.
    pub www_authenticate: String,
    pub upstream_token: Option<UpstreamToken>,
}

impl Policy {
    /// Whether a decision needs Envoy's `source.address`.
    pub fn needs_downstream(&self) -> bool {
        self.allow.is_some() && self.client_ip == ClientIpRule::Downstream
    }

    /// The one startup line: key ids and windows, CIDR count, client-IP rule. No secrets.
    pub fn summary(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .keys
            .iter()
            .map(|k| {
                let header = self.keys.headers.get(k.header).map_or("?", String::as_str);
                let from = k.window.not_before_ms.map(time::format_rfc3339);
                let until = k.window.not_after_ms.map(time::format_rfc3339);
                format!(
                    "{} (header {}{}, valid {} .. {})",
                    k.id,
                    header,
                    k.scheme
                        .as_deref()
                        .map(|s| format!(" scheme {s}"))
                        .unwrap_or_default(),
                    from.as_deref().unwrap_or("-"),
                    until.as_deref().unwrap_or("-"),
                )
            })
            .collect();
        let rule = match self.client_ip {
            ClientIpRule::Downstream => "downstream (source.address)".to_owned(),
            ClientIpRule::ForwardedFor { trusted_hops } => {
                format!("x-forwarded-for, trusted_hops {trusted_hops}")
            }
        };
        let allow = match &self.allow {
            Some(set) => format!("{} CIDRs", set.len()),
            None => "off (no IP restriction)".to_owned(),
        };
        let token = match &self.upstream_token {
            Some(t) => t.summary(),
            None => "off".to_owned(),
        };
        format!(
            "bcsp-guard policy: keys [{}]; client ip: {rule}; ip allowlist: {allow}; key id header: {}; upstream token: {token}",
            keys.join(", "),
            self.key_id_header.as_deref().unwrap_or("off"),
        )
    }
}
