//! The compiled `upstream_token` settings: where identity tokens come from, which audience a
//! routed cluster needs, and the header they travel in.

use crate::token::schedule::Timing;

/// Cloud Run checks this header instead of `authorization` when it is present.
pub const SERVERLESS_AUTHORIZATION: &str = "x-serverless-authorization";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamToken {
    /// Envoy cluster that reaches the metadata server.
    pub cluster: String,
    pub audience: String,
    /// (routed cluster, audience), checked before `audience`.
    pub audience_by_cluster: Vec<(String, String)>,
    /// The distinct audiences keys name (`keys[].audience`); never with `audience_by_cluster`.
    pub key_audiences: Vec<String>,
    /// `authorization` or `x-serverless-authorization`.
    pub header: String,
    pub authority: String,
    pub path: String,
    pub timing: Timing,
}

impl UpstreamToken {
    pub fn audience_for(&self, routed_cluster: Option<&str>) -> &str {
        routed_cluster
            .and_then(|c| self.audience_by_cluster.iter().find(|(k, _)| k == c))
            .map_or(self.audience.as_str(), |(_, aud)| aud.as_str())
    }

    /// Every distinct audience, default first: one cache entry and one refresher each.
    pub fn audiences(&self) -> Vec<&str> {
        let mut out = vec![self.audience.as_str()];
        let more = self.audience_by_cluster.iter().map(|(_, a)| a);
        for aud in more.chain(&self.key_audiences) {
            if !out.contains(&aud.as_str()) {
                out.push(aud);
            }
        }
        out
    }

    /// The metadata request's `:path`.
    pub fn request_path(&self, audience: &str) -> String {
        format!("{}?audience={}", self.path, percent_encode(audience))
    }

    pub fn summary(&self) -> String {
        format!(
            "cluster {}, audiences [{}], header {}, refresh margin {}s, skew {}s, max wait {}ms, fetch timeout {}ms",
            self.cluster,
            self.audiences().join(", "),
            self.header,
            self.timing.refresh_margin_s,
            self.timing.expiry_skew_s,
            self.timing.max_wait_ms,
            self.timing.fetch_timeout_ms
        )
    }
}

/// RFC 3986 query-component encoding: unreserved characters stay, everything else is %XX.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_token() -> UpstreamToken {
        UpstreamToken {
            cluster: "gcp_metadata".into(),
            audience: "https://a.run.app".into(),
            audience_by_cluster: vec![
                ("eu".into(), "https://eu.run.app".into()),
                ("eu2".into(), "https://eu.run.app".into()),
            ],
            key_audiences: vec![],
            header: "authorization".into(),
            authority: "metadata.google.internal".into(),
            path: "/computeMetadata/v1/instance/service-accounts/default/identity".into(),
            timing: Timing {
                refresh_margin_s: 300,
                expiry_skew_s: 30,
                max_wait_ms: 3000,
                fetch_timeout_ms: 2000,
            },
        }
    }

    #[test]
    fn audience_follows_the_routed_cluster() {
        let c = upstream_token();
        assert_eq!(c.audience_for(Some("eu")), "https://eu.run.app");
        assert_eq!(c.audience_for(Some("other")), "https://a.run.app");
        assert_eq!(c.audience_for(None), "https://a.run.app");
        assert_eq!(
            c.audiences(),
            vec!["https://a.run.app", "https://eu.run.app"]
        );
    }

    #[test]
    fn audience_is_percent_encoded_in_the_query() {
        assert_eq!(
            upstream_token().request_path("https://a.run.app/x?y=1&z"),
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https%3A%2F%2Fa.run.app%2Fx%3Fy%3D1%26z"
        );
    }
}
