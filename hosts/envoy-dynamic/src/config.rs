//! One filter configuration: the compiled policy, its metric ids, and — for `upstream_token` or
//! the key-expiry gauge — a timer that wakes the main thread, which refreshes the process-wide
//! token cache with config-level HTTP callouts.

use crate::abi::{self, ConfigEnvoyPtr, EnvoyBuffer, ModuleBuffer, SchedulerPtr};
use crate::host::now_ms;
use crate::tokens::{self, Fetched};
use bcsp_guard::config::{self, ConfigError};
use bcsp_guard::pipeline::metrics::{Kind, Stats};
use bcsp_guard::pipeline::Guard;
use bcsp_guard::policy::rotation;
use bcsp_guard::policy::time::format_rfc3339;
use bcsp_guard::policy::webhook::SecretSource;
use bcsp_guard::token::schedule;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Timer period: how late a due refresh starts (the Wasm build ticks at the same rate).
const TICK: Duration = Duration::from_millis(100);
/// How often the key-expiry gauge is recomputed.
const DAYS_LEFT_EVERY_MS: u64 = 60_000;
/// Metadata tokens are ~1 KiB; anything much larger is not a token.
const MAX_TOKEN_BODY: usize = 16 * 1024;

/// Distinct lease holders for configs that share the process-wide cache.
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1);

/// Envoy's scheduler handle, shared with the timer thread; `None` once the config is gone.
struct Timer {
    scheduler: Mutex<Option<SchedulerHandle>>,
    /// Wakes the thread at once when the config goes, so it can be joined without a wait.
    stop: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct SchedulerHandle(SchedulerPtr);
// SAFETY: Envoy documents the config scheduler's commit as callable from any thread; the
// handle is deleted only under the same mutex that guards every commit.
unsafe impl Send for SchedulerHandle {}

// Every worker reads one config through a raw pointer: what they touch must be thread-safe.
const _: fn() = || {
    fn shared_by_workers<T: Send + Sync>() {}
    shared_by_workers::<Guard>();
    shared_by_workers::<Mutex<MainState>>();
};

/// A webhook secret subscribed over SDS: the webhook it keys and Envoy's id for it.
struct LiveSecret {
    index: usize,
    name: String,
    id: u64,
}

pub struct FilterConfig {
    pub envoy: ConfigEnvoyPtr,
    live: Vec<LiveSecret>,
    pub guard: Guard,
    holder: u64,
    timer: Option<Arc<Timer>>,
    /// Main thread only: callouts in flight (callout id, audience) and gauge bookkeeping.
    main: Mutex<MainState>,
}

#[derive(Default)]
struct MainState {
    /// A fingerprint of each live secret's value last swapped in (not the value).
    live_seen: Vec<Option<u64>>,
    inflight: Vec<(u64, String)>,
    days_left_at_ms: u64,
    last_seconds_left: Option<u64>,
}

impl FilterConfig {
    /// Compiles the JSON and defines every metric (Envoy allows that only now). Logs and
    /// returns `None` on a bad configuration, so Envoy refuses it.
    pub fn new(envoy: ConfigEnvoyPtr, json: &[u8]) -> Option<Box<FilterConfig>> {
        // Subscriptions made while compiling: (name, over SDS, Envoy's id).
        let subscribed = std::cell::RefCell::new(Vec::new());
        let generic = |name: &str, sds: Option<&str>| {
            let (id, value) = generic_secret(envoy, name, sds)?;
            subscribed
                .borrow_mut()
                .push((name.to_owned(), sds.is_some(), id));
            Ok(value)
        };
        let lookups = config::SecretLookups {
            env: &|name| std::env::var(name).ok(),
            generic: Some(&generic),
        };
        let policy = match config::compile_with_secrets(json, lookups) {
            Ok(p) => p,
            Err(e) => return refuse(&e),
        };
        // Secrets Envoy delivers over SDS: read again on every tick, swapped in when they change.
        let live: Vec<LiveSecret> = policy
            .webhooks
            .iter()
            .enumerate()
            .filter_map(|(index, w)| match &w.source {
                SecretSource::GenericSds(name) => subscribed
                    .borrow()
                    .iter()
                    .find(|(n, sds, _)| n == name && *sds)
                    .map(|(_, _, id)| LiveSecret {
                        index,
                        name: name.clone(),
                        id: *id,
                    }),
                _ => None,
            })
            .collect();
        log::info!("{}", policy.summary());
        if policy.needs_downstream() {
            // The summary is the Wasm build's; here the rule reads something else.
            log::info!(
                "bcsp-guard: client ip `downstream` is the connection's direct TCP peer in the \
                 dynamic module, whatever use_remote_address says"
            );
        }
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        for warning in policy
            .warnings
            .iter()
            .chain(&rotation::expiry_warnings(&policy.keys, now))
        {
            log::warn!("{warning}");
        }
        let stats = Stats::define(&policy, |kind, name| define_metric(envoy, kind, name));
        // Held webhook deliveries need their deadline, whatever else the timer does.
        let needs_timer = policy.upstream_token.is_some()
            || stats.key_days_left_min.is_some()
            || !policy.webhooks.is_empty();
        let mut cfg = Box::new(FilterConfig {
            envoy,
            live,
            guard: Guard { policy, stats },
            holder: NEXT_HOLDER.fetch_add(1, Ordering::Relaxed),
            timer: None,
            main: Mutex::new(MainState::default()),
        });
        cfg.record_days_left();
        if needs_timer {
            cfg.timer = start_timer(envoy);
            if cfg.timer.is_none()
                && (cfg.guard.policy.upstream_token.is_some()
                    || !cfg.guard.policy.webhooks.is_empty())
            {
                log::error!(
                    "bcsp-guard: upstream_token and webhooks need a timer, which Envoy refused"
                );
                return None;
            }
        }
        Some(cfg)
    }

    fn counter(&self, id: Option<u32>) {
        let Some(id) = id else { return };
        // SAFETY: main thread, config pointer alive while this config is.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.envoy,
                id as usize,
                std::ptr::null_mut(),
                0,
                1,
            );
        }
    }

    fn gauge(&self, id: Option<u32>, value: u64) {
        let Some(id) = id else { return };
        // SAFETY: as for `counter`.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.envoy,
                id as usize,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }

    fn main_state(&self) -> std::sync::MutexGuard<'_, MainState> {
        self.main.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_days_left(&self) {
        let now = now_ms();
        self.main_state().days_left_at_ms = now;
        let days = rotation::days_left_min(
            &self.guard.policy.keys,
            i64::try_from(now).unwrap_or(i64::MAX),
        );
        if let Some(days) = days {
            self.gauge(self.guard.stats.key_days_left_min, days);
        }
    }

    /// Main thread, every tick: start the fetches that are due, update gauges.
    pub fn on_tick(&self) {
        let now = now_ms();
        if now.saturating_sub(self.main_state().days_left_at_ms) >= DAYS_LEFT_EVERY_MS {
            self.record_days_left();
        }
        crate::holds::expire_due(now);
        self.refresh_live_secrets();
        let Some(upstream) = &self.guard.policy.upstream_token else {
            return;
        };
        for audience in upstream.audiences() {
            if !tokens::begin_fetch(upstream, audience, self.holder, now) {
                continue;
            }
            match self.dispatch(audience) {
                Ok(id) => self.main_state().inflight.push((id, audience.to_owned())),
                Err(why) => {
                    let reason = format!(
                        "could not dispatch to cluster `{}`: {why}",
                        upstream.cluster
                    );
                    self.report(
                        audience,
                        tokens::finish_fetch(upstream, audience, self.holder, now, Err(reason)),
                    );
                }
            }
        }
        crate::waiters::wake_due(upstream, now);
        let left = tokens::seconds_left(upstream, now);
        let mut main = self.main_state();
        if main.last_seconds_left != Some(left) {
            main.last_seconds_left = Some(left);
            drop(main);
            self.gauge(self.guard.stats.token_seconds_left, left);
        }
    }

    /// Main thread: swaps in SDS-delivered webhook secrets that changed since the last tick.
    fn refresh_live_secrets(&self) {
        for (i, live) in self.live.iter().enumerate() {
            let Some(webhook) = self.guard.policy.webhooks.get(live.index) else {
                continue;
            };
            let Some(value) = read_generic_secret(self.envoy, live.id) else {
                continue;
            };
            let seen = fingerprint(&value);
            {
                let mut main = self.main_state();
                if main.live_seen.len() <= i {
                    main.live_seen.resize(i + 1, None);
                }
                if main.live_seen.get(i).copied().flatten() == Some(seen) {
                    continue;
                }
                if let Some(slot) = main.live_seen.get_mut(i) {
                    *slot = Some(seen);
                }
            }
            let prefix = &webhook.path_prefix;
            if value.len() < MIN_LIVE_SECRET_BYTES {
                log::error!(
                    "bcsp-guard: webhook secret for {prefix} (Envoy generic secret {}, over SDS) is \
                     shorter than {MIN_LIVE_SECRET_BYTES} bytes; the previous one stays in use",
                    live.name
                );
            } else if webhook.secret.replace(&value) {
                log::info!(
                    "bcsp-guard: webhook secret for {prefix} (Envoy generic secret {}, over SDS) \
                     is now in use",
                    live.name
                );
            }
        }
    }

    fn dispatch(&self, audience: &str) -> Result<u64, String> {
        let Some(upstream) = &self.guard.policy.upstream_token else {
            return Err("no upstream_token".into());
        };
        let path = upstream.request_path(audience);
        // `host` is what Envoy requires; the metadata server wants `Metadata-Flavor` and
        // refuses any X-Forwarded-For (an async client request carries none).
        let pairs = [
            (":method", "GET"),
            (":path", path.as_str()),
            ("host", upstream.authority.as_str()),
            (":scheme", "http"),
            ("metadata-flavor", "Google"),
        ];
        let mut headers = abi::module_headers(&pairs);
        let mut id = 0u64;
        // SAFETY: main thread; every buffer outlives the call; `id` is a valid out-pointer.
        let rc = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.envoy,
                &mut id,
                ModuleBuffer::of(upstream.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::null(),
                upstream.timing.fetch_timeout_ms,
            )
        };
        match rc {
            abi::CALLOUT_INIT_SUCCESS => Ok(id),
            1 => Err("missing required headers".into()),
            2 => Err("cluster not found".into()),
            3 => Err("duplicate callout id".into()),
            _ => Err("cannot create request (no healthy host?)".into()),
        }
    }

    /// Main thread: a metadata callout finished (`status` None: reset or overflow).
    pub fn on_callout_done(&self, id: u64, status: Option<u32>, body: Vec<u8>) {
        let Some(upstream) = &self.guard.policy.upstream_token else {
            return;
        };
        let audience = {
            let mut main = self.main_state();
            let Some(pos) = main.inflight.iter().position(|(c, _)| *c == id) else {
                return;
            };
            main.inflight.swap_remove(pos).1
        };
        let result = match status {
            None => Err("no response (timeout or connection failure)".to_owned()),
            Some(200) if body.len() <= MAX_TOKEN_BODY => Ok(body),
            Some(200) => Err("unusable token: response too large".to_owned()),
            Some(code) => Err(format!("metadata server answered {code}")),
        };
        let done = tokens::finish_fetch(upstream, &audience, self.holder, now_ms(), result);
        self.report(&audience, done);
        crate::waiters::wake_due(upstream, now_ms());
        let left = tokens::seconds_left(upstream, now_ms());
        self.main_state().last_seconds_left = Some(left);
        self.gauge(self.guard.stats.token_seconds_left, left);
    }

    fn report(&self, audience: &str, done: Fetched) {
        let stats = &self.guard.stats;
        match done {
            Fetched::Stored {
                exp_s,
                refresh_at_ms,
            } => {
                self.counter(stats.token_fetch_ok);
                let Some(upstream) = &self.guard.policy.upstream_token else {
                    return;
                };
                // The Wasm build's line, word for word: when the token stops being sent, and
                // when the next fetch really starts (whichever of refresh and that comes first).
                let t = &upstream.timing;
                let at = |ms: u64| format_rfc3339(i64::try_from(ms).unwrap_or(i64::MAX));
                log::info!(
                    "bcsp-guard: identity token refreshed for audience {audience}: expires {}, sent until {}, next fetch {}",
                    format_rfc3339(exp_s.saturating_mul(1000)),
                    at(schedule::usable_until_ms(exp_s, t)),
                    at(schedule::next_fetch_ms(refresh_at_ms, exp_s, t)),
                );
            }
            Fetched::Failed {
                reason,
                retry_in_ms,
            } => {
                self.counter(stats.token_fetch_failed);
                log::warn!(
                    "bcsp-guard: identity token fetch for audience {audience} failed: {reason}; next attempt in {retry_in_ms} ms"
                );
            }
        }
    }
}

impl Drop for FilterConfig {
    /// Stops the timer thread and waits for it: Envoy may unload the module once its last
    /// config is gone, and no thread may still be running module code then.
    fn drop(&mut self) {
        log::info!("bcsp-guard: configuration released");
        let Some(timer) = &self.timer else { return };
        {
            let mut slot = timer.scheduler.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(handle) = slot.take() {
                // SAFETY: created by scheduler_new for this config; no commit can follow, as
                // every commit happens under this lock with the handle present.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(handle.0)
                }
            }
        }
        timer.stop.notify_all();
        let thread = timer
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// As the core requires of any webhook secret.
const MIN_LIVE_SECRET_BYTES: usize = 16;

/// Subscribes to one of Envoy's generic secrets: from the bootstrap's `static_resources.secrets`
/// (`sds` None), or over SDS with that ConfigSource (JSON). Returns Envoy's id for it and its
/// value if Envoy has one now (an SDS secret usually arrives later; the timer swaps it in).
fn generic_secret(
    envoy: ConfigEnvoyPtr,
    name: &str,
    sds: Option<&str>,
) -> Result<(u64, Option<String>), String> {
    let source = sds.map_or_else(ModuleBuffer::null, |s| ModuleBuffer::of(s.as_bytes()));
    // SAFETY: called while Envoy creates this config (the only time it allows subscribing);
    // both buffers outlive the call.
    let id = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_generic_secret_subscribe(
            envoy,
            ModuleBuffer::of(name.as_bytes()),
            source,
        )
    };
    if id == 0 {
        return Err(match sds {
            None => format!(
                "Envoy has no generic secret `{name}` (declare it under static_resources.secrets)"
            ),
            Some(_) => format!(
                "Envoy refused to subscribe to generic secret `{name}` (its log line above says why)"
            ),
        });
    }
    let value = read_generic_secret(envoy, id)
        .map(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| format!("Envoy's generic secret `{name}` is not UTF-8 text"))
        })
        .transpose()?;
    Ok((id, value))
}

/// The current value of a subscribed generic secret (None: none yet, or empty).
fn read_generic_secret(envoy: ConfigEnvoyPtr, id: u64) -> Option<Vec<u8>> {
    let mut out = EnvoyBuffer::empty();
    // SAFETY: main thread, an id Envoy returned for this config, a valid out-pointer; the
    // bytes are copied before returning.
    let ok = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_get_generic_secret(
            envoy, id, &mut out,
        )
    };
    // SAFETY: Envoy filled `out` with a buffer valid during this call.
    let bytes = unsafe { out.bytes() };
    (ok && !bytes.is_empty()).then(|| bytes.to_vec())
}

/// Tells one value from the next without keeping it.
fn fingerprint(value: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn refuse(e: &ConfigError) -> Option<Box<FilterConfig>> {
    log::error!("bcsp-guard: invalid configuration: {e}");
    None
}

fn define_metric(envoy: ConfigEnvoyPtr, kind: Kind, name: &str) -> Option<u32> {
    let mut id = 0usize;
    let name = ModuleBuffer::of(name.as_bytes());
    // SAFETY: called from config creation on the main thread (the only time Envoy allows
    // definitions); no labels; `id` is a valid out-pointer.
    let rc = unsafe {
        match kind {
            Kind::Counter => abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                envoy,
                name,
                std::ptr::null_mut(),
                0,
                &mut id,
            ),
            Kind::Gauge => abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                envoy,
                name,
                std::ptr::null_mut(),
                0,
                &mut id,
            ),
        }
    };
    if rc == abi::METRICS_SUCCESS {
        u32::try_from(id).ok()
    } else {
        None
    }
}

/// A thread that asks Envoy to run `on_tick` on the main thread every [`TICK`]. It ends on
/// its own once the config dropped the scheduler.
fn start_timer(envoy: ConfigEnvoyPtr) -> Option<Arc<Timer>> {
    // SAFETY: main thread, during config creation.
    let scheduler =
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy) };
    if scheduler.is_null() {
        return None;
    }
    let timer = Arc::new(Timer {
        scheduler: Mutex::new(Some(SchedulerHandle(scheduler))),
        stop: Condvar::new(),
        thread: Mutex::new(None),
    });
    let shared = Arc::clone(&timer);
    let spawned = std::thread::Builder::new()
        .name("bcsp-guard-timer".into())
        .spawn(move || {
            let mut slot = shared.scheduler.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match slot.as_ref() {
                    // SAFETY: the handle is alive while present under the lock.
                    Some(handle) => unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            handle.0, 0,
                        )
                    },
                    None => return,
                }
                slot = match shared.stop.wait_timeout(slot, TICK) {
                    Ok((guard, _)) => guard,
                    Err(p) => p.into_inner().0,
                };
            }
        });
    match spawned {
        Ok(handle) => {
            *timer.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
            Some(timer)
        }
        Err(_) => {
            let mut slot = timer.scheduler.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(handle) = slot.take() {
                // SAFETY: created above; no thread ever saw it.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(handle.0)
                }
            }
            None
        }
    }
}
