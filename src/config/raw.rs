//! The configuration exactly as users write it (JSON). Unknown fields are errors, so a typo
//! can never silently switch protection off.

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

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
    #[serde(default)]
    pub genesys_ip_ranges: Option<RawIpRanges>,
    #[serde(default)]
    pub routes: Option<RawRoutes>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub webhooks: Option<Vec<RawWebhook>>,
    #[serde(default)]
    pub lockout: Option<RawLockout>,
    /// Whether each request's decision is handed to Envoy for its access log.
    #[serde(default)]
    pub audit_fields: Option<bool>,
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
    /// The identity-token audience for requests this key admits.
    #[serde(default)]
    pub audience: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIpRanges {
    pub document: RawIpDocument,
    #[serde(default)]
    pub services: Option<Vec<String>>,
    pub regions: Vec<String>,
}

/// Genesys's document as it publishes it: fields we do not use are tolerated, so a pasted
/// response keeps working when Genesys adds some (`direction`, paging fields).
#[derive(Deserialize)]
pub struct RawIpDocument {
    pub entities: Vec<RawIpRange>,
}

#[derive(Deserialize)]
pub struct RawIpRange {
    pub cidr: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

/// `routes`: a preset object, or an explicit list. Deserialized by hand so that either shape
/// keeps serde_path_to_error's field paths (`routes[2].method`, `routes.base_path`).
pub enum RawRoutes {
    Preset(RawRoutePreset),
    List(Vec<RawRoute>),
}

impl<'de> Deserialize<'de> for RawRoutes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawRoutes, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = RawRoutes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "{\"preset\": \"digital-bot-connector-v2\", \"base_path\": ...} or a list of {\"method\", \"path\"}",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawRoutes, A::Error> {
                Vec::<RawRoute>::deserialize(SeqAccessDeserializer::new(seq)).map(RawRoutes::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRoutes, A::Error> {
                RawRoutePreset::deserialize(MapAccessDeserializer::new(map)).map(RawRoutes::Preset)
            }
        }
        d.deserialize_any(Shape)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoutePreset {
    pub preset: String,
    #[serde(default)]
    pub base_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub method: String,
    pub path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub path_prefix: String,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_generic: Option<String>,
    #[serde(default)]
    pub secret_generic_sds: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLockout {
    #[serde(default)]
    pub max_failures: Option<u64>,
    #[serde(default)]
    pub window_s: Option<u64>,
    #[serde(default)]
    pub cooldown_s: Option<u64>,
}
