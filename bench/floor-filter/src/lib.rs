//! The Wasm floor. Its plugin configuration picks what it does per request:
//! - empty or `read`: reads the credential header and lets the request through (setup 3);
//! - `edits`: bcsp-guard's mandatory host calls: the whole header map read, the credential
//!   removed, a token-sized `authorization` and the key id set (setup 13);
//! - `audit`: `edits` plus the six access-log properties of an admitted request (setup 14).
//!
//! 4/14 is then how much of the Wasm build's cost is its own work, not crossing into Envoy.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { mode: Rc::new(Mode::Read) })
    });
}}

#[derive(PartialEq)]
enum Mode {
    Read,
    Edits,
    Audit,
}

struct Root {
    mode: Rc<Mode>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.mode = Rc::new(match config.as_slice() {
            b"" | b"read" => Mode::Read,
            b"edits" => Mode::Edits,
            b"audit" => Mode::Audit,
            _ => return false,
        });
        true
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            mode: self.mode.clone(),
        }))
    }
}

struct Floor {
    mode: Rc<Mode>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if *self.mode == Mode::Read {
            // One host call, as a filter that only looks at a header would make. (Bytes: the
            // String variant of the SDK panics on a value that is not UTF-8.)
            let key = self.get_http_request_header_bytes("x-bcsp-key");
            std::hint::black_box(key);
            return Action::Continue;
        }
        // The calls bcsp-guard makes, made as cheaply: the map in its serialized form (not
        // parsed into owned pairs), edits and properties straight to the host.
        let mut ptr = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: out-pointers are live locals; the host allocates through the SDK's
        // proxy_on_memory_allocate, so the buffer is ours to free.
        unsafe {
            if proxy_get_header_map_pairs(0, &mut ptr, &mut len) == 0 && !ptr.is_null() {
                let map = Vec::from_raw_parts(ptr, len, len);
                std::hint::black_box(&map);
            }
        }
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-bcsp-key", None);
        let _ =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", Some(token()));
        let _ = hostcalls::set_map_value(
            MapType::HttpRequestHeaders,
            "x-bcsp-key-id",
            Some("genesys-2026q4"),
        );
        if *self.mode == Mode::Audit {
            for (name, value) in [
                ("bcsp_guard.key_id", "genesys-2026q4"),
                ("bcsp_guard.verdict", "forwarded"),
                ("bcsp_guard.reason", "allowed"),
                ("bcsp_guard.client", "127.0.0.1"),
                ("bcsp_guard.client_source", "xff-1"),
                ("bcsp_guard.audience", "https://bcsp-bench-uc.a.run.app"),
            ] {
                // SAFETY: both buffers are live for the call; the host copies them.
                unsafe {
                    proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len());
                }
            }
        }
        Action::Continue
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, ptr: *mut *mut u8, len: *mut usize) -> u32;
    fn proxy_set_property(
        path_ptr: *const u8,
        path_len: usize,
        value_ptr: *const u8,
        value_len: usize,
    ) -> u32;
}

/// A bearer value as long as a real Google identity token (about 900 bytes), built once.
fn token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut t = String::from("Bearer eyJhbGciOiJSUzI1NiJ9.");
        t.extend(std::iter::repeat_n('x', 900 - t.len()));
        t
    })
}
