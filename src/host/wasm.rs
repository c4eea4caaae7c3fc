//! The proxy-wasm contexts. The root context compiles the config once per worker VM and
//! hands an `Rc` of it to every HTTP context; its timer drives the token cache and the
//! deadlines of held webhook deliveries. Only raw `hostcalls` are used: the SDK's trait
//! helpers unwrap host errors.

use super::abi;
use super::lockout::LockoutBook;
use super::tokens::{
    claim_holder_id_in, FetchOutcome, FetchReply, Release, SharedHost, TokenWorker,
};
use crate::config;
use crate::pipeline::audit::Audit;
use crate::pipeline::header_map;
use crate::pipeline::held::{self, Held};
use crate::pipeline::metrics::{Kind, Stats};
use crate::pipeline::reply::Reply;
use crate::pipeline::{
    self, BodyState, Guard, LockoutPort, Outcome, Ports, RequestHost, TokenPort,
};
use crate::policy::lockout::Failure;
use crate::policy::rotation;
use crate::policy::time::format_rfc3339;
use crate::token::plan::Missing;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// Timer period: bounds how late a worker notices a token another worker fetched, how late a
/// waiting request is released, and how late a held webhook delivery is refused.
const TICK_MS: u32 = 100;
/// Metadata tokens are ~1 KiB; anything much larger is not a token.
const MAX_TOKEN_BODY: usize = 16 * 1024;
/// Timer period when only the key-expiry gauge needs a timer.
const GAUGE_TICK_MS: u32 = 60_000;
/// How often the key-expiry gauge is recomputed.
const DAYS_LEFT_EVERY_MS: u64 = 60_000;

pub fn install() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}

/// Host calls for whichever context is current.
struct Host;

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RequestHost for Host {
    fn request_headers(&self) -> Vec<u8> {
        abi::get_header_map(abi::REQUEST_HEADERS)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::get_property(path)
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }
    fn send_reply(&self, reply: &Reply) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let _ = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
    }
    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            abi::increment_metric(id);
        }
    }
    fn now_ms(&self) -> i64 {
        i64::try_from(now_ms()).unwrap_or(i64::MAX)
    }
    fn request_body(&self, len: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, len)
            .ok()
            .flatten()
    }
    /// One property per set field: the access log prints each as
    /// `%FILTER_STATE(wasm.bcsp_guard.<field>:PLAIN)%`. A host that refuses one (GCP Service
    /// Extensions has no access log of ours to feed) is not asked again.
    fn audit(&self, record: &Audit) {
        if PROPERTIES_REFUSED.load(Ordering::Relaxed) {
            return;
        }
        for (field, value) in record.fields() {
            if !abi::set_property(field.property, value.as_bytes()) {
                PROPERTIES_REFUSED.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Set once the host refused to store a property.
static PROPERTIES_REFUSED: AtomicBool = AtomicBool::new(false);

impl SharedHost for Host {
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        abi::get_shared_data(key)
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        abi::set_shared_data(key, value, cas)
    }
    fn dispatch_fetch(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout_ms: u64,
    ) -> Option<u32> {
        let headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            (":scheme", "http"),
            ("metadata-flavor", "Google"),
        ];
        hostcalls::dispatch_http_call(
            cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .ok()
    }
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

#[derive(Default)]
struct Root {
    guard: Option<Rc<Guard>>,
    tokens: Option<Rc<RefCell<TokenWorker>>>,
    lockout: Option<Rc<LockoutBook>>,
    /// Webhook deliveries held until their body is verified (only with webhooks).
    held: Option<Rc<RefCell<Held>>>,
    last_seconds_left: Option<u64>,
    /// When the key-expiry gauge was last recomputed.
    days_left_at_ms: u64,
}

impl Root {
    fn stats(&self) -> Option<&Stats> {
        self.guard.as_deref().map(|g| &g.stats)
    }

    /// Days left on the soonest-expiring key, for alerts before Genesys is locked out.
    fn record_days_left(&mut self) {
        let now = now_ms();
        self.days_left_at_ms = now;
        let Some(guard) = &self.guard else { return };
        let (Some(id), Some(days)) = (
            guard.stats.key_days_left_min,
            rotation::days_left_min(&guard.policy.keys, i64::try_from(now).unwrap_or(i64::MAX)),
        ) else {
            return;
        };
        abi::record_metric(id, days);
    }

    /// Resumes or refuses waiting requests. The worker is released before any host call,
    /// because resuming a request can re-enter this filter.
    fn release_waiters(&self) {
        let Some(worker) = &self.tokens else { return };
        let releases = match worker.try_borrow_mut() {
            Ok(mut w) => w.release_waiters(&Host),
            Err(_) => return,
        };
        let Some(guard) = &self.guard else { return };
        let Some(upstream) = &guard.policy.upstream_token else {
            return;
        };
        for release in releases {
            match release {
                Release::Resume {
                    context_id,
                    header_value,
                } => {
                    if hostcalls::set_effective_context(context_id).is_ok() {
                        Host.set_request_header(&upstream.header, Some(&header_value));
                        let _ = hostcalls::resume_http_request();
                    }
                }
                Release::Refuse {
                    context_id,
                    retry_after_s,
                } => {
                    if hostcalls::set_effective_context(context_id).is_ok() {
                        let raw = Host.request_headers();
                        let headers = header_map::decode(&raw);
                        let view = crate::policy::decide::RequestView {
                            headers: &headers,
                            downstream: None,
                            now_ms: 0,
                        };
                        pipeline::no_token(&Host, guard, &view, retry_after_s);
                    }
                }
            }
        }
    }

    /// Refuses held deliveries whose deadline passed, and at once those whose body the host
    /// took in but never passed on (the pause is not honoured: the flag is missing). Runs last
    /// in a tick: it switches the effective context to each delivery.
    fn check_held(&self) {
        let (Some(book), Some(guard)) = (&self.held, &self.guard) else {
            return;
        };
        let (expired, probes) = match book.try_borrow_mut() {
            Ok(mut b) if !b.is_empty() => (b.take_expired(now_ms()), b.to_probe()),
            _ => return,
        };
        let mut ended = expired;
        for (context_id, _) in probes {
            if hostcalls::set_effective_context(context_id).is_err() {
                continue;
            }
            let size =
                abi::get_property(&["request", "total_size"]).and_then(|b| held::size_property(&b));
            if let Ok(mut b) = book.try_borrow_mut() {
                ended.extend(b.take_if_withheld(context_id, size));
            }
        }
        // The book is let go before replying: a reply can end the stream (`on_done`) at once.
        for e in ended {
            if hostcalls::set_effective_context(e.context_id).is_ok() {
                pipeline::end_hold(&Host, guard, e.request_id.as_deref(), e.why);
            }
        }
    }

    fn report(&self, outcome: FetchOutcome) {
        let stats = self.stats();
        match outcome {
            FetchOutcome::Stored {
                audience,
                exp_s,
                usable_until_ms,
                next_fetch_ms,
            } => {
                Host.increment(stats.and_then(|s| s.token_fetch_ok));
                let at = |ms: u64| format_rfc3339(i64::try_from(ms).unwrap_or(i64::MAX));
                log::info!(
                    "bcsp-guard: identity token refreshed for audience {audience}: expires {}, sent until {}, next fetch {}",
                    format_rfc3339(exp_s.saturating_mul(1000)),
                    at(usable_until_ms),
                    at(next_fetch_ms),
                );
            }
            FetchOutcome::Failed {
                audience,
                reason,
                retry_in_ms,
            } => {
                Host.increment(stats.and_then(|s| s.token_fetch_failed));
                log::warn!(
                    "bcsp-guard: identity token fetch for audience {audience} failed: {reason}; next attempt in {retry_in_ms} ms"
                );
            }
            FetchOutcome::Unknown => {}
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(worker) = self.tokens.clone() else {
            return;
        };
        let raw = abi::get_header_map(abi::CALL_RESPONSE_HEADERS);
        let status = header_map::decode(&raw)
            .into_iter()
            .find(|(name, _)| *name == ":status")
            .and_then(|(_, v)| v.parse::<u32>().ok());
        let body = hostcalls::get_buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(MAX_TOKEN_BODY + 1),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let outcome = match worker.try_borrow_mut() {
            Ok(mut w) => w.on_fetch_response(&Host, token_id, FetchReply { status, body }),
            Err(_) => return,
        };
        self.report(outcome);
        self.release_waiters();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let policy = match config::compile(&bytes) {
            Ok(p) => p,
            Err(e) => {
                log::error!("bcsp-guard: invalid configuration: {e}");
                return false;
            }
        };
        // Shared data is common to every plugin of this vm_id: keep ours where only this
        // configuration finds it.
        let root_id = abi::get_property(&["plugin_root_id"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let namespace = crate::token::record::namespace(&root_id, &bytes);
        let summary = policy.summary();
        if super::once::first_to_announce(&Host, &summary) {
            log::info!("{summary}");
            let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
            for warning in policy
                .warnings
                .iter()
                .chain(&rotation::expiry_warnings(&policy.keys, now))
            {
                log::warn!("{warning}");
            }
        }
        let stats = Stats::define(&policy, |kind, name| {
            abi::define_metric(kind == Kind::Gauge, name)
        });
        self.tokens = None;
        self.held = None;
        if !policy.webhooks.is_empty() {
            // Held deliveries need deadlines, whatever else the timer does.
            if !abi::set_tick_period_ms(TICK_MS) {
                log::error!("bcsp-guard: webhooks need timers, which this host does not offer");
                return false;
            }
            self.held = Some(Rc::new(RefCell::new(Held::default())));
        }
        if let Some(upstream) = &policy.upstream_token {
            if !abi::set_tick_period_ms(TICK_MS) {
                log::error!(
                    "bcsp-guard: upstream_token needs timers, which this host does not offer"
                );
                return false;
            }
            let holder = claim_holder_id_in(&Host, &namespace);
            let worker = TokenWorker::in_namespace(upstream, holder, &namespace);
            self.tokens = Some(Rc::new(RefCell::new(worker)));
        } else if stats.key_days_left_min.is_some() && self.held.is_none() {
            // Only the gauge needs a timer; without one it keeps its startup value.
            let _ = abi::set_tick_period_ms(GAUGE_TICK_MS);
        }
        self.lockout = policy
            .lockout
            .map(|rule| Rc::new(LockoutBook::in_namespace(rule, &namespace)));
        self.guard = Some(Rc::new(Guard { policy, stats }));
        self.record_days_left();
        true
    }

    fn on_tick(&mut self) {
        if now_ms().saturating_sub(self.days_left_at_ms) >= DAYS_LEFT_EVERY_MS {
            self.record_days_left();
        }
        self.tick_tokens();
        self.check_held();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never None: the SDK panics on it. Without a policy every request is refused.
        Some(Box::new(Http {
            id: context_id,
            guard: self.guard.clone(),
            tokens: self.tokens.clone(),
            lockout: self.lockout.clone(),
            held: self.held.clone(),
            body: BodyState::Closed,
            body_size: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    fn tick_tokens(&mut self) {
        let Some(worker) = self.tokens.clone() else {
            return;
        };
        let (started, seconds_left) = match worker.try_borrow_mut() {
            Ok(mut w) => (w.tick(&Host), w.seconds_left(now_ms())),
            Err(_) => return,
        };
        for result in started {
            if let Err(reason) = result {
                Host.increment(self.stats().and_then(|s| s.token_fetch_failed));
                log::warn!("bcsp-guard: identity token fetch not started: {reason}");
            }
        }
        self.release_waiters();
        if self.last_seconds_left != Some(seconds_left) {
            if let Some(id) = self.stats().and_then(|s| s.token_seconds_left) {
                abi::record_metric(id, seconds_left);
            }
            self.last_seconds_left = Some(seconds_left);
        }
    }
}

struct Http {
    id: u32,
    guard: Option<Rc<Guard>>,
    tokens: Option<Rc<RefCell<TokenWorker>>>,
    lockout: Option<Rc<LockoutBook>>,
    held: Option<Rc<RefCell<Held>>>,
    /// What the body phase still owes (see `pipeline::BodyState`).
    body: BodyState,
    /// The last body size Envoy reported, for a body that ends with trailers.
    body_size: usize,
}

struct WorkerPort<'a> {
    worker: &'a RefCell<TokenWorker>,
}

impl TokenPort for WorkerPort<'_> {
    fn header_value(&self, audience: &str) -> Option<Rc<str>> {
        self.worker
            .try_borrow_mut()
            .ok()?
            .header_value(&Host, audience)
    }
    fn on_missing(&self, audience: &str) -> Missing {
        match self.worker.try_borrow() {
            Ok(w) => w.on_missing(&Host, audience),
            Err(_) => Missing::Reject { retry_after_s: 1 },
        }
    }
}

struct BookPort<'a>(&'a LockoutBook);

/// Runs `f` with a worker's token cache and lockout book as the request path's ports.
fn with_ports<R>(
    tokens: Option<&RefCell<TokenWorker>>,
    lockout: Option<&LockoutBook>,
    f: impl FnOnce(Ports<'_>) -> R,
) -> R {
    let tokens = tokens.map(|worker| WorkerPort { worker });
    let lockout = lockout.map(BookPort);
    f(Ports {
        tokens: tokens.as_ref().map(|p| p as &dyn TokenPort),
        lockout: lockout.as_ref().map(|p| p as &dyn LockoutPort),
    })
}

impl LockoutPort for BookPort<'_> {
    fn locked(&self, client: IpAddr) -> Option<u64> {
        self.0.locked(&Host, client)
    }
    fn failed(&self, client: IpAddr) -> Failure {
        self.0.failed(&Host, client)
    }
}

impl Http {
    fn waiting(&self) -> bool {
        matches!(
            self.tokens
                .as_ref()
                .map(|t| t.try_borrow().map(|w| w.is_waiting(self.id))),
            Some(Ok(true))
        )
    }

    fn unhold(&self) {
        if let Some(Ok(mut b)) = self.held.as_ref().map(|h| h.try_borrow_mut()) {
            b.remove(self.id);
        }
    }

    /// Maps the request path's outcome to an action; a wait registers this request.
    fn act(&self, outcome: Outcome) -> Action {
        match outcome {
            Outcome::Forward => Action::Continue,
            Outcome::ReadBody => Action::Pause,
            Outcome::Replied => {
                // A refusal in the body phase may end a wait for a token.
                if let Some(Ok(mut w)) = self.tokens.as_ref().map(|t| t.try_borrow_mut()) {
                    w.remove_waiter(self.id);
                }
                Action::Pause
            }
            Outcome::Wait {
                audience,
                deadline_ms,
            } => {
                if let Some(Ok(mut w)) = self.tokens.as_ref().map(|t| t.try_borrow_mut()) {
                    w.add_waiter(self.id, &audience, deadline_ms);
                }
                Action::Pause
            }
        }
    }

    /// The body phase; `end_of_stream` also when trailers close the body.
    fn body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(guard) = self.guard.clone() else {
            return Action::Pause;
        };
        self.body_size = body_size;
        let webhook = matches!(self.body, BodyState::Webhook(_));
        if webhook {
            if let Some(Ok(mut b)) = self.held.as_ref().map(|h| h.try_borrow_mut()) {
                b.saw_body(self.id);
            }
        } else if !self.waiting() {
            self.body.released();
        }
        let outcome = with_ports(self.tokens.as_deref(), self.lockout.as_deref(), |ports| {
            pipeline::on_request_body(
                &Host,
                &guard,
                ports,
                &mut self.body,
                body_size,
                end_of_stream,
            )
        });
        if webhook && outcome != Outcome::ReadBody {
            self.unhold();
        }
        self.act(outcome)
    }
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        if let Some(Ok(mut w)) = self.tokens.as_ref().map(|t| t.try_borrow_mut()) {
            w.remove_waiter(self.id);
        }
        self.unhold();
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(guard) = self.guard.clone() else {
            Host.send_reply(&Reply::no_token(5, None));
            return Action::Pause;
        };
        let step = with_ports(self.tokens.as_deref(), self.lockout.as_deref(), |ports| {
            pipeline::on_request_headers(&Host, &guard, ports, end_of_stream)
        });
        self.body = step.body;
        if let (Outcome::ReadBody, BodyState::Webhook(p)) = (&step.outcome, &self.body) {
            // The size now, to tell later whether the host took in body bytes it never
            // passed on to this filter.
            let size =
                abi::get_property(&["request", "total_size"]).and_then(|b| held::size_property(&b));
            if let Some(Ok(mut b)) = self.held.as_ref().map(|h| h.try_borrow_mut()) {
                b.add(self.id, now_ms(), p.request_id.clone(), size);
            }
        }
        self.act(step.outcome)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        clean_trailers(self.guard.as_deref());
        match self.body {
            BodyState::Webhook { .. } => self.body(self.body_size, true),
            BodyState::Counting { .. } if !self.waiting() => Action::Continue,
            _ => Action::Pause,
        }
    }
}

/// Removes the names the filter controls from the request trailers (see
/// `pipeline::trailers_to_remove`).
fn clean_trailers(guard: Option<&Guard>) {
    let Some(guard) = guard else { return };
    let raw = abi::get_header_map(abi::REQUEST_TRAILERS);
    let trailers = header_map::decode(&raw);
    for name in pipeline::trailers_to_remove(guard, &trailers) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestTrailers, name, None);
    }
}
