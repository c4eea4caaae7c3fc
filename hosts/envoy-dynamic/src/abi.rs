//! The slice of Envoy's dynamic-module C ABI this module uses, declared by hand from
//! `source/extensions/dynamic_modules/abi/abi.h`. Every declaration here is called by some
//! end-to-end test against Envoy 1.40 (see docs/DYNAMIC_MODULE.md): a wrong signature would be
//! undefined behaviour that no compiler can catch, so nothing is declared "just in case".
#![allow(non_camel_case_types)]

use std::ffi::c_void;

pub type ConfigEnvoyPtr = *mut c_void;
pub type FilterEnvoyPtr = *mut c_void;
pub type SchedulerPtr = *mut c_void;

/// A buffer Envoy owns; valid until the hook returns or a setter is called.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

/// A buffer the module owns, lent to Envoy for the duration of one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// One entry of a batch setter: 32 bytes, the key's buffer then the value's (the layout
/// Envoy 1.40.0's `set_dynamic_metadata_string_batch` reads with a 32-byte stride).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleKeyValue {
    pub key: ModuleBuffer,
    pub value: ModuleBuffer,
}

impl ModuleBuffer {
    pub fn of(s: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: s.as_ptr(),
            length: s.len(),
        }
    }
    pub fn null() -> ModuleBuffer {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

impl EnvoyBuffer {
    pub fn empty() -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
    /// The bytes, or empty for a null buffer.
    ///
    /// # Safety
    /// `ptr` must point at `length` readable bytes for the chosen lifetime.
    pub unsafe fn bytes<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.length)
        }
    }
}

// C enums, passed as their integer values.
pub const LOG_TRACE: u32 = 0;
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

pub const REQUEST_HEADER: u32 = 0;
pub const REQUEST_TRAILER: u32 = 1;
pub const RECEIVED_REQUEST_BODY: u32 = 0;
pub const BUFFERED_REQUEST_BODY: u32 = 1;

pub const ATTRIBUTE_XDS_CLUSTER_NAME: u32 = 57;

pub const METRICS_SUCCESS: u32 = 0;
pub const CALLOUT_INIT_SUCCESS: u32 = 0;
pub const CALLOUT_SUCCESS: u32 = 0;

pub const REQUEST_HEADERS_CONTINUE: u32 = 0;
pub const REQUEST_HEADERS_STOP_ITERATION: u32 = 1;
pub const REQUEST_BODY_CONTINUE: u32 = 0;
pub const REQUEST_BODY_STOP_AND_BUFFER: u32 = 1;
pub const REQUEST_BODY_STOP_NO_BUFFER: u32 = 3;
pub const REQUEST_TRAILERS_STOP_ITERATION: u32 = 1;
pub const CONTINUE: u32 = 0;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Marks the route stale: Envoy chooses it again, from the edited headers, the next time
    /// it is asked (the router, or an `xds.cluster_name` read).
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    /// The connection's TCP peer as `ip:port` (`[v6]:port`), whatever X-Forwarded-For says and
    /// whatever `use_remote_address` is. Not in the header this file started from: established
    /// from Envoy 1.40.0's own machine code (it reads only these two arguments, stores the
    /// peer's `asStringView()` into `result` and returns true) and checked by a real-Envoy test.
    pub fn envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
        filter: FilterEnvoyPtr,
        result: *mut EnvoyBuffer,
    ) -> bool;
    /// Sets every `entries[i].key` to its value in the stream's dynamic metadata namespace
    /// `ns` (created when missing, existing keys overwritten): what `%DYNAMIC_METADATA(ns:key)%`
    /// prints. One call finds the namespace once and edits its `Struct` in place, where the
    /// single-key setter builds and merges a `Struct` per key (about 3.1k instructions each).
    /// Returns nothing: Envoy 1.40.0's machine code leaves the return register unset.
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
        filter: FilterEnvoyPtr,
        ns: ModuleBuffer,
        entries: *const ModuleKeyValue,
        count: usize,
    );
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    /// Registers this config's interest in one of Envoy's generic secrets; only allowed while
    /// the config is being created. An empty `config_source` names a secret of the bootstrap's
    /// `static_resources.secrets`; otherwise it is a ConfigSource in JSON (an SDS subscription).
    /// Returns the secret's id for [`envoy_dynamic_module_callback_http_filter_config_get_generic_secret`],
    /// 0 when Envoy refused (it logs why). Like the direct peer address, read from Envoy
    /// 1.40.0's machine code and its log strings, and checked by a real-Envoy test.
    pub fn envoy_dynamic_module_callback_http_filter_config_generic_secret_subscribe(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        config_source: ModuleBuffer,
    ) -> u64;
    /// The current value of a subscribed generic secret; false for an unknown id.
    pub fn envoy_dynamic_module_callback_http_filter_config_get_generic_secret(
        config: ConfigEnvoyPtr,
        id: u64,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: SchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
}

/// Module-owned header pairs in the layout Envoy reads; borrows `pairs`.
pub fn module_headers(pairs: &[(&str, &str)]) -> Vec<ModuleHeader> {
    pairs
        .iter()
        .map(|(k, v)| ModuleHeader {
            key_ptr: k.as_ptr(),
            key_length: k.len(),
            value_ptr: v.as_ptr(),
            value_length: v.len(),
        })
        .collect()
}
