//! Configuration: JSON → validated, compiled [`Policy`]. Every error names the field path
//! (`keys[1].sha256: ...`) so one log line tells the operator what to fix.

mod fields;
mod raw;

use crate::policy::client_ip::{Cidr, CidrSet, ClientIpRule};
use crate::policy::keys::{Key, KeyId, KeySet, SecretHash, Window};
use crate::policy::time::parse_rfc3339;
use crate::policy::upstream::UpstreamToken;
use crate::policy::Policy;
use crate::token::schedule::Timing;
use raw::{RawClientIp, RawConfig, RawKey, RawUpstreamToken};
use std::fmt;

pub const MAX_KEYS: usize = 64;
pub const MAX_CIDRS: usize = 10_000;
pub const MAX_AUDIENCES: usize = 16;
pub const DEFAULT_KEY_HEADER: &str = "x-bcsp-key";
pub const DEFAULT_KEY_ID_HEADER: &str = "x-bcsp-key-id";
pub const DEFAULT_METADATA_AUTHORITY: &str = "metadata.google.internal";
pub const DEFAULT_METADATA_PATH: &str =
    "/computeMetadata/v1/instance/service-accounts/default/identity";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `keys[1].sha256`, or empty for the document as a whole.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates the filter configuration.
pub fn compile(json: &[u8]) -> Result<Policy, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::at("", "is empty; at least `keys` is required"));
    }
    if json.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::at("", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        // serde_json appends "at line L column C"; keep it, it helps find the spot.
        ConfigError::at(path, e.into_inner().to_string())
    })?;
    compile_raw(raw)
}

fn compile_raw(raw: RawConfig) -> Result<Policy, ConfigError> {
    let keys = compile_keys(&raw.keys)?;
    let client_ip = compile_client_ip(raw.client_ip.as_ref())?;
    let allow = match raw.allow_cidrs {
        None => None,
        Some(list) if list.is_empty() => None,
        Some(list) => Some(compile_cidrs(&list)?),
    };
    let key_id_header = match raw.key_id_header.as_deref() {
        None => Some(DEFAULT_KEY_ID_HEADER.to_owned()),
        Some("") => None,
        Some(h) => Some(fields::header_name(h).map_err(|m| ConfigError::at("key_id_header", m))?),
    };
    if let Some(id_header) = &key_id_header {
        if keys.headers.contains(id_header) {
            return Err(ConfigError::at(
                "key_id_header",
                format!("`{id_header}` is also a credential header"),
            ));
        }
    }
    let upstream_token = match &raw.upstream_token {
        None => None,
        Some(t) => Some(compile_upstream(t)?),
    };
    if let (Some(t), Some(id_header)) = (&upstream_token, &key_id_header) {
        if &t.header == id_header {
            return Err(ConfigError::at(
                "key_id_header",
                format!("`{id_header}` is also upstream_token.header"),
            ));
        }
    }
    let www_authenticate = challenge(&keys);
    Ok(Policy {
        keys,
        client_ip,
        allow,
        key_id_header,
        www_authenticate,
        upstream_token,
    })
}

fn compile_keys(raw: &[RawKey]) -> Result<KeySet, ConfigError> {
    if raw.is_empty() || raw.len() > MAX_KEYS {
        return Err(ConfigError::at(
            "keys",
            format!("must hold 1 to {MAX_KEYS} keys, got {}", raw.len()),
        ));
    }
    let mut headers: Vec<String> = Vec::new();
    let mut keys: Vec<Key> = Vec::with_capacity(raw.len());
    for (i, k) in raw.iter().enumerate() {
        let at = |field: &str| format!("keys[{i}].{field}");
        let id = KeyId::parse(&k.id).ok_or_else(|| {
            ConfigError::at(at("id"), "must be 1-64 characters of A-Z a-z 0-9 . _ -")
        })?;
        if keys.iter().any(|other| other.id == id) {
            return Err(ConfigError::at(
                at("id"),
                format!("`{id}` is used by another key"),
            ));
        }
        // Prometheus turns `.` and `-` into `_`: `a-b` and `a.b` would be one metric name.
        let metric_name = |k: &KeyId| k.as_str().replace(['.', '-'], "_");
        if let Some(other) = keys.iter().find(|o| metric_name(&o.id) == metric_name(&id)) {
            return Err(ConfigError::at(
                at("id"),
                format!(
                    "`{id}` and `{}` would share one Prometheus metric name",
                    other.id
                ),
            ));
        }
        let header = match &k.header {
            None => DEFAULT_KEY_HEADER.to_owned(),
            Some(h) => fields::header_name(h).map_err(|m| ConfigError::at(at("header"), m))?,
        };
        let scheme = match &k.scheme {
            None => None,
            Some(s) if fields::is_token(s) => Some(s.clone()),
            Some(_) => {
                return Err(ConfigError::at(
                    at("scheme"),
                    "must be a single word such as `Bearer`",
                ))
            }
        };
        let hash = SecretHash::from_hex(&k.sha256).ok_or_else(|| {
            ConfigError::at(
                at("sha256"),
                "expected 64 hex characters (SHA-256 of the secret)",
            )
        })?;
        let stamp = |field: &str, v: &Option<String>| -> Result<Option<i64>, ConfigError> {
            v.as_deref()
                .map(|s| {
                    parse_rfc3339(s).ok_or_else(|| {
                        ConfigError::at(
                            at(field),
                            "expected an RFC 3339 timestamp such as 2026-10-01T00:00:00Z",
                        )
                    })
                })
                .transpose()
        };
        let window = Window {
            not_before_ms: stamp("not_before", &k.not_before)?,
            not_after_ms: stamp("not_after", &k.not_after)?,
        };
        if let (Some(nb), Some(na)) = (window.not_before_ms, window.not_after_ms) {
            if nb >= na {
                return Err(ConfigError::at(
                    at("not_after"),
                    "must be later than not_before",
                ));
            }
        }
        let header_index = match headers.iter().position(|h| *h == header) {
            Some(p) => p,
            None => {
                headers.push(header);
                headers.len() - 1
            }
        };
        keys.push(Key {
            id,
            header: header_index,
            scheme,
            hash,
            window,
        });
    }
    Ok(KeySet { headers, keys })
}

fn compile_client_ip(raw: Option<&RawClientIp>) -> Result<ClientIpRule, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ClientIpRule::Downstream);
    };
    match (raw.from.as_str(), raw.trusted_hops) {
        ("downstream", None) => Ok(ClientIpRule::Downstream),
        ("downstream", Some(_)) => Err(ConfigError::at(
            "client_ip.trusted_hops",
            "only applies to `\"from\": \"x-forwarded-for\"`",
        )),
        ("x-forwarded-for", Some(n)) if (1..=32).contains(&n) => {
            let trusted_hops = u8::try_from(n)
                .map_err(|_| ConfigError::at("client_ip.trusted_hops", "too large"))?;
            Ok(ClientIpRule::ForwardedFor { trusted_hops })
        }
        ("x-forwarded-for", Some(n)) => Err(ConfigError::at(
            "client_ip.trusted_hops",
            format!(
                "must be 1 to 32 (the number of proxies that append to X-Forwarded-For), got {n}"
            ),
        )),
        ("x-forwarded-for", None) => Err(ConfigError::at(
            "client_ip.trusted_hops",
            "is required with `\"from\": \"x-forwarded-for\"`",
        )),
        (other, _) => Err(ConfigError::at(
            "client_ip.from",
            format!(
                "must be `downstream` or `x-forwarded-for`, got `{}`",
                fields::printable(other)
            ),
        )),
    }
}

fn compile_cidrs(list: &[String]) -> Result<CidrSet, ConfigError> {
    if list.len() > MAX_CIDRS {
        return Err(ConfigError::at(
            "allow_cidrs",
            format!("at most {MAX_CIDRS} entries"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let cidr = Cidr::parse(s).map_err(|m| {
            ConfigError::at(
                format!("allow_cidrs[{i}]"),
                format!("`{}`: {m}", fields::printable(s)),
            )
        })?;
        out.push(cidr);
    }
    Ok(CidrSet::new(out))
}

fn compile_upstream(raw: &RawUpstreamToken) -> Result<UpstreamToken, ConfigError> {
    let at = |f: &str| format!("upstream_token.{f}");
    let cluster =
        fields::cluster_name(&raw.cluster).map_err(|m| ConfigError::at(at("cluster"), m))?;
    let audience =
        fields::audience(&raw.audience).map_err(|m| ConfigError::at(at("audience"), m))?;
    let mut by_cluster = Vec::new();
    for (c, aud) in raw.audience_by_cluster.iter().flatten() {
        let path = format!("upstream_token.audience_by_cluster.{c}");
        let c = fields::cluster_name(c).map_err(|m| ConfigError::at(path.clone(), m))?;
        let aud = fields::audience(aud).map_err(|m| ConfigError::at(path, m))?;
        by_cluster.push((c, aud));
    }
    let header = match raw
        .header
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("authorization") => "authorization".to_owned(),
        Some("x-serverless-authorization") => "x-serverless-authorization".to_owned(),
        Some(_) => {
            return Err(ConfigError::at(
                at("header"),
                "must be `authorization` or `x-serverless-authorization`",
            ))
        }
    };
    let authority = match &raw.authority {
        None => DEFAULT_METADATA_AUTHORITY.to_owned(),
        Some(a) => fields::authority(a).map_err(|m| ConfigError::at(at("authority"), m))?,
    };
    let path = match &raw.path {
        None => DEFAULT_METADATA_PATH.to_owned(),
        Some(p) => fields::url_path(p).map_err(|m| ConfigError::at(at("path"), m))?,
    };
    let num =
        |field: &str, v: Option<u64>, default: u64, lo: u64, hi: u64| -> Result<u64, ConfigError> {
            let v = v.unwrap_or(default);
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(ConfigError::at(
                    at(field),
                    format!("must be {lo} to {hi}, got {v}"),
                ))
            }
        };
    let timing = Timing {
        refresh_margin_s: num("refresh_margin_s", raw.refresh_margin_s, 300, 1, 3000)?,
        expiry_skew_s: num("expiry_skew_s", raw.expiry_skew_s, 30, 1, 600)?,
        max_wait_ms: num("max_wait_ms", raw.max_wait_ms, 3000, 1, 60_000)?,
        fetch_timeout_ms: num("fetch_timeout_ms", raw.fetch_timeout_ms, 2000, 100, 60_000)?,
    };
    if timing.expiry_skew_s >= timing.refresh_margin_s {
        return Err(ConfigError::at(
            at("expiry_skew_s"),
            format!(
                "must be smaller than refresh_margin_s ({})",
                timing.refresh_margin_s
            ),
        ));
    }
    let t = UpstreamToken {
        cluster,
        audience,
        audience_by_cluster: by_cluster,
        header,
        authority,
        path,
        timing,
    };
    if t.audiences().len() > MAX_AUDIENCES {
        return Err(ConfigError::at(
            at("audience_by_cluster"),
            format!("at most {MAX_AUDIENCES} distinct audiences"),
        ));
    }
    Ok(t)
}

/// One challenge per credential header, so a caller learns what to send but never a secret.
fn challenge(keys: &KeySet) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (i, header) in keys.headers.iter().enumerate() {
        let schemes: Vec<&str> = keys
            .keys
            .iter()
            .filter(|k| k.header == i)
            .map(|k| k.scheme.as_deref().unwrap_or(""))
            .collect();
        for scheme in schemes {
            let part = if scheme.is_empty() {
                format!("ApiKey realm=\"bcsp-guard\", header=\"{header}\"")
            } else {
                format!("{scheme} realm=\"bcsp-guard\", header=\"{header}\"")
            };
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests;
