//! Raw imports for the host calls that may legitimately be missing. The SDK's wrappers panic
//! on any unexpected status, and GCP Service Extensions refuses metrics and timers: a panic
//! there would take down every request on the worker, so these return the status instead.

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_define_metric(kind: u32, name_ptr: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period_ms: u32) -> u32;
}

const OK: u32 = 0;

pub fn define_metric(gauge: bool, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: pointer and length describe a live string; `id` outlives the call.
    let status =
        unsafe { proxy_define_metric(u32::from(gauge), name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment_metric(id: u32) {
    // SAFETY: plain values only.
    let _ = unsafe { proxy_increment_metric(id, 1) };
}

pub fn record_metric(id: u32, value: u64) {
    // SAFETY: plain values only.
    let _ = unsafe { proxy_record_metric(id, value) };
}

pub fn set_tick_period_ms(ms: u32) -> bool {
    // SAFETY: plain values only.
    unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
}
