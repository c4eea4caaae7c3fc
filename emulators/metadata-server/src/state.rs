//! Fault knobs and counters, shared by the HTTP handler and the Rust API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Longest token lifetime accepted; keeps `now + lifetime` far from overflow.
pub(crate) const MAX_LIFETIME_S: u64 = 10 * 365 * 24 * 3600;
/// Longest answer delay accepted, so a handler thread never sleeps unboundedly.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(600);

/// How identity requests are answered (after validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A fresh token.
    Normal,
    /// 200 with a body that is not a JWT.
    Garbage,
    /// 200 with a JWT whose `exp` is one hour in the past.
    Expired,
    /// 503 to every metadata request (control endpoints and /healthz still work).
    Down,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Garbage => "garbage",
            Mode::Expired => "expired",
            Mode::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Normal, Mode::Garbage, Mode::Expired, Mode::Down]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Knobs {
    pub(crate) lifetime_s: u64,
    pub(crate) fail_left: u32,
    pub(crate) fail_status: u16,
    pub(crate) delay: Duration,
    pub(crate) mode: Mode,
}

impl Knobs {
    fn new(lifetime_s: u64) -> Knobs {
        Knobs {
            lifetime_s: lifetime_s.min(MAX_LIFETIME_S),
            fail_left: 0,
            fail_status: 500,
            delay: Duration::ZERO,
            mode: Mode::Normal,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: u64,
    rejected: u64,
    by_audience: BTreeMap<String, u64>,
}

pub(crate) struct Shared {
    initial_lifetime_s: u64,
    knobs: Mutex<Knobs>,
    counts: Mutex<Counts>,
    serial: AtomicU64,
    pub(crate) stopped: AtomicBool,
    pub(crate) logging: AtomicBool,
}

/// A poisoned lock still holds plain data that is safe to keep using.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(lifetime_s: u64) -> Shared {
        Shared {
            initial_lifetime_s: lifetime_s,
            knobs: Mutex::new(Knobs::new(lifetime_s)),
            counts: Mutex::new(Counts::default()),
            serial: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            logging: AtomicBool::new(false),
        }
    }

    pub(crate) fn knobs(&self) -> Knobs {
        *lock(&self.knobs)
    }

    pub(crate) fn set_lifetime(&self, secs: u64) {
        lock(&self.knobs).lifetime_s = secs.min(MAX_LIFETIME_S);
    }

    /// Replaces any pending failures.
    pub(crate) fn fail_next(&self, count: u32, status: u16) {
        let mut k = lock(&self.knobs);
        k.fail_left = count;
        k.fail_status = status;
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        lock(&self.knobs).delay = delay.min(MAX_DELAY);
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        lock(&self.knobs).mode = mode;
    }

    /// Consumes one pending failure, if any, and returns its status.
    pub(crate) fn take_failure(&self) -> Option<u16> {
        let mut k = lock(&self.knobs);
        (k.fail_left > 0).then(|| {
            k.fail_left -= 1;
            k.fail_status
        })
    }

    pub(crate) fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn record_fetch(&self, audience: &str) {
        let mut c = lock(&self.counts);
        c.total += 1;
        *c.by_audience.entry(audience.to_string()).or_insert(0) += 1;
    }

    pub(crate) fn record_rejected(&self) {
        lock(&self.counts).rejected += 1;
    }

    pub(crate) fn fetch_count(&self, audience: &str) -> u64 {
        lock(&self.counts)
            .by_audience
            .get(audience)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn total_fetches(&self) -> u64 {
        lock(&self.counts).total
    }

    pub(crate) fn rejected_count(&self) -> u64 {
        lock(&self.counts).rejected
    }

    /// Knobs back to their start values and counters to zero.
    pub(crate) fn reset(&self) {
        *lock(&self.knobs) = Knobs::new(self.initial_lifetime_s);
        *lock(&self.counts) = Counts::default();
    }

    /// `{"total":N,"rejected":N,"by_audience":{"<aud>":N}}`
    pub(crate) fn stats_json(&self) -> String {
        let c = lock(&self.counts);
        let by: Vec<String> = c
            .by_audience
            .iter()
            .map(|(aud, n)| format!("{}:{n}", crate::json::quote(aud)))
            .collect();
        format!(
            r#"{{"total":{},"rejected":{},"by_audience":{{{}}}}}"#,
            c.total,
            c.rejected,
            by.join(",")
        )
    }
}
