//! `EnvoyConfig`: what varies between the tests' Envoys, and the bootstrap YAML it becomes.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::Value;

use super::artifacts::default_artifact;
use super::{lo, Artifact};

/// A STATIC cluster `name` with one endpoint on 127.0.0.1:`port`, as an `extra_clusters` item.
fn static_cluster(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: \
         {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}\n"
    )
}

/// The `gcp_metadata` cluster, straight at a metadata server (the emulator) on `addr`, as an
/// `extra_clusters` item (the dynamic module's hop is put in front of it by the harness).
pub fn metadata_cluster(addr: std::net::SocketAddr) -> String {
    static_cluster("gcp_metadata", addr.port())
}

/// What varies between the tests' Envoys. Build with `EnvoyConfig::new(filter_json)` and the
/// `with_*` / field setters.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    /// The filter's JSON configuration (`keys`, `client_ip`, `allow_cidrs`, `key_id_header`).
    /// A JSON string is passed verbatim instead, to test text that is not JSON at all.
    pub filter: Value,
    /// The connection manager's `use_remote_address` (shipped configs set it to true).
    pub use_remote_address: bool,
    pub xff_num_trusted_hops: u32,
    /// Listener address: 127.0.0.1, ::1, or :: with `ipv4_compat` for IPv4-mapped peers.
    pub listen_ip: IpAddr,
    /// The listener's `ipv4_compat` (an IPv6 listener that also accepts IPv4).
    pub ipv4_compat: bool,
    pub concurrency: u32,
    /// Raw YAML list items appended under `static_resources.clusters` (indented 2 spaces).
    pub extra_clusters: String,
    /// Routes tried before the catch-all `/` → `bcsp`, as `(path prefix, cluster)`.
    pub extra_routes: Vec<(String, String)>,
    /// The connection manager's `normalize_path` + `merge_slashes` +
    /// `path_with_escaped_slashes_action: REJECT_REQUEST` (what the shipped configs set).
    pub path_normalization: bool,
    /// The listener's `per_connection_buffer_limit_bytes` (Envoy's default: 1 MiB).
    pub buffer_limit_bytes: Option<u32>,
    /// `vm_config.environment_variables.key_values`: what the Wasm VM's `std::env` sees (for
    /// the dynamic module: Envoy's own environment).
    pub vm_env: Vec<(String, String)>,
    /// The listener's `connection_balance_config: exact_balance`: each new connection goes to
    /// the worker with the fewest, so two open connections are on two workers.
    pub exact_balance: bool,
    /// The Wasm plugin config's `allow_on_headers_stop_iteration` (what every shipped config
    /// with webhooks sets): bcsp-guard holds a delivery's headers and still gets its body.
    pub stop_iteration: bool,
    /// The build under test (default: the Wasm module).
    pub artifact: Artifact,
    /// Raw YAML list items appended under `static_resources.listeners` (indented 2 spaces).
    pub extra_listeners: String,
    /// HTTP/1.1 trailers on (`enable_trailers` downstream and towards the `bcsp` cluster).
    pub trailers: bool,
    /// The connection manager's `headers_with_underscores_action` (Envoy's default: ALLOW).
    pub underscores: Option<&'static str>,
    /// Raw YAML for the virtual host's `routes:` list, replacing the generated one.
    pub routes_yaml: Option<String>,
    /// Raw YAML list items under `static_resources.secrets` (indented 2 spaces).
    pub static_secrets: String,
    /// The bootstrap's `node` (id and cluster), which SDS subscriptions require.
    pub node: Option<String>,
    /// A JSON access log with the audit fields (`Envoy::access_log`).
    pub access_log: bool,
    /// The dynamic module's `filter_config` as a `google.protobuf.Struct` (the configuration
    /// written as YAML; Envoy hands it over as JSON) instead of a `StringValue`.
    pub struct_config: bool,
}

impl EnvoyConfig {
    pub fn new(filter: Value) -> EnvoyConfig {
        EnvoyConfig {
            filter,
            use_remote_address: true,
            xff_num_trusted_hops: 0,
            listen_ip: lo(1),
            ipv4_compat: false,
            concurrency: 1,
            extra_clusters: String::new(),
            extra_routes: Vec::new(),
            path_normalization: false,
            buffer_limit_bytes: None,
            vm_env: Vec::new(),
            exact_balance: false,
            stop_iteration: true,
            trailers: false,
            underscores: None,
            routes_yaml: None,
            static_secrets: String::new(),
            node: None,
            artifact: default_artifact(),
            extra_listeners: String::new(),
            access_log: false,
            struct_config: false,
        }
    }
    /// The dynamic module's `filter_config` as a `google.protobuf.Struct`.
    pub fn struct_config(mut self) -> Self {
        self.struct_config = true;
        self
    }
    /// One generic secret in the bootstrap (`static_resources.secrets`), inline.
    pub fn generic_secret(mut self, name: &str, value: &str) -> Self {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let _ = writeln!(
            self.static_secrets,
            "  - name: {}\n    generic_secret: {{secret: {{inline_string: {}}}}}",
            q(name),
            q(value)
        );
        self
    }
    /// Names the Envoy node (`node: {id, cluster}`), as an SDS subscription requires.
    pub fn node(mut self, name: &str) -> Self {
        self.node = Some(name.to_string());
        self
    }
    /// Adds the JSON access log with the audit fields.
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }
    pub fn extra_listeners(mut self, yaml: &str) -> Self {
        self.extra_listeners = yaml.to_string();
        self
    }
    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifact = artifact;
        self
    }
    pub fn trailers(mut self, on: bool) -> Self {
        self.trailers = on;
        self
    }
    pub fn underscores(mut self, action: &'static str) -> Self {
        self.underscores = Some(action);
        self
    }
    /// `{UPSTREAM_PORT}` is not expanded here; name clusters declared with `extra_clusters`.
    pub fn routes_yaml(mut self, yaml: &str) -> Self {
        self.routes_yaml = Some(yaml.to_string());
        self
    }
    pub fn use_remote_address(mut self, on: bool) -> Self {
        self.use_remote_address = on;
        self
    }
    pub fn xff_num_trusted_hops(mut self, n: u32) -> Self {
        self.xff_num_trusted_hops = n;
        self
    }
    pub fn listen_ip(mut self, ip: IpAddr) -> Self {
        self.listen_ip = ip;
        self
    }
    pub fn ipv4_compat(mut self, on: bool) -> Self {
        self.ipv4_compat = on;
        self
    }
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }
    /// Route requests under `prefix` to `cluster` (declare it with `extra_clusters`).
    pub fn route(mut self, prefix: &str, cluster: &str) -> Self {
        self.extra_routes
            .push((prefix.to_string(), cluster.to_string()));
        self
    }
    pub fn path_normalization(mut self, on: bool) -> Self {
        self.path_normalization = on;
        self
    }
    pub fn buffer_limit_bytes(mut self, n: u32) -> Self {
        self.buffer_limit_bytes = Some(n);
        self
    }
    /// Leave out `allow_on_headers_stop_iteration` (a forgotten flag).
    pub fn without_stop_iteration(mut self) -> Self {
        self.stop_iteration = false;
        self
    }
    pub fn exact_balance(mut self, on: bool) -> Self {
        self.exact_balance = on;
        self
    }
    /// Pass an environment variable to the Wasm VM (`vm_config.environment_variables`).
    pub fn vm_env(mut self, name: &str, value: &str) -> Self {
        self.vm_env.push((name.to_string(), value.to_string()));
        self
    }
    /// Points cluster `gcp_metadata` at a loopback hop in the same Envoy that drops
    /// `X-Forwarded-For` and proxies to `metadata`. The dynamic module's config-level callouts
    /// go through Envoy's async client, which adds that header (the ABI has no switch for it),
    /// and the metadata server refuses any request carrying one; docs/DYNAMIC_MODULE.md gives
    /// the same recipe. Appends to `extra_listeners` and `extra_clusters`.
    pub fn metadata_hop(mut self, metadata: SocketAddr) -> Self {
        self.extra_clusters
            .push_str(&static_cluster("gcp_metadata_server", metadata.port()));
        self.add_hop();
        self
    }

    /// The hop listener and the `gcp_metadata` cluster that leads to it.
    fn add_hop(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let _ = write!(
            self.extra_listeners,
            r#"  - name: metadata_hop
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: metadata_hop
          route_config:
            virtual_hosts:
            - name: metadata
              domains: ["*"]
              request_headers_to_remove: [x-forwarded-for]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: gcp_metadata_server}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
        );
        self.extra_clusters
            .push_str(&static_cluster("gcp_metadata", port));
    }

    /// A suite written for the Wasm build declares `gcp_metadata` pointing straight at the
    /// metadata server; for the dynamic module that cluster is renamed and put behind the hop.
    pub(super) fn with_native_metadata_hop(&self) -> EnvoyConfig {
        let mut cfg = self.clone();
        let direct = "  - name: gcp_metadata\n";
        if cfg.artifact == Artifact::DynamicModule
            && cfg.extra_clusters.contains(direct)
            && !cfg.extra_listeners.contains("name: metadata_hop")
        {
            cfg.extra_clusters = cfg
                .extra_clusters
                .replace(direct, "  - name: gcp_metadata_server\n")
                .replace(
                    "cluster_name: gcp_metadata\n",
                    "cluster_name: gcp_metadata_server\n",
                );
            cfg.add_hop();
        }
        cfg
    }

    /// `{UPSTREAM_PORT}` in the YAML becomes the recording upstream's port.
    pub fn extra_clusters(mut self, yaml: &str) -> Self {
        self.extra_clusters = yaml.to_string();
        self
    }

    /// The bootstrap YAML (JSON strings are valid YAML scalars, so values are JSON-quoted).
    pub fn to_yaml(&self, wasm: &Path, upstream: SocketAddr) -> String {
        let q = |s: &str| Value::String(s.to_string()).to_string();
        let vm_env = if self.vm_env.is_empty() {
            String::new()
        } else {
            format!(
                "                  environment_variables: {{key_values: {{{}}}}}\n",
                self.vm_env
                    .iter()
                    .map(|(k, v)| format!("{}: {}", q(k), q(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let filter = q(&match &self.filter {
            Value::String(raw) => raw.clone(),
            json => json.to_string(),
        });
        format!(
            r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
{secrets}  listeners:
  - name: ingress
    address: {{socket_address: {{address: {listen}, port_value: 0, ipv4_compat: {compat}}}}}
{buffer_limit}    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: {ura}
          xff_num_trusted_hops: {hops}
          preserve_external_request_id: true
{normalization}{hcm_extra}          route_config:
            virtual_hosts:
            - name: bcsp
              domains: ["*"]
              routes: {routes}
          http_filters:
{guard_filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{extra_listeners}  clusters:
  - name: bcsp
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: bcsp
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {up_ip}, port_value: {up_port}}}}}}}
{cluster_extra}{extra}{runtime}{node}"#,
            // Without this flag Prometheus names a dynamic module's counters
            // `envoy_dynamicmodulescustom_<name>`; with it, exactly as the Wasm build's.
            runtime = match self.artifact {
                Artifact::Wasm => "",
                Artifact::DynamicModule => {
                    "layered_runtime:\n  layers:\n  - name: static\n    static_layer:\n      \
                     envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix: true\n"
                }
            },
            guard_filter = match self.artifact {
                Artifact::Wasm => format!(
                    r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: bcsp_guard
                root_id: bcsp_guard
                fail_open: false
{stop_iteration}                vm_config:
                  vm_id: bcsp_guard
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
{vm_env}                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {filter}
"#,
                    wasm = q(&wasm.display().to_string()),
                    vm_env = vm_env,
                    filter = filter,
                    stop_iteration = if self.stop_iteration {
                        "                allow_on_headers_stop_iteration: true\n"
                    } else {
                        ""
                    },
                ),
                Artifact::DynamicModule => format!(
                    r#"          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: bcsp_guard_envoy}}
              filter_name: bcsp_guard
              filter_config:
                "@type": type.googleapis.com/google.protobuf.{config_type}
                value: {config_value}
"#,
                    // JSON is YAML: the object itself is the Struct's value.
                    config_type = if self.struct_config { "Struct" } else { "StringValue" },
                    config_value = if self.struct_config {
                        self.filter.to_string()
                    } else {
                        filter.clone()
                    },
                ),
            },
            hcm_extra = if self.trailers {
                "          http_protocol_options: {enable_trailers: true}\n"
            } else {
                ""
            }
            .to_string()
                + &self
                    .underscores
                    .map(|a| {
                        format!(
                            "          common_http_protocol_options: {{headers_with_underscores_action: {a}}}\n"
                        )
                    })
                    .unwrap_or_default()
                + &if self.access_log {
                    super::access_log::access_log_yaml(
                        self.artifact,
                        super::access_log::ACCESS_LOG_PLACEHOLDER,
                    )
                } else {
                    String::new()
                },
            cluster_extra = if self.trailers {
                "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \
                 \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        \
                 explicit_http_config: {http_protocol_options: {enable_trailers: true}}\n"
            } else {
                ""
            },
            node = self
                .node
                .as_ref()
                .map(|n| format!("node: {{id: {}, cluster: {}}}\n", q(n), q(n)))
                .unwrap_or_default(),
            secrets = if self.static_secrets.is_empty() {
                String::new()
            } else {
                format!("  secrets:\n{}", self.static_secrets)
            },
            listen = q(&self.listen_ip.to_string()),
            compat = self.ipv4_compat,
            buffer_limit = self
                .buffer_limit_bytes
                .map(|n| format!("    per_connection_buffer_limit_bytes: {n}\n"))
                .unwrap_or_default()
                + if self.exact_balance {
                    "    connection_balance_config: {exact_balance: {}}\n"
                } else {
                    ""
                },
            normalization = if self.path_normalization {
                "          normalize_path: true\n          merge_slashes: true\n          \
                 path_with_escaped_slashes_action: REJECT_REQUEST\n"
            } else {
                ""
            },
            ura = self.use_remote_address,
            hops = self.xff_num_trusted_hops,
            extra_listeners = self.extra_listeners,
            up_ip = q(&upstream.ip().to_string()),
            up_port = upstream.port(),
            extra = self
                .extra_clusters
                .replace("{UPSTREAM_PORT}", &upstream.port().to_string()),
            routes = match &self.routes_yaml {
                Some(yaml) => yaml.clone(),
                None => format!(
                    "[{}{{match: {{prefix: \"/\"}}, route: {{cluster: bcsp}}}}]",
                    self.extra_routes
                        .iter()
                        .map(|(p, c)| format!(
                            "{{match: {{prefix: {}}}, route: {{cluster: {}}}}}, ",
                            q(p),
                            q(c)
                        ))
                        .collect::<String>()
                ),
            },
        )
    }
}
