//! Requests paused until the process-wide token cache has a token for them (or their
//! deadline passes). The main thread decides when each is due and wakes it on its own worker
//! through that stream's scheduler; the worker then injects the token or answers 503.

use crate::abi::{self, SchedulerPtr};
use crate::tokens;
use bcsp_guard::policy::upstream::UpstreamToken;
use std::sync::{Mutex, MutexGuard};

struct Waiter {
    /// The stream's scheduler; present here only until it is woken or the stream ends.
    scheduler: usize,
    cluster: String,
    audience: String,
    deadline_ms: u64,
}

/// Guards every commit: a stream deletes its scheduler only after removing itself here, so
/// no commit can reach a deleted scheduler.
static WAITERS: Mutex<Vec<Waiter>> = Mutex::new(Vec::new());

fn waiters() -> MutexGuard<'static, Vec<Waiter>> {
    WAITERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a paused stream (worker thread).
pub fn add(scheduler: SchedulerPtr, cfg: &UpstreamToken, audience: &str, deadline_ms: u64) {
    waiters().push(Waiter {
        scheduler: scheduler as usize,
        cluster: cfg.cluster.clone(),
        audience: audience.to_owned(),
        deadline_ms,
    });
}

/// The stream ended or was woken (worker thread): no commit may follow.
pub fn remove(scheduler: SchedulerPtr) {
    waiters().retain(|w| w.scheduler != scheduler as usize);
}

/// Main thread: wakes every waiter of `cfg`'s cluster whose token is usable now or whose
/// deadline passed; the woken stream decides which on its own worker.
pub fn wake_due(cfg: &UpstreamToken, now_ms: u64) {
    let mut list = waiters();
    list.retain(|w| {
        let due = w.cluster == cfg.cluster
            && (now_ms >= w.deadline_ms || tokens::usable_now(cfg, &w.audience, now_ms));
        if due {
            // SAFETY: the scheduler is alive while its waiter is listed (see WAITERS).
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(
                    w.scheduler as SchedulerPtr,
                    0,
                )
            }
        }
        !due
    });
}
