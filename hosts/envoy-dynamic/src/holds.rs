//! Webhook deliveries whose headers this module holds until their body is verified. Each has
//! the core's deadline (`held::BODY_DEADLINE_MS`), so a sender that stalls half-way is answered
//! 408 instead of being held until Envoy's own idle timeout. The main thread's tick finds the
//! overdue ones and wakes each on its own worker through that stream's scheduler.

use crate::abi::{self, SchedulerPtr};
use std::sync::{Mutex, MutexGuard};

/// The event id a stream's scheduler carries when its hold ran out (0: a token wake-up).
pub const HOLD_EXPIRED: u64 = 1;

struct Hold {
    scheduler: usize,
    deadline_ms: u64,
}

/// Guards every commit, as for the token waiters: a stream deletes its scheduler only after
/// removing itself here.
static HOLDS: Mutex<Vec<Hold>> = Mutex::new(Vec::new());

fn holds() -> MutexGuard<'static, Vec<Hold>> {
    HOLDS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A delivery's headers are held from now on (worker thread).
pub fn add(scheduler: SchedulerPtr, deadline_ms: u64) {
    let mut list = holds();
    list.retain(|h| h.scheduler != scheduler as usize);
    list.push(Hold {
        scheduler: scheduler as usize,
        deadline_ms,
    });
}

/// The delivery was judged, or the stream ended (worker thread): no commit may follow.
pub fn remove(scheduler: SchedulerPtr) {
    holds().retain(|h| h.scheduler != scheduler as usize);
}

/// Main thread: wakes every hold whose deadline passed.
pub fn expire_due(now_ms: u64) {
    holds().retain(|h| {
        let due = now_ms >= h.deadline_ms;
        if due {
            // SAFETY: the scheduler is alive while its hold is listed (see HOLDS).
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(
                    h.scheduler as SchedulerPtr,
                    HOLD_EXPIRED,
                )
            }
        }
        !due
    });
}
