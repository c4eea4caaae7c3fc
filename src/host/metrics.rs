//! Named counters and gauges, one per outcome. Definition may fail (GCP Service Extensions
//! has no custom metrics): then the metric is `None` and every update is skipped.

use crate::policy::decide::DenyReason;
use crate::policy::Policy;

pub const PREFIX: &str = "bcsp_guard.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Metric ids as the host handed them out.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub allowed: Option<u32>,
    pub denied_ip: Option<u32>,
    pub denied_missing_key: Option<u32>,
    pub denied_invalid_key: Option<u32>,
    pub denied_expired_key: Option<u32>,
    pub denied_no_token: Option<u32>,
    pub token_fetch_ok: Option<u32>,
    pub token_fetch_failed: Option<u32>,
    pub token_waited: Option<u32>,
    /// Gauge: seconds left on the token that expires soonest.
    pub token_seconds_left: Option<u32>,
    /// `key.<id>.accepted`, in key order.
    pub key_accepted: Vec<Option<u32>>,
}

impl Stats {
    pub fn define(policy: &Policy, mut define: impl FnMut(Kind, &str) -> Option<u32>) -> Stats {
        let mut c = |name: &str| define(Kind::Counter, &format!("{PREFIX}{name}"));
        let mut stats = Stats {
            allowed: c("allowed"),
            denied_ip: c("denied.ip"),
            denied_missing_key: c("denied.missing_key"),
            denied_invalid_key: c("denied.invalid_key"),
            denied_expired_key: c("denied.expired_key"),
            key_accepted: policy
                .keys
                .keys
                .iter()
                .map(|k| c(&format!("key.{}.accepted", k.id)))
                .collect(),
            ..Stats::default()
        };
        if policy.upstream_token.is_some() {
            stats.denied_no_token = c("denied.no_token");
            stats.token_fetch_ok = c("token.fetch_ok");
            stats.token_fetch_failed = c("token.fetch_failed");
            stats.token_waited = c("token.waited");
            stats.token_seconds_left = define(Kind::Gauge, &format!("{PREFIX}token.seconds_left"));
        }
        stats
    }

    pub fn for_denial(&self, reason: DenyReason) -> Option<u32> {
        match reason {
            DenyReason::ClientUnknown(_) | DenyReason::ClientNotAllowed => self.denied_ip,
            DenyReason::MissingKey => self.denied_missing_key,
            DenyReason::DuplicateHeader | DenyReason::InvalidKey => self.denied_invalid_key,
            DenyReason::KeyOutsideWindow => self.denied_expired_key,
        }
    }
}
