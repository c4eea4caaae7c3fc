//! bcsp-guard as an Envoy dynamic module: the same policy core as the proxy-wasm build, loaded
//! natively through `envoy.filters.http.dynamic_modules` (Envoy 1.40). This file holds the
//! event hooks Envoy looks up by name; each one runs its body behind [`shielded`], so no
//! panic can unwind into Envoy (the release profile aborts on panic anyway).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing
    )
)]
// The hooks are called by Envoy with the pointers it documents; they cannot be safe fns.
#![allow(clippy::missing_safety_doc, clippy::not_unsafe_ptr_arg_deref)]

mod abi;
mod config;
mod holds;
mod host;
mod lockout;
mod logger;
mod tokens;
mod waiters;

use abi::{EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr};
use bcsp_guard::pipeline::held::{self, HoldEnd};
use bcsp_guard::pipeline::reply::Reply;
use bcsp_guard::pipeline::{self, BodyState, LockoutPort, Outcome, Ports, RequestHost, TokenPort};
use config::FilterConfig;
use host::{now_ms, StreamHost};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What Envoy 1.40 expects (`Dynamic module ABI version v0.2.0 matched.`).
const ABI_VERSION: &[u8] = b"v0.2.0\0";
/// The `filter_name` this module answers to.
const FILTER_NAME: &[u8] = b"bcsp_guard";

/// Runs a hook body; a panic (only possible in unwinding test builds) becomes `fallback`.
fn shielded<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Per-stream state: the config it belongs to and what the body phase still owes.
struct Filter {
    config: *const FilterConfig,
    body: BodyState,
    /// Set while the request is paused for a token: its audience.
    waiting: Option<String>,
    /// This stream's scheduler, once it had to wait; deleted with the stream.
    scheduler: Option<abi::SchedulerPtr>,
}

impl Filter {
    /// Stops any wait: no wake-up can reach this stream afterwards.
    fn stop_waiting(&mut self) {
        self.waiting = None;
        if let Some(s) = self.scheduler {
            waiters::remove(s);
        }
    }

    /// This stream's scheduler, made on first use (None if Envoy refused one).
    fn ensure_scheduler(&mut self, host: &StreamHost) -> Option<abi::SchedulerPtr> {
        if self.scheduler.is_none() {
            // SAFETY: live filter pointer inside one of its hooks.
            let s =
                unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(host.ptr) };
            if !s.is_null() {
                self.scheduler = Some(s);
            }
        }
        self.scheduler
    }

    /// A webhook delivery's headers are held from now on, until its body is judged or the
    /// core's deadline passes.
    fn hold(&mut self, host: &StreamHost) {
        if let Some(s) = self.ensure_scheduler(host) {
            holds::add(s, now_ms().saturating_add(held::BODY_DEADLINE_MS));
        }
    }

    /// The delivery was judged (or the stream ended): its deadline no longer applies.
    fn release_hold(&mut self) {
        if let Some(s) = self.scheduler {
            holds::remove(s);
        }
    }

    /// Pauses the request until the main thread wakes it (token or deadline).
    fn wait(
        &mut self,
        host: &StreamHost,
        cfg: &FilterConfig,
        audience: String,
        deadline_ms: u64,
    ) -> u32 {
        let Some(upstream) = &cfg.guard.policy.upstream_token else {
            host.send_reply(&Reply::no_token(1, None));
            return abi::REQUEST_HEADERS_STOP_ITERATION;
        };
        let Some(scheduler) = self.ensure_scheduler(host) else {
            host.send_reply(&Reply::no_token(1, None));
            return abi::REQUEST_HEADERS_STOP_ITERATION;
        };
        waiters::add(scheduler, upstream, &audience, deadline_ms);
        self.waiting = Some(audience);
        abi::REQUEST_HEADERS_STOP_ITERATION
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    shielded(std::ptr::null(), || {
        logger::install();
        ABI_VERSION.as_ptr()
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    shielded(std::ptr::null(), || {
        logger::install();
        let name = name.bytes();
        if name != FILTER_NAME {
            log::error!(
                "bcsp-guard: invalid configuration: filter_name: must be `bcsp_guard`, got `{}`",
                String::from_utf8_lossy(name)
            );
            return std::ptr::null();
        }
        match FilterConfig::new(config_envoy_ptr, config.bytes()) {
            Some(cfg) => Box::into_raw(cfg) as *const c_void,
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(ptr: *const c_void) {
    shielded((), || {
        if !ptr.is_null() {
            drop(Box::from_raw(ptr as *mut FilterConfig));
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy_ptr: *mut c_void,
    config_ptr: *const c_void,
    _event_id: u64,
) {
    shielded((), || {
        if let Some(cfg) = (config_ptr as *const FilterConfig).as_ref() {
            cfg.on_tick();
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy_ptr: *mut c_void,
    config_ptr: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    shielded((), || {
        let Some(cfg) = (config_ptr as *const FilterConfig).as_ref() else {
            return;
        };
        let headers: &[EnvoyHeader] = if headers.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(headers, headers_size)
        };
        let status = headers
            .iter()
            .find(|h| {
                let k = EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                };
                k.bytes() == b":status"
            })
            .and_then(|h| {
                let v = EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                };
                std::str::from_utf8(v.bytes()).ok()?.parse::<u32>().ok()
            })
            .filter(|_| result == abi::CALLOUT_SUCCESS);
        let chunks: &[EnvoyBuffer] = if body_chunks.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(body_chunks, body_chunks_size)
        };
        let mut body = Vec::new();
        for c in chunks {
            body.extend_from_slice(c.bytes());
        }
        cfg.on_callout_done(callout_id, status, body);
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_ptr: *const c_void,
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> *const c_void {
    shielded(std::ptr::null(), || {
        if config_ptr.is_null() {
            return std::ptr::null();
        }
        let filter = Box::new(Filter {
            config: config_ptr as *const FilterConfig,
            body: BodyState::Closed,
            waiting: None,
            scheduler: None,
        });
        Box::into_raw(filter) as *const c_void
    })
}

/// The request path's ports for this process: the shared token cache and lockout book.
fn with_ports<R>(cfg: &FilterConfig, f: impl FnOnce(Ports<'_>) -> R) -> R {
    let now = now_ms();
    let policy = &cfg.guard.policy;
    let tokens = policy
        .upstream_token
        .as_ref()
        .map(|u| tokens::ProcessTokens {
            cfg: u,
            now_ms: now,
        });
    let lockout = policy.lockout.map(|rule| lockout::ProcessLockout {
        rule,
        now_s: u32::try_from(now / 1000).unwrap_or(u32::MAX),
    });
    f(Ports {
        tokens: tokens.as_ref().map(|t| t as &dyn TokenPort),
        lockout: lockout.as_ref().map(|l| l as &dyn LockoutPort),
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    shielded(abi::REQUEST_HEADERS_STOP_ITERATION, || {
        let host = StreamHost::new(filter_envoy_ptr);
        let Some(filter) = (filter_ptr as *mut Filter).as_mut() else {
            return abi::REQUEST_HEADERS_STOP_ITERATION;
        };
        let Some(cfg) = filter.config.as_ref() else {
            return abi::REQUEST_HEADERS_STOP_ITERATION;
        };
        let step = with_ports(cfg, |ports| {
            pipeline::on_request_headers(&host, &cfg.guard, ports, end_of_stream)
        });
        filter.body = step.body;
        match step.outcome {
            Outcome::Forward => abi::REQUEST_HEADERS_CONTINUE,
            Outcome::Replied => abi::REQUEST_HEADERS_STOP_ITERATION,
            Outcome::Wait {
                audience,
                deadline_ms,
            } => filter.wait(&host, cfg, audience, deadline_ms),
            // A webhook delivery: its headers wait here, natively, until the body is verified
            // (or its deadline passes).
            Outcome::ReadBody => {
                filter.hold(&host);
                abi::REQUEST_HEADERS_STOP_ITERATION
            }
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    shielded(abi::REQUEST_BODY_STOP_NO_BUFFER, || {
        let host = StreamHost::new(filter_envoy_ptr);
        let Some(filter) = (filter_ptr as *mut Filter).as_mut() else {
            return abi::REQUEST_BODY_STOP_NO_BUFFER;
        };
        let Some(cfg) = filter.config.as_ref() else {
            return abi::REQUEST_BODY_STOP_NO_BUFFER;
        };
        // The core counts chunks of a streamed body, but judges a webhook body whole.
        // A body held here (a webhook, or a request waiting for its token) is judged by all
        // that has arrived; a streaming one by each chunk, which the core adds up.
        let size = match filter.body {
            BodyState::Webhook(_) | BodyState::Counting { held: true, .. } => {
                host::buffered_body_size(filter_envoy_ptr)
                    .saturating_add(host::received_body_size(filter_envoy_ptr))
            }
            _ => host::received_body_size(filter_envoy_ptr),
        };
        let outcome = with_ports(cfg, |ports| {
            pipeline::on_request_body(
                &host,
                &cfg.guard,
                ports,
                &mut filter.body,
                size,
                end_of_stream,
            )
        });
        if !matches!(filter.body, BodyState::Webhook(_)) {
            filter.release_hold();
        }
        match outcome {
            // Continuing data would also release headers still waiting for a token.
            Outcome::Forward if filter.waiting.is_some() => abi::REQUEST_BODY_STOP_AND_BUFFER,
            Outcome::Forward => abi::REQUEST_BODY_CONTINUE,
            Outcome::ReadBody => abi::REQUEST_BODY_STOP_AND_BUFFER,
            // A verified webhook delivery before the first token: held on, until it comes.
            Outcome::Wait {
                audience,
                deadline_ms,
            } => {
                filter.wait(&host, cfg, audience, deadline_ms);
                abi::REQUEST_BODY_STOP_AND_BUFFER
            }
            _ => {
                filter.stop_waiting();
                abi::REQUEST_BODY_STOP_NO_BUFFER
            }
        }
    })
}

/// Trailers end the body: a webhook delivery is verified now (its last data chunk did not
/// carry end-of-stream), and nothing is released while a token is awaited.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_ptr: *const c_void,
) -> u32 {
    shielded(abi::REQUEST_TRAILERS_STOP_ITERATION, || {
        let Some(filter) = (filter_ptr as *mut Filter).as_mut() else {
            return abi::REQUEST_TRAILERS_STOP_ITERATION;
        };
        if let Some(cfg) = filter.config.as_ref() {
            // A caller's identity must not ride in after the body either.
            let host = StreamHost::new(filter_envoy_ptr);
            let raw = host.header_map(abi::REQUEST_TRAILER);
            let trailers = bcsp_guard::pipeline::header_map::decode(&raw);
            for name in pipeline::trailers_to_remove(&cfg.guard, &trailers) {
                host.remove_request_trailer(name);
            }
        }
        if matches!(filter.body, BodyState::Webhook(_)) {
            let Some(cfg) = filter.config.as_ref() else {
                return abi::REQUEST_TRAILERS_STOP_ITERATION;
            };
            let host = StreamHost::new(filter_envoy_ptr);
            let size = host::buffered_body_size(filter_envoy_ptr);
            let outcome = with_ports(cfg, |ports| {
                pipeline::on_request_body(&host, &cfg.guard, ports, &mut filter.body, size, true)
            });
            filter.release_hold();
            match outcome {
                Outcome::Forward => {}
                Outcome::Wait {
                    audience,
                    deadline_ms,
                } => {
                    filter.wait(&host, cfg, audience, deadline_ms);
                    return abi::REQUEST_TRAILERS_STOP_ITERATION;
                }
                _ => {
                    filter.stop_waiting();
                    return abi::REQUEST_TRAILERS_STOP_ITERATION;
                }
            }
        }
        if filter.waiting.is_some() {
            abi::REQUEST_TRAILERS_STOP_ITERATION
        } else {
            abi::CONTINUE
        }
    })
}

/// A paused request's wake-up, on its own worker: inject the token, or 503 if none came.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_ptr: *const c_void,
    event_id: u64,
) {
    shielded((), || {
        let host = StreamHost::new(filter_envoy_ptr);
        let Some(filter) = (filter_ptr as *mut Filter).as_mut() else {
            return;
        };
        if event_id == holds::HOLD_EXPIRED {
            filter.release_hold();
            // Judged in the meantime (the wake-up crossed the last chunk): nothing to do.
            if !matches!(filter.body, BodyState::Webhook(_)) {
                return;
            }
            let Some(cfg) = filter.config.as_ref() else {
                return;
            };
            filter.stop_waiting();
            filter.body = BodyState::Closed;
            let raw = host.request_headers();
            let headers = bcsp_guard::pipeline::header_map::decode(&raw);
            let request_id = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
                .map(|(_, v)| v.to_string());
            // This host always passes the body on, so an unfinished one is a slow sender.
            pipeline::end_hold(
                &host,
                &cfg.guard,
                request_id.as_deref(),
                HoldEnd::Incomplete,
            );
            return;
        }
        let Some(audience) = filter.waiting.clone() else {
            return;
        };
        filter.stop_waiting();
        let Some(cfg) = filter.config.as_ref() else {
            return;
        };
        let Some(upstream) = &cfg.guard.policy.upstream_token else {
            return;
        };
        let now = now_ms();
        let port = tokens::ProcessTokens {
            cfg: upstream,
            now_ms: now,
        };
        match port.header_value(&audience) {
            Some(value) => {
                host.set_request_header(&upstream.header, Some(&value));
                // A webhook body still unverified keeps the request held; its last chunk
                // releases it.
                if !matches!(filter.body, BodyState::Webhook(_)) {
                    abi::envoy_dynamic_module_callback_http_filter_continue_decoding(
                        filter_envoy_ptr,
                    );
                }
            }
            None => {
                let raw = host.request_headers();
                let headers = bcsp_guard::pipeline::header_map::decode(&raw);
                let view = bcsp_guard::policy::decide::RequestView {
                    headers: &headers,
                    downstream: None,
                    now_ms: 0,
                };
                let retry = tokens::retry_after_s(upstream, &audience, now);
                pipeline::no_token(&host, &cfg.guard, &view, retry);
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
) -> u32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_ptr: *const c_void) {
    shielded((), || {
        if filter_ptr.is_null() {
            return;
        }
        let mut filter = Box::from_raw(filter_ptr as *mut Filter);
        filter.stop_waiting();
        filter.release_hold();
        if let Some(s) = filter.scheduler.take() {
            // SAFETY: created for this stream; delisted above, so no commit can follow.
            abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(s);
        }
    })
}

// Hooks Envoy 1.40 requires every HTTP module to export. This module starts no per-stream
// callouts or streams and is never a terminal filter, so they are never called;
// they do nothing if they are.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: FilterEnvoyPtr,
    _filter_ptr: *const c_void,
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_version_is_nul_terminated() {
        assert_eq!(ABI_VERSION.last(), Some(&0));
        assert_eq!(&ABI_VERSION[..ABI_VERSION.len() - 1], b"v0.2.0");
    }

    #[test]
    fn shielded_turns_a_panic_into_the_fallback() {
        assert_eq!(shielded(7u32, || panic!("boom")), 7);
        assert_eq!(shielded(7u32, || 1), 1);
    }
}
