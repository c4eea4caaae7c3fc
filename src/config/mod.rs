//! Configuration: JSON → validated, compiled [`Policy`]. Every error names the field path
//! (`keys[1].sha256: ...`) so one log line tells the operator what to fix.

pub mod fields;
pub mod genesys;
pub mod raw;

use crate::policy::client_ip::{Cidr, CidrSet, ClientIpRule};
use crate::policy::keys::{Key, KeyId, KeySet, SecretHash, Window};
use crate::policy::lockout::LockoutRule;
use crate::policy::routes::{self, Route, Routes};
use crate::policy::time::parse_rfc3339;
use crate::policy::upstream::{UpstreamToken, SERVERLESS_AUTHORIZATION};
use crate::policy::webhook::{SecretSource, Webhook, WebhookSecret, DEFAULT_SIGNATURE_HEADER};
use crate::policy::Policy;
use crate::token::schedule::Timing;
use raw::{
    RawClientIp, RawConfig, RawIpRanges, RawKey, RawLockout, RawRoutes, RawUpstreamToken,
    RawWebhook,
};
use std::fmt;

pub const MAX_KEYS: usize = 64;
pub const MAX_CIDRS: usize = 10_000;
pub const MAX_AUDIENCES: usize = 16;
pub const DEFAULT_KEY_HEADER: &str = "x-bcsp-key";
pub const DEFAULT_KEY_ID_HEADER: &str = "x-bcsp-key-id";
pub const DEFAULT_METADATA_AUTHORITY: &str = "metadata.google.internal";
pub const DEFAULT_METADATA_PATH: &str =
    "/computeMetadata/v1/instance/service-accounts/default/identity";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const MAX_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
pub const MAX_ROUTES: usize = 64;
pub const MAX_WEBHOOKS: usize = 8;
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 16;
pub const MAX_TRUSTED_HOPS: u64 = 32;

/// A numeric field's default and the range it accepts: named once here, and the tables in
/// docs/CONFIGURATION.md are checked against these by a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

pub const REFRESH_MARGIN_S: Bounds = Bounds {
    default: 300,
    min: 1,
    max: 3000,
};
pub const EXPIRY_SKEW_S: Bounds = Bounds {
    default: 30,
    min: 1,
    max: 600,
};
pub const MAX_WAIT_MS: Bounds = Bounds {
    default: 3000,
    min: 1,
    max: 60_000,
};
pub const FETCH_TIMEOUT_MS: Bounds = Bounds {
    default: 2000,
    min: 100,
    max: 60_000,
};
pub const LOCKOUT_MAX_FAILURES: Bounds = Bounds {
    default: 20,
    min: 1,
    max: 10_000,
};
pub const LOCKOUT_WINDOW_S: Bounds = Bounds {
    default: 60,
    min: 1,
    max: 86_400,
};
pub const LOCKOUT_COOLDOWN_S: Bounds = Bounds {
    default: 300,
    min: 1,
    max: 86_400,
};
pub const MAX_BODY_BYTES: Bounds = Bounds {
    default: DEFAULT_MAX_BODY_BYTES,
    min: 1,
    max: MAX_MAX_BODY_BYTES,
};

impl Bounds {
    /// `v`, or the default when absent; an error names `field` and the range.
    fn check(self, field: &str, v: Option<u64>) -> Result<u64, ConfigError> {
        let v = v.unwrap_or(self.default);
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::at(
                field,
                format!("must be {} to {}, got {v}", self.min, self.max),
            ))
        }
    }
}

/// Reads an environment variable of the Wasm VM (Envoy's `vm_config.environment_variables`).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads one of Envoy's generic secrets by name, from the bootstrap or (with a ConfigSource in
/// JSON) over SDS: `Ok(None)` means it is subscribed but not delivered yet; `Err` says why it
/// cannot be had.
pub type GenericSecretLookup<'a> = &'a dyn Fn(&str, Option<&str>) -> Result<Option<String>, String>;

/// Where webhook secrets named in the configuration are read from.
#[derive(Clone, Copy)]
pub struct SecretLookups<'a> {
    /// `secret_env`.
    pub env: EnvLookup<'a>,
    /// `secret_generic`: Envoy's generic secrets, which only the dynamic module can read.
    pub generic: Option<GenericSecretLookup<'a>>,
}

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

/// Parses and validates the filter configuration; webhook secrets named by `secret_env` come
/// from the process environment (inside Envoy: the Wasm VM's).
pub fn compile(json: &[u8]) -> Result<Policy, ConfigError> {
    compile_with_env(json, &|name| std::env::var(name).ok())
}

/// [`compile`] with the environment given explicitly (the CLI checks an Envoy YAML's
/// `vm_config.environment_variables` this way).
pub fn compile_with_env(json: &[u8], env: EnvLookup<'_>) -> Result<Policy, ConfigError> {
    compile_with_secrets(json, SecretLookups { env, generic: None })
}

/// [`compile`] with every secret source given explicitly (the dynamic module adds Envoy's
/// generic secrets).
pub fn compile_with_secrets(
    json: &[u8],
    secrets: SecretLookups<'_>,
) -> Result<Policy, ConfigError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError::at("", "is empty; at least `keys` is required"));
    }
    if json.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::at("", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        // serde_json appends "at line L column C"; keep it, it helps find the spot.
        ConfigError::at(path, e.into_inner().to_string())
    })?;
    // A second object after the first would otherwise be ignored silently, e.g. an
    // `allow_cidrs` the operator believes is in force.
    de.end().map_err(|e| {
        ConfigError::at(
            "",
            format!("unexpected content after the configuration object: {e}"),
        )
    })?;
    compile_raw(raw, secrets)
}

fn compile_raw(raw: RawConfig, secrets: SecretLookups<'_>) -> Result<Policy, ConfigError> {
    let keys = compile_keys(&raw.keys)?;
    let client_ip = compile_client_ip(raw.client_ip.as_ref())?;
    let mut cidrs = compile_cidrs(raw.allow_cidrs.as_deref().unwrap_or_default())?;
    let ip_ranges = match &raw.genesys_ip_ranges {
        None => None,
        Some(r) => {
            let (picked, summary) = compile_ip_ranges(r)?;
            cidrs.extend(picked);
            Some(summary)
        }
    };
    if cidrs.len() > MAX_CIDRS {
        return Err(ConfigError::at(
            "allow_cidrs",
            format!(
                "at most {MAX_CIDRS} entries together with genesys_ip_ranges, got {}",
                cidrs.len()
            ),
        ));
    }
    let allow = (!cidrs.is_empty()).then(|| CidrSet::new(cidrs));
    let key_id_header = match raw.key_id_header.as_deref() {
        None => Some(DEFAULT_KEY_ID_HEADER.to_owned()),
        Some("") => None,
        Some(h) => Some(fields::header_name(h).map_err(|m| ConfigError::at("key_id_header", m))?),
    };
    // Compared as CGI-style servers read names: `x_bcsp_key` is `x-bcsp-key` to them.
    let same = |a: &str, b: &str| crate::policy::names::fold(a) == crate::policy::names::fold(b);
    if let Some(id_header) = &key_id_header {
        if keys.headers().iter().any(|h| same(h, id_header)) {
            return Err(ConfigError::at(
                "key_id_header",
                format!("`{id_header}` is also a credential header"),
            ));
        }
    }
    let mut upstream_token = match &raw.upstream_token {
        None => None,
        Some(t) => Some(compile_upstream(t)?),
    };
    key_audiences(&keys, upstream_token.as_mut())?;
    if let (Some(t), Some(id_header)) = (&upstream_token, &key_id_header) {
        if same(&t.header, id_header) || same(SERVERLESS_AUTHORIZATION, id_header) {
            return Err(ConfigError::at(
                "key_id_header",
                format!("`{id_header}` is also upstream_token.header"),
            ));
        }
    }
    let routes = raw.routes.as_ref().map(compile_routes).transpose()?;
    let max_body_bytes = MAX_BODY_BYTES.check("max_body_bytes", raw.max_body_bytes)?;
    let mut taken: Vec<(&str, String)> = keys
        .headers()
        .iter()
        .map(|h| ("a credential header", h.clone()))
        .collect();
    if let Some(h) = &key_id_header {
        taken.push(("key_id_header", h.clone()));
    }
    if let Some(t) = &upstream_token {
        taken.push(("upstream_token.header", t.header.clone()));
        taken.push((
            "upstream_token.header",
            "x-serverless-authorization".to_owned(),
        ));
    }
    let mut warnings = Vec::new();
    let webhooks = compile_webhooks(
        raw.webhooks.as_deref().unwrap_or_default(),
        routes.as_ref(),
        &taken,
        secrets,
        &mut warnings,
    )?;
    let lockout = raw.lockout.as_ref().map(compile_lockout).transpose()?;
    let www_authenticate = challenge(&keys);
    let mut policy = Policy {
        controlled: Default::default(),
        keys,
        client_ip,
        allow,
        key_id_header,
        www_authenticate,
        upstream_token,
        ip_ranges,
        routes,
        max_body_bytes,
        webhooks,
        lockout,
        audit_fields: raw.audit_fields.unwrap_or(true),
        warnings,
    };
    policy.controlled = policy.controlled_headers();
    Ok(policy)
}

fn compile_ip_ranges(raw: &RawIpRanges) -> Result<(Vec<Cidr>, String), ConfigError> {
    let at = |f: &str| {
        if f.is_empty() {
            "genesys_ip_ranges".to_owned()
        } else {
            format!("genesys_ip_ranges.{f}")
        }
    };
    let services = match &raw.services {
        None => vec![genesys::DEFAULT_SERVICE.to_owned()],
        Some(s) if s.is_empty() => {
            return Err(ConfigError::at(
                at("services"),
                "must not be empty (omit it for [\"bot-connector\"])",
            ))
        }
        Some(s) => s.clone(),
    };
    if raw.regions.is_empty() {
        return Err(ConfigError::at(
            at("regions"),
            "must name at least one Genesys region, such as us-east-1",
        ));
    }
    let cidrs = genesys::selected_cidrs(&raw.document, &services, &raw.regions)
        .map_err(|(path, m)| ConfigError::at(at(&path), m))?;
    let summary = format!(
        "{} from genesys_ip_ranges (services {}; regions {})",
        cidrs.len(),
        services.join(","),
        raw.regions.join(",")
    );
    Ok((cidrs, summary))
}

fn compile_routes(raw: &RawRoutes) -> Result<Routes, ConfigError> {
    match raw {
        RawRoutes::Preset(p) => {
            if p.preset != routes::PRESET_DIGITAL_BOT_CONNECTOR_V2 {
                return Err(ConfigError::at(
                    "routes.preset",
                    format!(
                        "must be `{}`, got `{}`",
                        routes::PRESET_DIGITAL_BOT_CONNECTOR_V2,
                        fields::printable(&p.preset)
                    ),
                ));
            }
            let base = match p.base_path.as_deref() {
                None | Some("/") => "",
                Some(b) => {
                    routes::check_literal_path(b).map_err(|e| {
                        ConfigError::at(
                            "routes.base_path",
                            format!("`{}` {}", fields::printable(b), e.message()),
                        )
                    })?;
                    b
                }
            };
            let list = routes::DIGITAL_BOT_CONNECTOR_V2
                .iter()
                .map(|(m, path)| {
                    Route::parse(m, &format!("{base}{path}"))
                        .map_err(|e| ConfigError::at("routes.base_path", e.message()))
                })
                .collect::<Result<Vec<Route>, ConfigError>>()?;
            Ok(Routes::new(list, Some(p.preset.clone())))
        }
        RawRoutes::List(list) => {
            if list.is_empty() || list.len() > MAX_ROUTES {
                return Err(ConfigError::at(
                    "routes",
                    format!("must hold 1 to {MAX_ROUTES} entries, got {}", list.len()),
                ));
            }
            let mut out: Vec<Route> = Vec::with_capacity(list.len());
            for (i, r) in list.iter().enumerate() {
                let route = Route::parse(&r.method, &r.path).map_err(|e| {
                    let field = if e == routes::RouteError::Method {
                        "method"
                    } else {
                        "path"
                    };
                    let shown = if field == "method" {
                        &r.method
                    } else {
                        &r.path
                    };
                    ConfigError::at(
                        format!("routes[{i}].{field}"),
                        format!("`{}` {}", fields::printable(shown), e.message()),
                    )
                })?;
                if out.contains(&route) {
                    return Err(ConfigError::at(
                        format!("routes[{i}]"),
                        format!("`{route}` is listed twice"),
                    ));
                }
                out.push(route);
            }
            Ok(Routes::new(out, None))
        }
    }
}

fn env_name_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn compile_webhooks(
    raw: &[RawWebhook],
    routes: Option<&Routes>,
    taken: &[(&str, String)],
    secrets: SecretLookups<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Webhook>, ConfigError> {
    if raw.len() > MAX_WEBHOOKS {
        return Err(ConfigError::at(
            "webhooks",
            format!("at most {MAX_WEBHOOKS} entries, got {}", raw.len()),
        ));
    }
    let mut out: Vec<Webhook> = Vec::with_capacity(raw.len());
    for (i, w) in raw.iter().enumerate() {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        let prefix = w.path_prefix.as_str();
        if prefix == "/" {
            return Err(ConfigError::at(
                at("path_prefix"),
                "must not be / (every request would skip the key check)",
            ));
        }
        routes::check_literal_path(prefix).map_err(|e| {
            ConfigError::at(
                at("path_prefix"),
                format!("`{}` {}", fields::printable(prefix), e.message()),
            )
        })?;
        if let Some(other) = out.iter().find(|o| {
            routes::under_prefix(prefix, &o.path_prefix)
                || routes::under_prefix(&o.path_prefix, prefix)
        }) {
            return Err(ConfigError::at(
                at("path_prefix"),
                format!("`{prefix}` overlaps `{}`", other.path_prefix),
            ));
        }
        if let Some(r) = routes.and_then(|r| r.overlaps_prefix(prefix)) {
            return Err(ConfigError::at(
                at("path_prefix"),
                format!("`{prefix}` overlaps the route `{r}`; webhook paths need no route"),
            ));
        }
        let header = match &w.header {
            None => DEFAULT_SIGNATURE_HEADER.to_owned(),
            Some(h) => fields::header_name(h).map_err(|m| ConfigError::at(at("header"), m))?,
        };
        if let Some((what, _)) = taken.iter().find(|(_, h)| *h == header) {
            return Err(ConfigError::at(
                at("header"),
                format!("`{header}` is also {what}"),
            ));
        }
        let (secret, source, field) = match (&w.secret_env, &w.secret, &w.secret_generic) {
            (Some(name), None, None) => {
                if !env_name_ok(name) {
                    return Err(ConfigError::at(
                        at("secret_env"),
                        format!(
                            "`{}` is not an environment variable name",
                            fields::printable(name)
                        ),
                    ));
                }
                let value = (secrets.env)(name).ok_or_else(|| {
                    ConfigError::at(
                        at("secret_env"),
                        format!(
                            "environment variable `{name}` is not set in the Wasm VM \
                             (pass it with vm_config.environment_variables)"
                        ),
                    )
                })?;
                (value, SecretSource::Env(name.clone()), "secret_env")
            }
            (None, None, Some(name)) => {
                if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                    return Err(ConfigError::at(
                        at("secret_generic"),
                        "must be the name of an Envoy generic secret (1 to 256 characters)",
                    ));
                }
                let lookup = secrets.generic.ok_or_else(|| {
                    ConfigError::at(
                        at("secret_generic"),
                        "Envoy generic secrets reach only the dynamic-module build; \
                         use secret_env with the Wasm build",
                    )
                })?;
                let sds = match &w.secret_generic_sds {
                    None => None,
                    Some(v) if v.is_object() => Some(v.to_string()),
                    Some(_) => {
                        return Err(ConfigError::at(
                            at("secret_generic_sds"),
                            "must be an Envoy ConfigSource object",
                        ))
                    }
                };
                let value = lookup(name, sds.as_deref())
                    .map_err(|why| ConfigError::at(at("secret_generic"), why))?;
                match (value, sds.is_some()) {
                    (Some(v), false) => (v, SecretSource::Generic(name.clone()), "secret_generic"),
                    (Some(v), true) => {
                        (v, SecretSource::GenericSds(name.clone()), "secret_generic")
                    }
                    // Subscribed, still to come: refuse deliveries until it does.
                    (None, true) => {
                        out.push(Webhook {
                            path_prefix: prefix.to_owned(),
                            header,
                            secret: WebhookSecret::pending(),
                            source: SecretSource::GenericSds(name.clone()),
                        });
                        continue;
                    }
                    (None, false) => {
                        return Err(ConfigError::at(
                            at("secret_generic"),
                            format!("Envoy's generic secret `{name}` has no value"),
                        ))
                    }
                }
            }
            (None, Some(s), None) => {
                warnings.push(format!(
                    "bcsp-guard: webhooks[{i}] ({prefix}) has an inline secret, which is stored in the Envoy config; \
                     prefer secret_env with vm_config.environment_variables"
                ));
                (s.clone(), SecretSource::Inline, "secret")
            }
            _ => {
                return Err(ConfigError::at(
                    format!("webhooks[{i}]"),
                    "needs exactly one of `secret_env` (preferred), `secret_generic` or `secret`",
                ))
            }
        };
        if w.secret_generic_sds.is_some() && w.secret_generic.is_none() {
            return Err(ConfigError::at(
                at("secret_generic_sds"),
                "only with `secret_generic` (the name of the secret to subscribe to)",
            ));
        }
        if secret.len() < MIN_WEBHOOK_SECRET_BYTES {
            return Err(ConfigError::at(
                at(field),
                format!(
                    "the secret must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes, got {}",
                    secret.len()
                ),
            ));
        }
        let secret = WebhookSecret::new(secret.as_bytes())
            .ok_or_else(|| ConfigError::at(at(field), "unusable as an HMAC key"))?;
        out.push(Webhook {
            path_prefix: prefix.to_owned(),
            header,
            secret,
            source,
        });
    }
    Ok(out)
}

fn compile_lockout(raw: &RawLockout) -> Result<LockoutRule, ConfigError> {
    let num = |bounds: Bounds, field: &str, v: Option<u64>| -> Result<u32, ConfigError> {
        let field = format!("lockout.{field}");
        let v = bounds.check(&field, v)?;
        u32::try_from(v).map_err(|_| ConfigError::at(field, "too large"))
    };
    Ok(LockoutRule {
        max_failures: num(LOCKOUT_MAX_FAILURES, "max_failures", raw.max_failures)?,
        window_s: num(LOCKOUT_WINDOW_S, "window_s", raw.window_s)?,
        cooldown_s: num(LOCKOUT_COOLDOWN_S, "cooldown_s", raw.cooldown_s)?,
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
            audience: k
                .audience
                .as_deref()
                .map(fields::audience)
                .transpose()
                .map_err(|m| ConfigError::at(at("audience"), m))?,
        });
    }
    Ok(KeySet::new(headers, keys))
}

/// `keys[].audience`: needs `upstream_token`, and replaces `audience_by_cluster` rather than
/// mixing with it (a request would have two candidate audiences and two contracts).
fn key_audiences(keys: &KeySet, upstream: Option<&mut UpstreamToken>) -> Result<(), ConfigError> {
    let named = keys
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| Some((i, k.audience.as_ref()?)));
    let Some(t) = upstream else {
        return match named.map(|(i, _)| i).next() {
            Some(i) => Err(ConfigError::at(
                format!("keys[{i}].audience"),
                "needs upstream_token",
            )),
            None => Ok(()),
        };
    };
    for (i, aud) in named {
        let at = format!("keys[{i}].audience");
        if !t.audience_by_cluster.is_empty() {
            return Err(ConfigError::at(
                at,
                "cannot be combined with upstream_token.audience_by_cluster: choose the audience by key or by routed cluster",
            ));
        }
        if !t.key_audiences.contains(aud) {
            t.key_audiences.push(aud.clone());
        }
        if t.audiences().len() > MAX_AUDIENCES {
            return Err(ConfigError::at(
                at,
                format!("at most {MAX_AUDIENCES} distinct audiences"),
            ));
        }
    }
    Ok(())
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
        ("x-forwarded-for", Some(n)) if (1..=MAX_TRUSTED_HOPS).contains(&n) => {
            let trusted_hops = u8::try_from(n)
                .map_err(|_| ConfigError::at("client_ip.trusted_hops", "too large"))?;
            Ok(ClientIpRule::ForwardedFor { trusted_hops })
        }
        ("x-forwarded-for", Some(n)) => Err(ConfigError::at(
            "client_ip.trusted_hops",
            format!(
                "must be 1 to {MAX_TRUSTED_HOPS} (the number of proxies that append to X-Forwarded-For), got {n}"
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

fn compile_cidrs(list: &[String]) -> Result<Vec<Cidr>, ConfigError> {
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
    Ok(out)
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
    let timing = Timing {
        refresh_margin_s: REFRESH_MARGIN_S.check(&at("refresh_margin_s"), raw.refresh_margin_s)?,
        expiry_skew_s: EXPIRY_SKEW_S.check(&at("expiry_skew_s"), raw.expiry_skew_s)?,
        max_wait_ms: MAX_WAIT_MS.check(&at("max_wait_ms"), raw.max_wait_ms)?,
        fetch_timeout_ms: FETCH_TIMEOUT_MS.check(&at("fetch_timeout_ms"), raw.fetch_timeout_ms)?,
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
        key_audiences: Vec::new(),
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
    for (i, header) in keys.headers().iter().enumerate() {
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
