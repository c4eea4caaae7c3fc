//! The Wasm floor: reads the credential header and lets the request through.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Floor) });
}}

struct Floor;

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // One host call, as a filter that only looks at a header would make. (Bytes: the
        // String variant of the SDK panics on a value that is not UTF-8.)
        let key = self.get_http_request_header_bytes("x-bcsp-key");
        std::hint::black_box(key);
        Action::Continue
    }
}
