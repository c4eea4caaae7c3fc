//! The configuration exactly as users write it (JSON). Unknown fields are errors, so a typo
//! can never silently switch protection off.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub client_ip: Option<RawClientIp>,
    #[serde(default)]
    pub allow_cidrs: Option<Vec<String>>,
    #[serde(default)]
    pub key_id_header: Option<String>,
    #[serde(default)]
    pub upstream_token: Option<RawUpstreamToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    pub sha256: String,
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub from: String,
    #[serde(default)]
    pub trusted_hops: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamToken {
    pub cluster: String,
    pub audience: String,
    #[serde(default)]
    pub audience_by_cluster: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub refresh_margin_s: Option<u64>,
    #[serde(default)]
    pub expiry_skew_s: Option<u64>,
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    #[serde(default)]
    pub fetch_timeout_ms: Option<u64>,
}
