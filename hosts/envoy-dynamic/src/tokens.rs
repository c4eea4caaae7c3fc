//! One identity-token cache for the whole Envoy process. Workers only read it; the main
//! thread refreshes it (config-level timer and HTTP callout), so one fetch per refresh serves
//! every worker. The decisions (when to fetch, backoff, what a request without a token gets)
//! are the core's pure `token::plan` functions; this file only keeps their state in memory.

use bcsp_guard::pipeline::TokenPort;
use bcsp_guard::policy::upstream::UpstreamToken;
use bcsp_guard::token::plan::{self, Missing, Plan};
use bcsp_guard::token::record::{CachedToken, FetchState};
use bcsp_guard::token::schedule::usable;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
struct Slot {
    cached: Option<CachedToken>,
    /// `Bearer <jwt>`, built once per fetched token.
    header: Option<Arc<str>>,
    state: FetchState,
}

/// Keyed by metadata cluster and audience, like the Wasm build's shared-data records.
static SLOTS: Mutex<BTreeMap<(String, String), Slot>> = Mutex::new(BTreeMap::new());

fn slots() -> MutexGuard<'static, BTreeMap<(String, String), Slot>> {
    // A poisoned lock only means a panic elsewhere (impossible with panic = "abort"); the
    // map itself is always consistent, so keep using it.
    SLOTS.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(cfg: &UpstreamToken, audience: &str) -> (String, String) {
    (cfg.cluster.clone(), audience.to_owned())
}

/// The slot of `audience` without building an owned key: this runs on every request, and the
/// map holds one entry per configured audience (a handful).
fn find<'m>(
    map: &'m BTreeMap<(String, String), Slot>,
    cfg: &UpstreamToken,
    audience: &str,
) -> Option<&'m Slot> {
    map.iter()
        .find(|((cluster, aud), _)| *cluster == cfg.cluster && aud == audience)
        .map(|(_, slot)| slot)
}

/// The request path's view: read-only, never waits.
pub struct ProcessTokens<'a> {
    pub cfg: &'a UpstreamToken,
    pub now_ms: u64,
}

impl TokenPort for ProcessTokens<'_> {
    fn header_value(&self, audience: &str) -> Option<Rc<str>> {
        let map = slots();
        let slot = find(&map, self.cfg, audience)?;
        let cached = slot.cached.as_ref()?;
        if !usable(self.now_ms, cached.exp_s, &self.cfg.timing) {
            return None;
        }
        slot.header.as_deref().map(Rc::from)
    }

    /// Wait up to `max_wait_ms`, unless the fetcher is backing off past that (the core's rule).
    fn on_missing(&self, audience: &str) -> Missing {
        plan::when_missing(self.now_ms, &state_of(self.cfg, audience), &self.cfg.timing)
    }
}

fn state_of(cfg: &UpstreamToken, audience: &str) -> FetchState {
    slots()
        .get(&key(cfg, audience))
        .map(|s| s.state.clone())
        .unwrap_or_default()
}

/// Retry-After for a request whose wait ran out.
pub fn retry_after_s(cfg: &UpstreamToken, audience: &str, now_ms: u64) -> u64 {
    plan::retry_after_s(now_ms, &state_of(cfg, audience))
}

/// Whether a usable token for `audience` is cached.
pub fn usable_now(cfg: &UpstreamToken, audience: &str, now_ms: u64) -> bool {
    slots()
        .get(&key(cfg, audience))
        .and_then(|s| s.cached.as_ref())
        .is_some_and(|c| usable(now_ms, c.exp_s, &cfg.timing))
}

/// Whether `holder` should fetch for `audience` now; takes the lease when it should.
pub fn begin_fetch(cfg: &UpstreamToken, audience: &str, holder: u64, now_ms: u64) -> bool {
    let mut map = slots();
    let slot = map.entry(key(cfg, audience)).or_default();
    if plan::plan(now_ms, slot.cached.as_ref(), &slot.state, &cfg.timing) != Plan::Fetch {
        return false;
    }
    match plan::take_lease(now_ms, &slot.state, holder, &cfg.timing) {
        Some(leased) => {
            slot.state = leased;
            true
        }
        None => false,
    }
}

/// What a finished fetch did, for counters and log lines.
pub enum Fetched {
    Stored { exp_s: i64, refresh_at_ms: u64 },
    Failed { reason: String, retry_in_ms: u64 },
}

/// Records a fetch result: the token (if newer) before the lease is released.
pub fn finish_fetch(
    cfg: &UpstreamToken,
    audience: &str,
    holder: u64,
    now_ms: u64,
    result: Result<Vec<u8>, String>,
) -> Fetched {
    let mut map = slots();
    let slot = map.entry(key(cfg, audience)).or_default();
    let accepted = result.and_then(|body| {
        plan::accept_fetch(&body, now_ms, &cfg.timing)
            .map_err(|e| format!("unusable token: {}", e.reason()))
    });
    match accepted {
        Ok(record) => {
            if record.supersedes(slot.cached.as_ref()) {
                slot.header = Some(Arc::from(format!("Bearer {}", record.jwt())));
                slot.cached = Some(record.clone());
            }
            slot.state = plan::after_success(&slot.state, holder);
            Fetched::Stored {
                exp_s: record.exp_s,
                refresh_at_ms: record.refresh_at_ms,
            }
        }
        Err(reason) => {
            slot.state =
                plan::after_failure(now_ms, &slot.state, holder, plan::mix64(now_ms ^ holder));
            Fetched::Failed {
                reason,
                retry_in_ms: slot.state.next_attempt_ms.saturating_sub(now_ms),
            }
        }
    }
}

/// Seconds left on the soonest-expiring token of `cfg` (0 when one is missing).
pub fn seconds_left(cfg: &UpstreamToken, now_ms: u64) -> u64 {
    let map = slots();
    let now_s = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    cfg.audiences()
        .into_iter()
        .map(|aud| {
            map.get(&key(cfg, aud))
                .and_then(|s| s.cached.as_ref())
                .map_or(0, |c| {
                    u64::try_from(c.exp_s.saturating_sub(now_s)).unwrap_or(0)
                })
        })
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcsp_guard::config;

    fn upstream(cluster: &str) -> UpstreamToken {
        let json = format!(
            r#"{{"keys":[{{"id":"k","sha256":"{}"}}],
                "upstream_token":{{"cluster":"{cluster}","audience":"https://a.example"}}}}"#,
            "0".repeat(64)
        );
        match config::compile(json.as_bytes()) {
            Ok(p) => p.upstream_token.unwrap_or_else(|| unreachable!()),
            Err(e) => panic!("{e}"),
        }
    }

    fn jwt(exp_s: u64) -> Vec<u8> {
        let b64 = |s: &str| {
            use bcsp_guard::base64::{encode, Alphabet};
            encode(s.as_bytes(), Alphabet::Url)
                .trim_end_matches('=')
                .to_owned()
        };
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(&format!(r#"{{"aud":"https://a.example","exp":{exp_s}}}"#))
        )
        .into_bytes()
    }

    #[test]
    fn one_holder_at_a_time_then_token_served_until_refresh() {
        let cfg = upstream("meta-one");
        let now = 1_800_000_000_000u64;
        let port = ProcessTokens {
            cfg: &cfg,
            now_ms: now,
        };
        assert!(port.header_value("https://a.example").is_none());
        assert!(matches!(
            port.on_missing("https://a.example"),
            Missing::Wait { .. }
        ));
        assert!(begin_fetch(&cfg, "https://a.example", 1, now));
        assert!(
            !begin_fetch(&cfg, "https://a.example", 2, now),
            "lease held"
        );
        let exp = now / 1000 + 3600;
        let r = finish_fetch(&cfg, "https://a.example", 1, now, Ok(jwt(exp)));
        assert!(matches!(r, Fetched::Stored { .. }));
        let v = port.header_value("https://a.example");
        assert!(v.is_some_and(|v| v.starts_with("Bearer ")));
        assert!(
            !begin_fetch(&cfg, "https://a.example", 1, now + 1000),
            "not due"
        );
        assert!(seconds_left(&cfg, now) >= 3599);
    }

    #[test]
    fn failure_backs_off_and_sets_retry_after() {
        let cfg = upstream("meta-two");
        let now = 1_800_000_000_000u64;
        assert!(begin_fetch(&cfg, "https://a.example", 1, now));
        let r = finish_fetch(&cfg, "https://a.example", 1, now, Err("down".into()));
        assert!(matches!(r, Fetched::Failed { retry_in_ms, .. } if retry_in_ms >= 500));
        assert!(
            !begin_fetch(&cfg, "https://a.example", 1, now + 10),
            "backing off"
        );
        assert!(retry_after_s(&cfg, "https://a.example", now) >= 1);
        assert!(!usable_now(&cfg, "https://a.example", now));
    }
}
