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
    /// 404 and 405 under `routes`.
    pub denied_route: Option<u32>,
    pub denied_media_type: Option<u32>,
    pub denied_body_too_large: Option<u32>,
    pub denied_webhook_signature: Option<u32>,
    /// Held webhook deliveries whose body never arrived in full (408 / 503).
    pub denied_webhook_incomplete: Option<u32>,
    pub webhook_accepted: Option<u32>,
    /// 429s while a client is locked out.
    pub denied_locked_out: Option<u32>,
    pub lockout_started: Option<u32>,
    /// Gauge: whole days left on the soonest-expiring key.
    pub key_days_left_min: Option<u32>,
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
            denied_body_too_large: c("denied.body_too_large"),
            ..Stats::default()
        };
        if policy.routes.is_some() {
            stats.denied_route = c("denied.route");
            stats.denied_media_type = c("denied.media_type");
        }
        if !policy.webhooks.is_empty() {
            stats.denied_webhook_signature = c("denied.webhook_signature");
            stats.denied_webhook_incomplete = c("denied.webhook_incomplete");
            stats.webhook_accepted = c("webhook.accepted");
        }
        if policy.lockout.is_some() {
            stats.denied_locked_out = c("denied.locked_out");
            stats.lockout_started = c("lockout.started");
        }
        let days_left = policy
            .keys
            .keys
            .iter()
            .any(|k| k.window.not_after_ms.is_some());
        if policy.upstream_token.is_some() {
            stats.denied_no_token = c("denied.no_token");
            stats.token_fetch_ok = c("token.fetch_ok");
            stats.token_fetch_failed = c("token.fetch_failed");
            stats.token_waited = c("token.waited");
            stats.token_seconds_left = define(Kind::Gauge, &format!("{PREFIX}token.seconds_left"));
        }
        if days_left {
            stats.key_days_left_min = define(Kind::Gauge, &format!("{PREFIX}key.days_left_min"));
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
