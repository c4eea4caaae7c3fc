//! Per request: what the Wasm floor does (read one header), then `N` times one operation.
//! Configuration `"<op>:<N>"`; ops are listed in [`run`]. The difference in Envoy CPU time per
//! request against `none`, divided by N, is the cost of one operation.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::hint::black_box;
use std::rc::Rc;

/// A token-sized header value, as bcsp-guard injects (`Bearer <JWT>`, ~750 bytes).
const TOKEN: &str = concat!(
    "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImVtdWxhdG9yIiwidHlwIjoiSldUIn0.",
    "eyJhdWQiOiJodHRwczovL2Jjc3AtYmVuY2gtdWMuYS5ydW4uYXBwIiwiYXpwIjoiMTAwMDAwMDAwMDAwMDAwMDAwMD",
    "AxIiwiZW1haWwiOiJiY3NwLWd1YXJkLWVtdWxhdG9yQGVtdWxhdG9yLmlhbS5nc2VydmljZWFjY291bnQuY29tIiwiZX",
    "hwIjoxNzk1NTI2MTI0LCJpYXQiOjE3OTU1MjI1MjQsImlzcyI6Imh0dHBzOi8vYWNjb3VudHMuZ29vZ2xlLmNvbSIsIm",
    "p0aSI6ImVtdWxhdG9yLTEiLCJzdWIiOiIxMDAwMDAwMDAwMDAwMDAwMDAwMDEifQ.",
    "8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w",
    "8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w",
    "8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w",
    "8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w8mGNpc7fRaBa3mZ8wgtVyMSZ_s90BMXBBz5aZWHjp0w",
);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { probe: Rc::new(Probe::default()) })
    });
}}

#[derive(Default)]
struct Probe {
    op: String,
    n: u32,
    metric: u32,
}

struct Root {
    probe: Rc<Probe>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let cfg = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = String::from_utf8(cfg).unwrap_or_default();
        let (op, n) = cfg.split_once(':').unwrap_or(("none", "0"));
        self.probe = Rc::new(Probe {
            op: op.trim().to_owned(),
            n: n.trim().parse().unwrap_or(0),
            metric: hostcalls::define_metric(MetricType::Counter, "probe.count").unwrap_or(0),
        });
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            probe: self.probe.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    probe: Rc<Probe>,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // The floor's one call.
        let _ = black_box(hostcalls::get_map_value_bytes(
            MapType::HttpRequestHeaders,
            "x-bcsp-key",
        ));
        for _ in 0..self.probe.n {
            run(&self.probe);
        }
        Action::Continue
    }
}

fn run(p: &Probe) {
    let h = MapType::HttpRequestHeaders;
    match p.op.as_str() {
        // One header by name (what reading "only the headers you need" costs per header).
        "get_header" => drop(black_box(hostcalls::get_map_value_bytes(
            h,
            "x-forwarded-for",
        ))),
        // The whole map as the SDK's get_map returns it: one host call + 2 Strings per header.
        "get_map" => drop(black_box(hostcalls::get_map_bytes(h))),
        "set_header" => drop(hostcalls::set_map_value(
            h,
            "x-probe",
            Some("genesys-2026q4"),
        )),
        "set_token" => drop(hostcalls::set_map_value(h, "x-probe", Some(TOKEN))),
        "remove_absent" => drop(hostcalls::set_map_value(h, "x-absent", None)),
        "remove_present" => drop(hostcalls::set_map_value(h, "x-bcsp-key", None)),
        "auth_token" => drop(hostcalls::set_map_value(h, "authorization", Some(TOKEN))),
        // Run once per request (N = 1): a change to the request headers. For ABI 0.2.1 modules
        // Envoy clears the route cache on such a change (Envoy 1.33 release notes), so the
        // router resolves the route a second time; the `@300` rows show it growing with the
        // route table.
        "first_change" => drop(hostcalls::set_map_value(
            h,
            "x-probe",
            Some("genesys-2026q4"),
        )),
        "time" => drop(black_box(hostcalls::get_current_time())),
        "metric" => drop(hostcalls::increment_metric(p.metric, 1)),
        "property" => drop(black_box(hostcalls::get_property(vec![
            "source", "address",
        ]))),
        // Pure Wasm work: bcsp-guard's one hash per request, and 14 owned header pairs.
        "sha256" => {
            use sha2::Digest;
            let secret = black_box(b"E4aOTJqw/r/R+dMx+MD90UT7P9cHXu03KQpeMXOKYLc=");
            black_box(sha2::Sha256::digest(secret));
        }
        "alloc14" => {
            let v: Vec<(String, String)> = (0..14)
                .map(|i| (format!("header-{i}"), format!("value-{i}-abcdefghij")))
                .collect();
            drop(black_box(v));
        }
        _ => {}
    }
}
