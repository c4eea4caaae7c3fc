//! Raw imports for the host calls that may legitimately be missing. The SDK's wrappers panic
//! on any unexpected status, and GCP Service Extensions refuses metrics and timers: a panic
//! there would take down every request on the worker, so these return the status instead.
//! Shared data and properties go through here too: a host that lacks them answers with a
//! status the SDK does not expect, and the SDK would panic.

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_define_metric(kind: u32, name_ptr: *const u8, name_len: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period_ms: u32) -> u32;
    fn proxy_get_shared_data(
        key_ptr: *const u8,
        key_len: usize,
        value_ptr: *mut *mut u8,
        value_len: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_ptr: *const u8,
        key_len: usize,
        value_ptr: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        value_ptr: *mut *mut u8,
        value_len: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_ptr: *const u8,
        path_len: usize,
        value_ptr: *mut *mut u8,
        value_len: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_ptr: *const u8,
        path_len: usize,
        value_ptr: *const u8,
        value_len: usize,
    ) -> u32;
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

/// Takes ownership of a buffer the host filled through the SDK's exported allocator
/// (`proxy_on_memory_allocate`, a leaked `Vec<u8>` of exactly `len` bytes).
///
/// SAFETY: `ptr` is null or came from that allocator with capacity `len`.
unsafe fn take_host_buffer(ptr: *mut u8, len: usize) -> Option<Vec<u8>> {
    (!ptr.is_null()).then(|| Vec::from_raw_parts(ptr, len, len))
}

/// Value and compare-and-swap version; `(None, None)` when absent or refused by the host.
pub fn get_shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let mut ptr = std::ptr::null_mut();
    let mut len = 0usize;
    let mut cas = 0u32;
    // SAFETY: out-pointers are live locals; the key slice outlives the call.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas) };
    // SAFETY: the host hands back memory from our allocator (or null).
    let value = unsafe { take_host_buffer(ptr, len) };
    if status != OK {
        return (None, None);
    }
    (value, (cas != 0).then_some(cas))
}

/// False on a version mismatch or when the host refuses shared data.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    // SAFETY: both slices outlive the call.
    let status = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    };
    status == OK
}

/// A request or connection property (`["source", "address"]`); None when absent or refused.
pub fn get_property(path: &[&str]) -> Option<Vec<u8>> {
    let serialized = path.join("\0");
    let mut ptr = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: out-pointers are live locals; the path outlives the call.
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut ptr, &mut len) };
    // SAFETY: the host hands back memory from our allocator (or null).
    let value = unsafe { take_host_buffer(ptr, len) };
    if status == OK {
        value
    } else {
        None
    }
}

/// Sets a one-segment property of the current stream (Envoy keeps it as filter state
/// `wasm.<name>`); false when the host refuses.
pub fn set_property(name: &str, value: &[u8]) -> bool {
    // SAFETY: both buffers are live for the call; the host copies them.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status == OK
}

/// proxy-wasm map types this filter reads.
pub const REQUEST_HEADERS: u32 = 0;
pub const REQUEST_TRAILERS: u32 = 1;
pub const CALL_RESPONSE_HEADERS: u32 = 6;

/// A header map in proxy-wasm's serialized form (empty when the host has none), for
/// [`crate::pipeline::header_map::decode`]. The SDK's own reader panics on bytes that are not UTF-8;
/// Envoy forwards such bytes, and one request must not be able to trap the VM.
pub fn get_header_map(map_type: u32) -> Vec<u8> {
    let mut ptr = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: out-pointers are live locals.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut ptr, &mut len) };
    // SAFETY: the host hands back memory from our allocator (or null).
    let bytes = unsafe { take_host_buffer(ptr, len) };
    match bytes {
        Some(b) if status == OK => b,
        _ => Vec::new(),
    }
}
