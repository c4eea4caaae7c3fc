//! `check`: the filter's own validation of a configuration, with its messages; for an Envoy
//! YAML, of every bcsp-guard filter in it (Wasm or dynamic module, each compiled with its own
//! build's rules), plus the Envoy settings that build relies on.

use crate::args::{read_input, Args};
use crate::envoy::{self, Artifact, Found};
use bcsp_guard::config;
use bcsp_guard::policy::client_ip::ClientIpRule;
use bcsp_guard::policy::rotation;
use bcsp_guard::policy::webhook::SecretSource;
use bcsp_guard::policy::Policy;

/// A secret Envoy passes from its own environment (`host_env_keys`) cannot be checked here; a
/// stand-in long enough for the length rule lets the rest of the configuration be checked.
const HOST_ENV_STAND_IN: &str = "stand-in-for-a-host-env-secret-0000";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Compiles `json` with an environment of `--env` pairs, then `key_values`, then this process.
pub fn compile(
    json: &[u8],
    overrides: &[(String, String)],
    key_values: &[(String, String)],
    host_env_keys: &[String],
    notes: &mut Vec<String>,
) -> Result<Policy, config::ConfigError> {
    let lookup = |name: &str| -> Option<String> {
        let given = overrides
            .iter()
            .chain(key_values)
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone());
        given.or_else(|| {
            if host_env_keys.iter().any(|k| k == name) {
                std::env::var(name)
                    .ok()
                    .or_else(|| Some(HOST_ENV_STAND_IN.to_owned()))
            } else {
                std::env::var(name).ok()
            }
        })
    };
    for k in host_env_keys {
        if std::env::var(k).is_err() && !overrides.iter().any(|(n, _)| n == k) {
            notes.push(format!(
                "note: {k} comes from Envoy's own environment (host_env_keys) and is not checked here"
            ));
        }
    }
    config::compile_with_env(json, &lookup)
}

fn given(overrides: &[(String, String)], name: &str) -> Option<String> {
    overrides
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Compiles `json` as the dynamic module does: `secret_env` from Envoy's own environment (here:
/// `--env`, then this process, else a stand-in and a note), and `secret_generic` from the
/// bootstrap's generic secrets (an unknown name is refused with the module's message).
fn compile_dynamic(
    found: &Found,
    overrides: &[(String, String)],
    notes: &mut Vec<String>,
) -> Result<Policy, config::ConfigError> {
    let unseen = std::cell::RefCell::new(Vec::new());
    let env = |name: &str| -> Option<String> {
        given(overrides, name)
            .or_else(|| std::env::var(name).ok())
            .or_else(|| {
                unseen.borrow_mut().push(format!(
                    "note: {name} comes from Envoy's own environment (the dynamic module reads it \
                     there) and is not checked here"
                ));
                Some(HOST_ENV_STAND_IN.to_owned())
            })
    };
    let generic = |name: &str, sds: Option<&str>| -> Result<Option<String>, String> {
        if sds.is_some() {
            unseen.borrow_mut().push(format!(
                "note: generic secret `{name}` arrives over SDS once Envoy runs and is not checked here"
            ));
            return Ok(None);
        }
        let secret = found
            .generic_secrets
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                format!(
                    "Envoy has no generic secret `{name}` (declare it under static_resources.secrets)"
                )
            })?;
        match &secret.inline {
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => Ok(Some(v.clone())),
            None => {
                unseen.borrow_mut().push(format!(
                    "note: generic secret `{name}` is read by Envoy from {} and is not checked here",
                    secret.source
                ));
                Ok(Some(HOST_ENV_STAND_IN.to_owned()))
            }
        }
    };
    let lookups = config::SecretLookups {
        env: &env,
        generic: Some(&generic),
    };
    let compiled = config::compile_with_secrets(found.configuration.as_bytes(), lookups);
    notes.extend(unseen.into_inner());
    compiled
}

/// Compiles a found filter's JSON with the rules of the build it loads.
pub fn compile_found(
    found: &Found,
    overrides: &[(String, String)],
    notes: &mut Vec<String>,
) -> Result<Policy, config::ConfigError> {
    match found.artifact {
        Artifact::Wasm => compile(
            found.configuration.as_bytes(),
            overrides,
            &found.key_values,
            &found.host_env_keys,
            notes,
        ),
        Artifact::DynamicModule => compile_dynamic(found, overrides, notes),
    }
}

/// What the dynamic module's filter entry itself must say, as Envoy and the module read it.
fn module_errors(found: &Found) -> Vec<String> {
    let mut errors = Vec::new();
    if found.artifact != Artifact::DynamicModule {
        return errors;
    }
    let m = &found.module;
    if m.filter_name.as_deref() != Some("bcsp_guard") {
        errors.push(format!(
            "bcsp-guard: invalid configuration: filter_name: must be `bcsp_guard`, got `{}`",
            m.filter_name.as_deref().unwrap_or_default()
        ));
    }
    if !m
        .config_type
        .as_deref()
        .is_some_and(|t| t.ends_with("google.protobuf.StringValue") || envoy::is_struct(t))
    {
        errors.push(format!(
            "envoy: filter_config must be a google.protobuf.StringValue whose value is the JSON \
             configuration, or a google.protobuf.Struct holding it (got @type `{}`)",
            m.config_type.as_deref().unwrap_or_default()
        ));
    }
    errors
}

/// The plugin-config and connection-manager settings bcsp-guard relies on: errors and warnings.
fn hcm_findings(found: &Found, policy: &Policy) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let hcm = &found.hcm;
    let wasm = found.artifact == Artifact::Wasm;
    // The dynamic module holds a delivery natively; only a Wasm plugin needs the flag.
    if wasm && !policy.webhooks.is_empty() && !found.stop_iteration {
        errors.push(
            "webhooks need allow_on_headers_stop_iteration: true in this filter's Wasm plugin config \
             (typed_config.config, next to root_id; Envoy 1.35+): bcsp-guard holds a delivery's headers \
             until its signature is verified, and without the flag Envoy passes it no body, so every \
             delivery is refused 503"
                .to_owned(),
        );
    }
    if !policy.webhooks.is_empty() && hcm.buffer_after {
        warnings.push(
            "envoy.filters.http.buffer after bcsp-guard is not needed for webhooks (bcsp-guard holds \
             deliveries itself); it only delays every other request"
                .to_owned(),
        );
    }
    if (policy.routes.is_some() || !policy.webhooks.is_empty())
        && !(hcm.normalize_path && hcm.merge_slashes)
    {
        warnings.push(
            "routes/webhooks match the path Envoy routes: set normalize_path: true and merge_slashes: true \
             on the http_connection_manager (bcsp-guard refuses unnormalised paths, so they get 404)"
                .to_owned(),
        );
    }
    if policy.routes.is_some()
        && !matches!(
            hcm.escaped_slashes.as_deref(),
            Some("REJECT_REQUEST" | "UNESCAPE_AND_REDIRECT")
        )
    {
        warnings.push(
            "set path_with_escaped_slashes_action: REJECT_REQUEST so %2F / %5C paths never reach a route"
                .to_owned(),
        );
    }
    let by_cluster = policy
        .upstream_token
        .as_ref()
        .is_some_and(|t| !t.audience_by_cluster.is_empty());
    for (at, name) in &hcm.route_headers {
        if !policy.controlled.covers(name) {
            continue;
        }
        // Envoy picks the route again from the edited headers, but the audience was read from
        // a route chosen earlier (a Wasm filter: before any edit; the dynamic module: before
        // it sets the token header): the token may be minted for a backend that does not
        // receive the request.
        if by_cluster {
            errors.push(format!(
                "{at} matches on header `{name}`, which bcsp-guard removes or sets: with \
                 upstream_token.audience_by_cluster the audience comes from a route chosen before \
                 bcsp-guard's edits are done, and Envoy may then send the request to another \
                 cluster with that token; route on something the caller cannot change here (path, \
                 authority), or drop audience_by_cluster"
            ));
        } else {
            warnings.push(format!(
                "{at} matches on header `{name}`, which bcsp-guard removes or sets: Envoy routes on \
                 the edited value (the stamped key id, no credentials), not on what the caller sent"
            ));
        }
    }
    if !matches!(
        hcm.underscores.as_deref(),
        Some("REJECT_REQUEST" | "DROP_HEADER")
    ) {
        warnings.push(
            "set common_http_protocol_options.headers_with_underscores_action: REJECT_REQUEST on the \
             http_connection_manager: bcsp-guard removes `_` spellings of the headers it controls, \
             and with this Envoy refuses every other such header too (CGI-style servers read `_` as `-`)"
                .to_owned(),
        );
    }
    if found.artifact == Artifact::DynamicModule
        && !found.has_node
        && policy
            .webhooks
            .iter()
            .any(|w| matches!(w.source, SecretSource::GenericSds(_)))
    {
        warnings.push(
            "secret_generic_sds: Envoy subscribes over SDS only with a node id and cluster: set \
             node.id and node.cluster in the bootstrap (or start Envoy with --service-node and \
             --service-cluster), or it refuses the configuration"
                .to_owned(),
        );
    }
    if !wasm {
        let token_cluster = policy.upstream_token.as_ref().map(|t| t.cluster.as_str());
        if let Some(c) = token_cluster.filter(|c| found.metadata_clusters.iter().any(|m| m == c)) {
            errors.push(format!(
                "upstream_token.cluster `{c}` goes straight to the metadata server: the dynamic \
                 module's fetches pass Envoy's async client, which adds X-Forwarded-For, and the \
                 metadata server refuses those, so every request would get 503; point the cluster \
                 at a loopback listener that removes X-Forwarded-For (docs/DYNAMIC_MODULE.md)"
            ));
        }
        if !found.strip_stat_prefix {
            warnings.push(
                "set the runtime flag envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: \
                 true (layered_runtime static_layer): without it Prometheus shows the counters as \
                 envoy_dynamicmodulescustom_bcsp_guard_*, not the names the shipped alerts use"
                    .to_owned(),
            );
        }
    }
    // The dynamic module reads the connection's direct peer whatever use_remote_address says;
    // a Wasm filter's source.address comes from X-Forwarded-For without it.
    if wasm
        && policy.client_ip == ClientIpRule::Downstream
        && (policy.allow.is_some() || policy.lockout.is_some())
        && !hcm.use_remote_address
    {
        errors.push(
            "client_ip is `downstream` but use_remote_address is not true: source.address would come \
             from X-Forwarded-For, which any caller can write"
                .to_owned(),
        );
    }
    (errors, warnings)
}

fn report_ok(label: &str, policy: &Policy, notes: &[String]) {
    println!("{label}: OK");
    println!("  {}", policy.summary());
    for w in policy
        .warnings
        .iter()
        .chain(&rotation::expiry_warnings(&policy.keys, now_ms()))
    {
        println!("  warning: {}", w.trim_start_matches("bcsp-guard: "));
    }
    for n in notes {
        println!("  {n}");
    }
}

pub fn run(argv: &[String]) -> Result<u8, String> {
    let args = Args::parse(argv, &["env"], &[])?;
    let file = args.single_positional("a configuration file (JSON, or an Envoy YAML)")?;
    let overrides = args.env_pairs()?;
    let bytes = read_input(file)?;
    if envoy::is_filter_json(&bytes) {
        let mut notes = Vec::new();
        return match compile(&bytes, &overrides, &[], &[], &mut notes) {
            Ok(policy) => {
                report_ok(file, &policy, &notes);
                Ok(0)
            }
            Err(e) => {
                eprintln!("{file}: bcsp-guard: invalid configuration: {e}");
                Ok(1)
            }
        };
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{file} is not UTF-8 text"))?;
    let found = envoy::find(&text).map_err(|e| format!("{file}: {e}"))?;
    if found.is_empty() {
        eprintln!(
            "{file}: no bcsp-guard filter found (envoy.filters.http.wasm with root_id bcsp_guard, \
             or envoy.filters.http.dynamic_modules with dynamic_module_config name bcsp_guard_envoy)"
        );
        return Ok(1);
    }
    let mut failed = false;
    for f in &found {
        let label = format!("{file}: {}", f.label);
        println!("{label}: {}", f.artifact);
        let entry = module_errors(f);
        if !entry.is_empty() {
            failed = true;
            for e in &entry {
                eprintln!("{label}: {e}");
            }
            continue;
        }
        let mut notes = Vec::new();
        match compile_found(f, &overrides, &mut notes) {
            Ok(policy) => {
                if f.artifact == Artifact::DynamicModule && policy.needs_downstream() {
                    // The summary names the Wasm build's source.address.
                    notes.push(
                        "note: client ip `downstream` is the connection's direct TCP peer in the \
                         dynamic module, whatever use_remote_address says"
                            .to_owned(),
                    );
                }
                let (errors, warnings) = hcm_findings(f, &policy);
                if errors.is_empty() {
                    report_ok(&label, &policy, &notes);
                } else {
                    failed = true;
                    for e in &errors {
                        eprintln!("{label}: envoy: {e}");
                    }
                }
                for w in warnings {
                    println!("  warning: {w}");
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{label}: bcsp-guard: invalid configuration: {e}");
            }
        }
    }
    Ok(u8::from(failed))
}
