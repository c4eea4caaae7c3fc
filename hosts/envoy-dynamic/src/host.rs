//! One HTTP stream as the core's `RequestHost`: header reads, header writes, local replies and
//! counters become calls on Envoy's filter pointer.

use crate::abi::{self, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr, ModuleBuffer};
use bcsp_guard::pipeline::audit::{Audit, FIELDS};
use bcsp_guard::pipeline::header_map;
use bcsp_guard::pipeline::reply::Reply;
use bcsp_guard::pipeline::RequestHost;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Details string Envoy records for our local replies (`%RESPONSE_CODE_DETAILS%`).
const REPLY_DETAILS: &[u8] = b"bcsp_guard_local_reply";
/// The dynamic-metadata namespace of the audit record.
const AUDIT_NAMESPACE: &[u8] = b"bcsp_guard";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Valid only inside the hook Envoy called with `ptr`.
pub struct StreamHost {
    pub ptr: FilterEnvoyPtr,
    /// Whether the route cache is cleared and nothing has asked for the route since: Envoy
    /// chooses it again only when asked (the router, after the hook; an `xds.cluster_name`
    /// read), so one clear covers every edit made before that.
    route_cleared: Cell<bool>,
}

impl StreamHost {
    pub fn new(ptr: FilterEnvoyPtr) -> StreamHost {
        StreamHost {
            ptr,
            route_cleared: Cell::new(false),
        }
    }

    fn attribute(&self, id: u32) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `ptr` is the live filter of this hook; `out` is a valid out-pointer and
        // the bytes are copied before any setter runs.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr, id, &mut out,
            )
        };
        // SAFETY: Envoy filled `out` with a buffer valid until this hook returns.
        ok.then(|| unsafe { out.bytes() }.to_vec())
    }

    /// The TCP peer of this stream's connection, as `ip:port`.
    fn direct_peer(&self) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::empty();
        // SAFETY: `ptr` is the live filter of this hook; `out` is a valid out-pointer and
        // the bytes are copied before any setter runs.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_downstream_direct_remote_address(
                self.ptr, &mut out,
            )
        };
        // SAFETY: Envoy filled `out` with a buffer valid until this hook returns.
        ok.then(|| unsafe { out.bytes() }.to_vec())
    }

    /// Every entry of one of the stream's header maps (`abi::REQUEST_HEADER`, `REQUEST_TRAILER`)
    /// as Envoy holds it: a repeated name arrives as separate values, never joined, in the
    /// encoding the core decodes.
    pub fn header_map(&self, kind: u32) -> Vec<u8> {
        // SAFETY: live filter pointer; the array has room for `n` entries as Envoy requires.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_headers_size(self.ptr, kind);
            let empty = EnvoyHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut entries = vec![empty; n];
            if n == 0
                || !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.ptr,
                    kind,
                    entries.as_mut_ptr(),
                )
            {
                return header_map::encode::<&[u8], &[u8]>(&[]);
            }
            let pairs: Vec<(&[u8], &[u8])> = entries
                .iter()
                .map(|h| {
                    let k = EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    };
                    let v = EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    };
                    (k.bytes(), v.bytes())
                })
                .collect();
            header_map::encode(&pairs)
        }
    }

    /// Removes `name` from the request trailers (a null value removes).
    pub fn remove_request_trailer(&self, name: &str) {
        // SAFETY: live filter pointer; the name buffer outlives the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                abi::REQUEST_TRAILER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::null(),
            );
        }
    }
}

impl RequestHost for StreamHost {
    /// Every header entry as Envoy holds it: a repeated header arrives as separate values,
    /// never joined, in the encoding the core decodes.
    fn request_headers(&self) -> Vec<u8> {
        self.header_map(abi::REQUEST_HEADER)
    }

    /// The properties the core asks for, mapped to what Envoy offers. `source.address` is the
    /// connection's direct peer, never an address taken from X-Forwarded-For, so the
    /// `downstream` rule holds whatever `use_remote_address` says. `upstream.address` is
    /// absent: this host holds a webhook's headers itself, so none can have gone ahead.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["source", "address"] => self.direct_peer(),
            ["xds", "cluster_name"] => {
                // Reading the route chooses it from the headers as they are now; a later edit
                // must clear it again.
                self.route_cleared.set(false);
                self.attribute(abi::ATTRIBUTE_XDS_CLUSTER_NAME)
            }
            _ => None,
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let value = value.map_or_else(ModuleBuffer::null, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: live filter pointer; both buffers outlive the call. A null value removes.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                value,
            );
            // Unlike a Wasm filter's, a native module's header edits leave the route as it was
            // chosen from the caller's headers. A route that matches an edited header (a key id
            // stamped over a forged one) must be chosen again, or the caller would pick it.
            if !self.route_cleared.replace(true) {
                abi::envoy_dynamic_module_callback_http_clear_route_cache(self.ptr);
            }
        }
    }

    fn send_reply(&self, reply: &Reply) {
        let pairs: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let mut headers = abi::module_headers(&pairs);
        // SAFETY: live filter pointer; headers, body and details outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                reply.status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(reply.body.as_bytes()),
                ModuleBuffer::of(REPLY_DETAILS),
            );
        }
    }

    fn increment(&self, metric: Option<u32>) {
        let Some(id) = metric else { return };
        // SAFETY: live filter pointer; the id came from this filter's config; no labels.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.ptr,
                id as usize,
                std::ptr::null_mut(),
                0,
                1,
            );
        }
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(now_ms()).unwrap_or(i64::MAX)
    }

    /// Every set field in one call, namespace `bcsp_guard`: the access log prints each as
    /// `%DYNAMIC_METADATA(bcsp_guard:<field>)%`.
    fn audit(&self, record: &Audit) {
        let values: [Option<_>; FIELDS.len()] = {
            let mut it = record.fields();
            std::array::from_fn(|_| it.next())
        };
        let mut entries = [abi::ModuleKeyValue {
            key: ModuleBuffer::null(),
            value: ModuleBuffer::null(),
        }; FIELDS.len()];
        let mut n = 0;
        for (entry, (field, value)) in entries.iter_mut().zip(values.iter().flatten()) {
            *entry = abi::ModuleKeyValue {
                key: ModuleBuffer::of(field.name.as_bytes()),
                value: ModuleBuffer::of(value.as_bytes()),
            };
            n += 1;
        }
        if n == 0 {
            return;
        }
        // SAFETY: live filter pointer; `entries` and the strings it points into outlive the
        // call, and Envoy copies them.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
                self.ptr,
                ModuleBuffer::of(AUDIT_NAMESPACE),
                entries.as_ptr(),
                n,
            );
        }
    }

    /// A webhook delivery at its last chunk: what this filter buffered, then that chunk.
    fn request_body(&self, len: usize) -> Option<Vec<u8>> {
        let mut body = Vec::with_capacity(len);
        for kind in [abi::BUFFERED_REQUEST_BODY, abi::RECEIVED_REQUEST_BODY] {
            // SAFETY: live filter pointer inside the request-body hook; the array has room
            // for the count Envoy just reported, and the bytes are copied at once.
            unsafe {
                let n =
                    abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.ptr, kind);
                if n == 0 {
                    continue;
                }
                let mut chunks = vec![EnvoyBuffer::empty(); n];
                if !abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.ptr,
                    kind,
                    chunks.as_mut_ptr(),
                ) {
                    continue;
                }
                for c in &chunks {
                    body.extend_from_slice(c.bytes());
                }
            }
        }
        body.truncate(len);
        Some(body)
    }
}

/// Bytes of the body chunk Envoy just handed to the filter.
pub fn received_body_size(ptr: FilterEnvoyPtr) -> usize {
    // SAFETY: live filter pointer inside the request-body hook.
    unsafe {
        abi::envoy_dynamic_module_callback_http_get_body_size(ptr, abi::RECEIVED_REQUEST_BODY)
    }
}

/// Bytes this filter has buffered so far (a held webhook delivery).
pub fn buffered_body_size(ptr: FilterEnvoyPtr) -> usize {
    // SAFETY: live filter pointer inside the request-body hook.
    unsafe {
        abi::envoy_dynamic_module_callback_http_get_body_size(ptr, abi::BUFFERED_REQUEST_BODY)
    }
}
