//! Envoy bootstraps for `check` and `explain` to read, assembled from the few parts a test
//! varies: connection-manager settings, routes, and bcsp-guard as the Wasm filter or the
//! dynamic module (each with its JSON as a `StringValue`).

use serde_json::Value;

/// A route table sending everything to cluster `bcsp`.
pub(crate) const ROUTE_ALL: &str = "          route_config: {virtual_hosts: [{name: b, domains: [\"*\"], routes: [{match: {prefix: \"/\"}, route: {cluster: bcsp}}]}]}\n";

/// `top`, then `static_resources` with `secrets` and the listeners, then `tail`.
pub(crate) fn bootstrap(top: &str, secrets: &str, listeners: &[String], tail: &str) -> String {
    format!(
        "{top}static_resources:\n{secrets}  listeners:\n{}{tail}",
        listeners.concat()
    )
}

/// Listener `i` (port 8080 + i): a connection manager with the `hcm` lines, `routes` and the
/// `http_filters` entries given, then the router.
pub(crate) fn listener(i: usize, hcm: &str, routes: &str, http_filters: &str) -> String {
    format!(
        r#"  - name: l{i}
    address: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{hcm}{routes}          http_filters:
{http_filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        port = 8080 + i
    )
}

/// `filter` as the YAML scalar of a `StringValue`.
fn string_value(filter: &Value) -> String {
    serde_json::to_string(&filter.to_string()).unwrap()
}

/// bcsp-guard as the Wasm filter: `flag` lines go into the plugin config before `vm_config`,
/// `env` lines into `vm_config` after the code.
pub(crate) fn wasm_filter(filter: &Value, flag: &str, env: &str) -> String {
    let value = string_value(filter);
    format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: bcsp_guard
{flag}                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: /etc/envoy/bcsp_guard.wasm}}}}
{env}                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {value}
"#
    )
}

/// bcsp-guard as the dynamic module, under `filter_name`.
pub(crate) fn module_filter(filter: &Value, filter_name: &str) -> String {
    let value = string_value(filter);
    format!(
        r#"          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: bcsp_guard_envoy}}
              filter_name: {filter_name}
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {value}
"#
    )
}
