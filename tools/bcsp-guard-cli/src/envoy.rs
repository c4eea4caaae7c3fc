//! Finding bcsp-guard inside an Envoy YAML, as the Wasm filter or as the dynamic module: its JSON
//! configuration, the Wasm VM's environment, the bootstrap's generic secrets, and the
//! connection-manager facts the filter relies on (see docs/CONFIGURATION.md, docs/SECURITY.md
//! and docs/DYNAMIC_MODULE.md).

use serde_yaml::{Mapping, Value};
use std::fmt;

/// Which build of bcsp-guard a filter entry loads: they take the same JSON, but not quite the
/// same fields, nor the same Envoy settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// `envoy.filters.http.wasm` running `bcsp_guard.wasm`.
    Wasm,
    /// `envoy.filters.http.dynamic_modules` loading `libbcsp_guard_envoy.so`.
    DynamicModule,
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Artifact::Wasm => "the Wasm module (envoy.filters.http.wasm, bcsp_guard.wasm)",
            Artifact::DynamicModule => {
                "the dynamic module (envoy.filters.http.dynamic_modules, libbcsp_guard_envoy.so)"
            }
        })
    }
}

/// One of the bootstrap's `static_resources.secrets` that is a `generic_secret`.
pub struct GenericSecret {
    pub name: String,
    /// The value when it is written in the YAML (`inline_string`); None when Envoy reads it
    /// from somewhere this tool cannot see.
    pub inline: Option<String>,
    /// Where Envoy takes it from (`filename /run/secrets/x`), never the value.
    pub source: String,
}

/// What the dynamic-module form of the filter entry sets besides the JSON.
#[derive(Default)]
pub struct Module {
    pub filter_name: Option<String>,
    /// `filter_config`'s `@type`.
    pub config_type: Option<String>,
}

/// One bcsp-guard filter found in an Envoy config.
pub struct Found {
    /// Where it is, as a YAML path (`static_resources.listeners[0]...http_filters[0]`).
    pub label: String,
    pub artifact: Artifact,
    pub configuration: String,
    /// Dynamic module only.
    pub module: Module,
    /// The bootstrap's generic secrets (the dynamic module's `secret_generic` names one).
    pub generic_secrets: Vec<GenericSecret>,
    /// The bootstrap sets `node.id` and `node.cluster`, which Envoy needs to subscribe over SDS.
    pub has_node: bool,
    /// Static clusters with an endpoint at the metadata server itself (not through a hop).
    pub metadata_clusters: Vec<String>,
    /// The runtime flag that gives the dynamic module's counters the Wasm build's Prometheus names.
    pub strip_stat_prefix: bool,
    /// `vm_config.environment_variables.key_values`.
    pub key_values: Vec<(String, String)>,
    /// `vm_config.environment_variables.host_env_keys`.
    pub host_env_keys: Vec<String>,
    /// The Wasm plugin config's `allow_on_headers_stop_iteration`: bcsp-guard may hold a
    /// webhook delivery's headers and still be given its body.
    pub stop_iteration: bool,
    pub hcm: Hcm,
}

/// What the enclosing `http_connection_manager` sets.
#[derive(Default)]
pub struct Hcm {
    pub use_remote_address: bool,
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: Option<String>,
    /// `common_http_protocol_options.headers_with_underscores_action`.
    pub underscores: Option<String>,
    /// An `envoy.filters.http.buffer` right after bcsp-guard (no longer needed for webhooks).
    pub buffer_after: bool,
    /// Header names the inline `route_config` matches on, with where (`routes[i]`).
    pub route_headers: Vec<(String, String)>,
}

/// `match.headers[].name` of every route in an inline `route_config`.
fn route_headers(hcm: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let hosts = get_path(hcm, &["route_config", "virtual_hosts"]).and_then(Value::as_sequence);
    for (h, host) in hosts.into_iter().flatten().enumerate() {
        let routes = get(host, "routes").and_then(Value::as_sequence);
        for (r, route) in routes.into_iter().flatten().enumerate() {
            let headers = get_path(route, &["match", "headers"]).and_then(Value::as_sequence);
            for header in headers.into_iter().flatten() {
                if let Some(name) = str_at(header, &["name"]) {
                    let at = format!("route_config.virtual_hosts[{h}].routes[{r}]");
                    out.push((at, name.to_owned()));
                }
            }
        }
    }
    out
}

fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_mapping()?.get(Value::String(key.to_owned()))
}

fn get_path<'v>(v: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().try_fold(v, |v, k| get(v, k))
}

fn str_at<'v>(v: &'v Value, keys: &[&str]) -> Option<&'v str> {
    get_path(v, keys).and_then(Value::as_str)
}

/// Whether a `filter_config` `@type` is `google.protobuf.Struct`.
pub fn is_struct(type_url: &str) -> bool {
    type_url.ends_with("google.protobuf.Struct")
}

fn type_is(filter: &Value, suffix: &str) -> bool {
    str_at(filter, &["typed_config", "@type"]).is_some_and(|t| t.ends_with(suffix))
}

fn names_us(s: &str) -> bool {
    s.contains("bcsp_guard") || s.contains("bcsp-guard")
}

/// Which bcsp-guard build a filter entry runs, if any: a Wasm filter by root id, VM id, name or
/// module file name; a dynamic-module filter by module name (`bcsp_guard_envoy`).
fn artifact_of(filter: &Value) -> Option<Artifact> {
    if type_is(
        filter,
        "filters.http.dynamic_modules.v3.DynamicModuleFilter",
    ) {
        let module = str_at(filter, &["typed_config", "dynamic_module_config", "name"]);
        return module
            .is_some_and(names_us)
            .then_some(Artifact::DynamicModule);
    }
    is_wasm_bcsp_guard(filter).then_some(Artifact::Wasm)
}

fn is_wasm_bcsp_guard(filter: &Value) -> bool {
    if !type_is(filter, "filters.http.wasm.v3.Wasm") {
        return false;
    }
    let config = get_path(filter, &["typed_config", "config"]);
    let named = |keys: &[&str]| config.and_then(|c| str_at(c, keys)).is_some_and(names_us);
    named(&["root_id"])
        || named(&["name"])
        || named(&["vm_config", "vm_id"])
        || named(&["vm_config", "code", "local", "filename"])
}

fn bool_at(m: &Value, key: &str) -> bool {
    get(m, key).and_then(Value::as_bool).unwrap_or(false)
}

/// `static_resources.secrets[]` entries that are generic secrets.
fn generic_secrets(doc: &Value) -> Vec<GenericSecret> {
    let secrets = get_path(doc, &["static_resources", "secrets"]).and_then(Value::as_sequence);
    let mut out = Vec::new();
    for s in secrets.into_iter().flatten() {
        let (Some(name), Some(source)) = (
            str_at(s, &["name"]),
            get_path(s, &["generic_secret", "secret"]),
        ) else {
            continue;
        };
        let inline = str_at(source, &["inline_string"]).map(str::to_owned);
        let from = [
            "inline_string",
            "filename",
            "environment_variable",
            "inline_bytes",
        ]
        .iter()
        .find_map(|k| {
            get(source, k).map(|v| match (*k, v.as_str()) {
                ("inline_string" | "inline_bytes", _) | (_, None) => (*k).to_owned(),
                (_, Some(v)) => format!("{k} {v}"),
            })
        })
        .unwrap_or_else(|| "an unknown data source".to_owned());
        out.push(GenericSecret {
            name: name.to_owned(),
            inline,
            source: from,
        });
    }
    out
}

/// Clusters of `static_resources` with an endpoint at the metadata server's own address.
fn metadata_clusters(doc: &Value) -> Vec<String> {
    let clusters = get_path(doc, &["static_resources", "clusters"]).and_then(Value::as_sequence);
    let mut out = Vec::new();
    for c in clusters.into_iter().flatten() {
        let groups = get_path(c, &["load_assignment", "endpoints"]).and_then(Value::as_sequence);
        let direct = groups.into_iter().flatten().any(|g| {
            let eps = get(g, "lb_endpoints").and_then(Value::as_sequence);
            eps.into_iter().flatten().any(|ep| {
                let at = str_at(ep, &["endpoint", "address", "socket_address", "address"]);
                matches!(at, Some("169.254.169.254" | "metadata.google.internal"))
            })
        });
        if let (true, Some(name)) = (direct, str_at(c, &["name"])) {
            out.push(name.to_owned());
        }
    }
    out
}

/// `envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true` in a static layer.
fn strip_stat_prefix(doc: &Value) -> bool {
    const FLAG: &str = "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix";
    let layers = get_path(doc, &["layered_runtime", "layers"]).and_then(Value::as_sequence);
    layers.into_iter().flatten().any(|l| {
        get_path(l, &["static_layer", FLAG])
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
    })
}

fn nonempty(v: &Value, keys: &[&str]) -> bool {
    str_at(v, keys).is_some_and(|s| !s.is_empty())
}

fn found_in_hcm(doc: &Value, hcm: &Value, path: &str, out: &mut Vec<Found>) {
    let Some(filters) = get(hcm, "http_filters").and_then(Value::as_sequence) else {
        return;
    };
    for (i, filter) in filters.iter().enumerate() {
        let Some(artifact) = artifact_of(filter) else {
            continue;
        };
        let typed = get(filter, "typed_config").cloned().unwrap_or_default();
        // The Wasm plugin config, or (dynamic module) nothing that environment or flag live in.
        let config = match artifact {
            Artifact::Wasm => get(&typed, "config").cloned().unwrap_or_default(),
            Artifact::DynamicModule => Value::Null,
        };
        let (configuration, module) = match artifact {
            Artifact::Wasm => (
                str_at(&config, &["configuration", "value"]).map(str::to_owned),
                Module::default(),
            ),
            Artifact::DynamicModule => {
                let config_type = str_at(&typed, &["filter_config", "@type"]).map(str::to_owned);
                // A Struct reaches the module as the JSON Envoy prints from it.
                let text = if config_type.as_deref().is_some_and(is_struct) {
                    get_path(&typed, &["filter_config", "value"])
                        .and_then(|v| serde_json::to_string(v).ok())
                } else {
                    str_at(&typed, &["filter_config", "value"]).map(str::to_owned)
                };
                let module = Module {
                    filter_name: str_at(&typed, &["filter_name"]).map(str::to_owned),
                    config_type,
                };
                (text, module)
            }
        };
        let configuration = configuration.unwrap_or_default();
        let env = get_path(&config, &["vm_config", "environment_variables"]);
        let key_values = env
            .and_then(|e| get(e, "key_values"))
            .and_then(Value::as_mapping)
            .map(|m: &Mapping| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        let host_env_keys = env
            .and_then(|e| get(e, "host_env_keys"))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let buffer_after = filters.get(i + 1).is_some_and(|next| {
            type_is(next, "filters.http.buffer.v3.Buffer")
                || str_at(next, &["name"]) == Some("envoy.filters.http.buffer")
        });
        let stop_iteration = get(&config, "allow_on_headers_stop_iteration")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.push(Found {
            label: format!("{path}.http_filters[{i}]"),
            artifact,
            configuration,
            module,
            generic_secrets: generic_secrets(doc),
            has_node: nonempty(doc, &["node", "id"]) && nonempty(doc, &["node", "cluster"]),
            metadata_clusters: metadata_clusters(doc),
            strip_stat_prefix: strip_stat_prefix(doc),
            key_values,
            host_env_keys,
            stop_iteration,
            hcm: Hcm {
                use_remote_address: bool_at(hcm, "use_remote_address"),
                normalize_path: bool_at(hcm, "normalize_path"),
                merge_slashes: bool_at(hcm, "merge_slashes"),
                escaped_slashes: get(hcm, "path_with_escaped_slashes_action")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                underscores: str_at(
                    hcm,
                    &[
                        "common_http_protocol_options",
                        "headers_with_underscores_action",
                    ],
                )
                .map(str::to_owned),
                buffer_after,
                route_headers: route_headers(hcm),
            },
        });
    }
}

fn walk(doc: &Value, v: &Value, path: &str, out: &mut Vec<Found>) {
    match v {
        Value::Mapping(m) => {
            if m.contains_key(Value::String("http_filters".into())) {
                found_in_hcm(doc, v, path, out);
            }
            for (k, child) in m {
                let key = k.as_str().unwrap_or("?");
                let p = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                walk(doc, child, &p, out);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                walk(doc, child, &format!("{path}[{i}]"), out);
            }
        }
        Value::Tagged(t) => walk(doc, &t.value, path, out),
        _ => {}
    }
}

/// Every bcsp-guard filter in an Envoy YAML document.
pub fn find(text: &str) -> Result<Vec<Found>, String> {
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| format!("not JSON and not valid YAML: {e}"))?;
    let mut out = Vec::new();
    walk(&doc, &doc, "", &mut out);
    Ok(out)
}

/// A file holds a filter configuration (a JSON object) rather than an Envoy config. A JSON
/// object with syntax errors counts as a filter configuration, so the filter's own message
/// reports them; an Envoy bootstrap in JSON (`static_resources`) does not.
pub fn is_filter_json(bytes: &[u8]) -> bool {
    if bytes.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(o)) => !o.contains_key("static_resources"),
        _ => true,
    }
}
