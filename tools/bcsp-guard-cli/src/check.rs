//! `check`: the filter's own validation of a configuration, with its messages; for an Envoy
//! YAML, of every bcsp-guard filter in it, plus the connection-manager settings it relies on.

use crate::args::{read_input, Args};
use crate::envoy::{self, Found};
use bcsp_guard::config;
use bcsp_guard::policy::client_ip::ClientIpRule;
use bcsp_guard::policy::rotation;
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

/// The plugin-config and connection-manager settings bcsp-guard relies on: errors and warnings.
fn hcm_findings(found: &Found, policy: &Policy) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let hcm = &found.hcm;
    if !policy.webhooks.is_empty() && !found.stop_iteration {
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
        // Envoy picks the route again from the edited headers, but a Wasm filter still reads
        // the first route's cluster: the token would be minted for a backend that may not
        // receive the request.
        if by_cluster {
            errors.push(format!(
                "{at} matches on header `{name}`, which bcsp-guard removes or sets: with                  upstream_token.audience_by_cluster the audience comes from the route chosen before                  those edits, and Envoy may then send the request to another cluster with that token;                  route on something the caller cannot change here (path, authority), or drop                  audience_by_cluster"
            ));
        } else {
            warnings.push(format!(
                "{at} matches on header `{name}`, which bcsp-guard removes or sets: Envoy routes on                  the edited value (the stamped key id, no credentials), not on what the caller sent"
            ));
        }
    }
    if policy.client_ip == ClientIpRule::Downstream
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
            "{file}: no bcsp-guard filter (envoy.filters.http.wasm with root_id bcsp_guard) found"
        );
        return Ok(1);
    }
    let mut failed = false;
    for f in &found {
        let label = format!("{file}: {}", f.label);
        let mut notes = Vec::new();
        match compile(
            f.configuration.as_bytes(),
            &overrides,
            &f.key_values,
            &f.host_env_keys,
            &mut notes,
        ) {
            Ok(policy) => {
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
