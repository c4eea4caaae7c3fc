//! The dynamic-module floor: bcsp-guard's mandatory Envoy calls with no policy (see
//! Cargo.toml). Every hook Envoy 1.40 looks up is exported; only the request-headers hook
//! does anything.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_void;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buf {
    ptr: *const u8,
    len: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pair {
    key: Buf,
    value: Buf,
}

fn buf(s: &[u8]) -> Buf {
    Buf {
        ptr: s.as_ptr(),
        len: s.len(),
    }
}

const NULL: Buf = Buf {
    ptr: std::ptr::null(),
    len: 0,
};

extern "C" {
    fn envoy_dynamic_module_callback_http_get_headers_size(f: *mut c_void, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        f: *mut c_void,
        kind: u32,
        out: *mut Pair,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        f: *mut c_void,
        kind: u32,
        key: Buf,
        value: Buf,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_clear_route_cache(f: *mut c_void);
    fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        f: *mut c_void,
        ns: Buf,
        entries: *const Pair,
        count: usize,
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    Edits,
    Audit,
}

// A bearer value as long as a real Google identity token (about 900 bytes).
static TOKEN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

fn token() -> &'static [u8] {
    TOKEN.get_or_init(|| {
        let mut t = b"Bearer eyJhbGciOiJSUzI1NiJ9.".to_vec();
        t.resize(900, b'x');
        t
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    c"v0.2.0".as_ptr().cast()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _envoy: *mut c_void,
    _name: Buf,
    config: Buf,
) -> *const c_void {
    let text = if config.ptr.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(config.ptr, config.len)
    };
    let mode = match text {
        b"pass" => Mode::Pass,
        b"edits" => Mode::Edits,
        b"audit" => Mode::Audit,
        _ => return std::ptr::null(),
    };
    token();
    Box::into_raw(Box::new(mode)) as *const c_void
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(c: *const c_void) {
    if !c.is_null() {
        drop(Box::from_raw(c as *mut Mode));
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _envoy: *mut c_void,
) -> *const c_void {
    config
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    f: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let mode = *(filter as *const Mode);
    if mode == Mode::Pass {
        return 0;
    }
    // The header read the policy needs: Envoy fills an array of (name, value) views we own.
    let n = envoy_dynamic_module_callback_http_get_headers_size(f, 0);
    let mut pairs = vec![
        Pair {
            key: NULL,
            value: NULL
        };
        n
    ];
    if n > 0 && envoy_dynamic_module_callback_http_get_headers(f, 0, pairs.as_mut_ptr()) {
        let total: usize = pairs.iter().map(|p| p.key.len + p.value.len).sum();
        std::hint::black_box(total);
    }
    envoy_dynamic_module_callback_http_set_header(f, 0, buf(b"x-bcsp-key"), NULL);
    envoy_dynamic_module_callback_http_clear_route_cache(f);
    envoy_dynamic_module_callback_http_set_header(f, 0, buf(b"authorization"), buf(token()));
    envoy_dynamic_module_callback_http_set_header(
        f,
        0,
        buf(b"x-bcsp-key-id"),
        buf(b"genesys-2026q4"),
    );
    if mode == Mode::Audit {
        let fields: [(&[u8], &[u8]); 6] = [
            (b"key_id", b"genesys-2026q4"),
            (b"verdict", b"forwarded"),
            (b"reason", b"allowed"),
            (b"client", b"127.0.0.1"),
            (b"client_source", b"xff-1"),
            (b"audience", b"https://bcsp-bench-uc.a.run.app"),
        ];
        let entries = fields.map(|(k, v)| Pair {
            key: buf(k),
            value: buf(v),
        });
        envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
            f,
            buf(b"bcsp_guard"),
            entries.as_ptr(),
            entries.len(),
        );
    }
    0
}

// The rest only continue.
macro_rules! pass {
    ($($name:ident($($arg:ty),*) -> $ret:ty;)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($(_: $arg),*) -> $ret {
            Default::default()
        }
    )*};
}

pass! {
    envoy_dynamic_module_on_http_filter_config_scheduled(*mut c_void, *const c_void, u64) -> ();
    envoy_dynamic_module_on_http_filter_config_http_callout_done(*mut c_void, *const c_void, u64, u32, *const Pair, usize, *const Buf, usize) -> ();
    envoy_dynamic_module_on_http_filter_request_body(*mut c_void, *const c_void, bool) -> u32;
    envoy_dynamic_module_on_http_filter_request_trailers(*mut c_void, *const c_void) -> u32;
    envoy_dynamic_module_on_http_filter_response_headers(*mut c_void, *const c_void, bool) -> u32;
    envoy_dynamic_module_on_http_filter_response_body(*mut c_void, *const c_void, bool) -> u32;
    envoy_dynamic_module_on_http_filter_response_trailers(*mut c_void, *const c_void) -> u32;
    envoy_dynamic_module_on_http_filter_stream_complete(*mut c_void, *const c_void) -> ();
    envoy_dynamic_module_on_http_filter_destroy(*const c_void) -> ();
    envoy_dynamic_module_on_http_filter_scheduled(*mut c_void, *const c_void, u64) -> ();
    envoy_dynamic_module_on_http_filter_http_callout_done(*mut c_void, *const c_void, u64, u32, *const Pair, usize, *const Buf, usize) -> ();
    envoy_dynamic_module_on_http_filter_http_stream_headers(*mut c_void, *const c_void, u64, *const Pair, usize, bool) -> ();
    envoy_dynamic_module_on_http_filter_http_stream_data(*mut c_void, *const c_void, u64, *const Buf, usize, bool) -> ();
    envoy_dynamic_module_on_http_filter_http_stream_trailers(*mut c_void, *const c_void, u64, *const Pair, usize) -> ();
    envoy_dynamic_module_on_http_filter_http_stream_complete(*mut c_void, *const c_void, u64) -> ();
    envoy_dynamic_module_on_http_filter_http_stream_reset(*mut c_void, *const c_void, u64, u32) -> ();
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(*mut c_void, *const c_void) -> ();
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(*mut c_void, *const c_void) -> ();
}
