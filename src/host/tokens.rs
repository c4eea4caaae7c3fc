//! One worker's side of the identity-token cache: local copies of the shared records, the
//! lease that keeps one fetch in flight across workers, and requests waiting for a token.
//! Generic over [`SharedHost`], so the multi-worker dance is tested natively.

use crate::policy::upstream::UpstreamToken;
use crate::token::plan::{self, Missing, Plan};
use crate::token::record::{self, CachedToken, FetchState};
use crate::token::schedule::{self, usable};
use std::rc::Rc;

/// Shared data, outbound calls and the clock, as the token cache needs them.
pub trait SharedHost {
    /// Value and compare-and-swap version; `(None, None)` when absent or unavailable.
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// `cas: None` writes unconditionally. False on a version mismatch or host error.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// `GET path` with `Metadata-Flavor: Google` on `cluster`; the call id, or None.
    fn dispatch_fetch(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        timeout_ms: u64,
    ) -> Option<u32>;
    fn now_ms(&self) -> u64;
}

/// What a finished metadata call produced, as the host saw it.
pub struct FetchReply {
    /// `None`: no response at all (timeout, reset, no healthy host).
    pub status: Option<u32>,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    Stored {
        audience: String,
        exp_s: i64,
        /// Sent until then (exclusive): `exp - expiry_skew_s`.
        usable_until_ms: u64,
        /// When the next fetch starts: the refresh time, or earlier for a short-lived token.
        next_fetch_ms: u64,
    },
    Failed {
        audience: String,
        reason: String,
        retry_in_ms: u64,
    },
    /// Not one of ours (or already handled).
    Unknown,
}

struct Local {
    header_value: Rc<str>,
    exp_s: i64,
    refresh_at_ms: u64,
}

struct Slot {
    audience: String,
    token_key: String,
    state_key: String,
    local: Option<Local>,
}

struct Waiter {
    context_id: u32,
    slot: usize,
    deadline_ms: u64,
}

/// A waiting request's fate, for the host to carry out.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    Resume {
        context_id: u32,
        header_value: Rc<str>,
    },
    Refuse {
        context_id: u32,
        retry_after_s: u64,
    },
}

pub struct TokenWorker {
    cfg: UpstreamToken,
    holder: u64,
    slots: Vec<Slot>,
    inflight: Vec<(u32, usize)>,
    waiters: Vec<Waiter>,
}

impl TokenWorker {
    /// `holder` must differ between workers; see [`claim_holder_id`].
    pub fn new(cfg: &UpstreamToken, holder: u64) -> TokenWorker {
        TokenWorker::in_namespace(cfg, holder, record::DEFAULT_NAMESPACE)
    }

    /// As [`TokenWorker::new`], with records under `namespace` (see [`record::namespace`]).
    pub fn in_namespace(cfg: &UpstreamToken, holder: u64, namespace: &str) -> TokenWorker {
        let slots = cfg
            .audiences()
            .into_iter()
            .map(|aud| {
                let base = format!("{namespace}.{}.{}", cfg.cluster, aud);
                Slot {
                    audience: aud.to_owned(),
                    token_key: format!("{base}.token"),
                    state_key: format!("{base}.fetch"),
                    local: None,
                }
            })
            .collect();
        TokenWorker {
            cfg: cfg.clone(),
            holder,
            slots,
            inflight: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn slot_of(&self, audience: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.audience == audience)
    }

    fn usable_local(&self, slot: usize, now_ms: u64) -> Option<Rc<str>> {
        let local = self.slots.get(slot)?.local.as_ref()?;
        usable(now_ms, local.exp_s, &self.cfg.timing).then(|| local.header_value.clone())
    }

    /// The request path's question. Reads shared data only when the local copy will not do.
    pub fn header_value<H: SharedHost>(&mut self, host: &H, audience: &str) -> Option<Rc<str>> {
        let slot = self.slot_of(audience)?;
        let now = host.now_ms();
        if let Some(v) = self.usable_local(slot, now) {
            return Some(v);
        }
        self.sync(host, slot);
        self.usable_local(slot, now)
    }

    pub fn on_missing<H: SharedHost>(&self, host: &H, audience: &str) -> Missing {
        let now = host.now_ms();
        let Some(slot) = self.slots.get(self.slot_of(audience).unwrap_or(usize::MAX)) else {
            return Missing::Reject { retry_after_s: 1 };
        };
        let state = read_state(host, &slot.state_key).0;
        plan::when_missing(now, &state, &self.cfg.timing)
    }

    /// Copies the shared token into the local slot when it is newer. Returns the record.
    fn sync<H: SharedHost>(&mut self, host: &H, slot: usize) -> Option<CachedToken> {
        let s = self.slots.get_mut(slot)?;
        let cached = host
            .get_shared(&s.token_key)
            .0
            .and_then(|b| CachedToken::decode(&b))?;
        let newer = s
            .local
            .as_ref()
            .is_none_or(|l| cached.exp_s > l.exp_s || cached.refresh_at_ms != l.refresh_at_ms);
        if newer {
            s.local = Some(Local {
                header_value: Rc::from(format!("Bearer {}", cached.jwt())),
                exp_s: cached.exp_s,
                refresh_at_ms: cached.refresh_at_ms,
            });
        }
        Some(cached)
    }

    /// The timer: for each audience whose token is missing or due, pick up a newer shared
    /// copy, or take the lease and start the one fetch. Cheap when nothing is due.
    pub fn tick<H: SharedHost>(&mut self, host: &H) -> Vec<Result<u32, String>> {
        let mut started = Vec::new();
        for i in 0..self.slots.len() {
            let now = host.now_ms();
            let due = self
                .slots
                .get(i)
                .and_then(|s| s.local.as_ref())
                .is_none_or(|l| now >= l.refresh_at_ms || !usable(now, l.exp_s, &self.cfg.timing));
            if !due || self.inflight.iter().any(|(_, s)| *s == i) {
                continue;
            }
            if let Some(r) = self.try_fetch(host, i) {
                started.push(r);
            }
        }
        started
    }

    fn try_fetch<H: SharedHost>(&mut self, host: &H, i: usize) -> Option<Result<u32, String>> {
        let now = host.now_ms();
        let state_key = self.slots.get(i)?.state_key.clone();
        // State before token: a lease seen free was released after its token was written.
        let (state, version) = read_state(host, &state_key);
        if version.is_none() {
            // First sight of this audience anywhere: create the record, take the lease on a
            // later tick with a real version (a write with no version cannot be raced safely).
            host.set_shared(&state_key, &FetchState::default().encode(), None);
            return None;
        }
        let cached = self.sync(host, i);
        if !matches!(
            plan::plan(now, cached.as_ref(), &state, &self.cfg.timing),
            Plan::Fetch
        ) {
            return None;
        }
        let leased = plan::take_lease(now, &state, self.holder, &self.cfg.timing)?;
        if !host.set_shared(&state_key, &leased.encode(), version) {
            return None; // another worker won the lease
        }
        let slot = self.slots.get(i)?;
        let path = self.cfg.request_path(&slot.audience);
        match host.dispatch_fetch(
            &self.cfg.cluster,
            &self.cfg.authority,
            &path,
            self.cfg.timing.fetch_timeout_ms,
        ) {
            Some(call) => {
                self.inflight.push((call, i));
                Some(Ok(call))
            }
            None => {
                let holder = self.holder;
                let retry = self.release(host, &state_key, |s| {
                    plan::after_failure(now, s, holder, plan::mix64(now ^ holder))
                });
                Some(Err(format!(
                    "could not dispatch to cluster `{}`; next attempt in {retry} ms",
                    self.cfg.cluster
                )))
            }
        }
    }

    /// Writes the post-fetch state with compare-and-swap, retrying a few times on races.
    /// Returns milliseconds until the next attempt.
    fn release<H: SharedHost>(
        &self,
        host: &H,
        key: &str,
        next: impl Fn(&FetchState) -> FetchState,
    ) -> u64 {
        let now = host.now_ms();
        for _ in 0..4 {
            let (state, version) = read_state(host, key);
            let new = next(&state);
            if host.set_shared(key, &new.encode(), version) {
                return new.next_attempt_ms.saturating_sub(now);
            }
        }
        0
    }

    pub fn on_fetch_response<H: SharedHost>(
        &mut self,
        host: &H,
        call: u32,
        reply: FetchReply,
    ) -> FetchOutcome {
        let Some(pos) = self.inflight.iter().position(|(c, _)| *c == call) else {
            return FetchOutcome::Unknown;
        };
        let (_, i) = self.inflight.swap_remove(pos);
        let now = host.now_ms();
        let Some(slot) = self.slots.get(i) else {
            return FetchOutcome::Unknown;
        };
        let audience = slot.audience.clone();
        let state_key = slot.state_key.clone();
        let accepted = match reply.status {
            None => Err("no response (timeout or connection failure)".to_owned()),
            Some(200) => plan::accept_fetch(&reply.body, now, &self.cfg.timing)
                .map_err(|e| format!("unusable token: {}", e.reason())),
            Some(code) => Err(format!("metadata server answered {code}")),
        };
        let holder = self.holder;
        match accepted {
            Ok(record) => {
                let current = host
                    .get_shared(&slot.token_key)
                    .0
                    .and_then(|b| CachedToken::decode(&b));
                // The token goes in before the lease is released (see token::plan).
                if record.supersedes(current.as_ref()) {
                    host.set_shared(&slot.token_key, &record.encode(), None);
                }
                self.release(host, &state_key, |s| plan::after_success(s, holder));
                self.sync(host, i);
                let t = &self.cfg.timing;
                FetchOutcome::Stored {
                    audience,
                    exp_s: record.exp_s,
                    usable_until_ms: schedule::usable_until_ms(record.exp_s, t),
                    next_fetch_ms: schedule::next_fetch_ms(record.refresh_at_ms, record.exp_s, t),
                }
            }
            Err(reason) => {
                let retry_in_ms = self.release(host, &state_key, |s| {
                    plan::after_failure(now, s, holder, plan::mix64(now ^ holder))
                });
                FetchOutcome::Failed {
                    audience,
                    reason,
                    retry_in_ms,
                }
            }
        }
    }

    pub fn add_waiter(&mut self, context_id: u32, audience: &str, deadline_ms: u64) {
        if let Some(slot) = self.slot_of(audience) {
            self.waiters.push(Waiter {
                context_id,
                slot,
                deadline_ms,
            });
        }
    }

    pub fn remove_waiter(&mut self, context_id: u32) {
        self.waiters.retain(|w| w.context_id != context_id);
    }

    /// Whether the request is still paused waiting for a token.
    pub fn is_waiting(&self, context_id: u32) -> bool {
        self.waiters.iter().any(|w| w.context_id == context_id)
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Waiters whose token arrived or whose deadline passed. The caller acts on them after
    /// letting go of the worker (resuming a request can re-enter the filter).
    pub fn release_waiters<H: SharedHost>(&mut self, host: &H) -> Vec<Release> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        let now = host.now_ms();
        for i in 0..self.slots.len() {
            if self.usable_local(i, now).is_none() && self.waiters.iter().any(|w| w.slot == i) {
                self.sync(host, i);
            }
        }
        let mut out = Vec::new();
        let mut kept = Vec::with_capacity(self.waiters.len());
        for w in std::mem::take(&mut self.waiters) {
            if let Some(value) = self.usable_local(w.slot, now) {
                out.push(Release::Resume {
                    context_id: w.context_id,
                    header_value: value,
                });
            } else if now >= w.deadline_ms {
                let state = self
                    .slots
                    .get(w.slot)
                    .map(|s| read_state(host, &s.state_key).0)
                    .unwrap_or_default();
                out.push(Release::Refuse {
                    context_id: w.context_id,
                    retry_after_s: plan::retry_after_s(now, &state),
                });
            } else {
                kept.push(w);
            }
        }
        self.waiters = kept;
        out
    }

    /// Seconds left on the token that expires soonest (0 when any audience has none).
    pub fn seconds_left(&self, now_ms: u64) -> u64 {
        let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        self.slots
            .iter()
            .map(|s| {
                s.local.as_ref().map_or(0, |l| {
                    u64::try_from(l.exp_s.saturating_sub(now_s)).unwrap_or(0)
                })
            })
            .min()
            .unwrap_or(0)
    }
}

fn read_state<H: SharedHost>(host: &H, key: &str) -> (FetchState, Option<u32>) {
    let (bytes, version) = host.get_shared(key);
    let state = bytes
        .and_then(|b| FetchState::decode(&b))
        .unwrap_or_default();
    (state, version)
}

/// A worker id unique within this Envoy: a counter in shared data, bumped with
/// compare-and-swap. Falls back to a time-derived id when shared data misbehaves.
pub fn claim_holder_id<H: SharedHost>(host: &H) -> u64 {
    claim_holder_id_in(host, record::DEFAULT_NAMESPACE)
}

/// As [`claim_holder_id`], counting under `namespace`.
pub fn claim_holder_id_in<H: SharedHost>(host: &H, namespace: &str) -> u64 {
    let key = format!("{namespace}.workers");
    let key = key.as_str();
    for _ in 0..16 {
        let (bytes, version) = host.get_shared(key);
        let current = bytes
            .and_then(|b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            })
            .unwrap_or(0);
        let next = current.saturating_add(1);
        if host.set_shared(key, next.to_string().as_bytes(), version) && version.is_some() {
            return next;
        }
        if version.is_none() {
            // Created just now; claim on the next round with a real version.
            continue;
        }
    }
    plan::mix64(host.now_ms()) | (1 << 63)
}

#[cfg(test)]
mod tests;
