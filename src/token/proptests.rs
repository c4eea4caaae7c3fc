//! Property-style tests over deterministic pseudo-random inputs (mix64): decoders never panic
//! and stay canonical, and workers following the plan protocol never fetch twice at once.

use super::jwt::{base64url_decode, base64url_encode, parse_identity_token};
use super::plan::{
    accept_fetch, active_lease, after_failure, after_success, mix64, plan, take_lease, Plan,
};
use super::record::{CachedToken, FetchState, Lease};
use super::schedule::{lease_ms, Timing};

/// Deterministic stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix64(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Random bytes, half of them from the characters the encodings are made of, so that
    /// near-valid inputs come up often.
    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        const NEAR: &[u8] = b"TF1;-:0123456789.AZaz_=+/ \n\r\x00\xff";
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| {
                let r = self.next();
                if r & 1 == 0 {
                    NEAR[(r >> 8) as usize % NEAR.len()]
                } else {
                    (r >> 8) as u8
                }
            })
            .collect()
    }

    /// `bytes` with one random byte replaced, inserted or removed, or cut short.
    fn mutate(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let at = self.below(out.len() as u64 + 1) as usize;
        let byte = self.next() as u8;
        match self.below(4) {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
        out
    }
}

const NOW_MS: u64 = 1_700_000_000_000;

fn jwt(exp_s: u64) -> String {
    format!(
        "{}.{}.{}",
        base64url_encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        base64url_encode(format!(r#"{{"aud":"https://bcsp.example","exp":{exp_s}}}"#).as_bytes()),
        base64url_encode(b"0123456789abcdef")
    )
}

fn random_state(rng: &mut Rng, now: u64) -> FetchState {
    let near = |rng: &mut Rng| now.wrapping_add(rng.below(80_000)).wrapping_sub(40_000);
    FetchState {
        lease: rng.chance(70).then(|| Lease {
            holder: rng.below(4),
            until_ms: if rng.chance(5) { rng.next() } else { near(rng) },
        }),
        next_attempt_ms: if rng.chance(50) { 0 } else { near(rng) },
        failures: rng.below(4) as u32,
    }
}

#[test]
fn decoders_never_panic_on_random_bytes() {
    let mut rng = Rng(1);
    for _ in 0..5_000 {
        let bytes = rng.bytes(96);
        let _ = CachedToken::decode(&bytes);
        let _ = FetchState::decode(&bytes);
        let _ = base64url_decode(&bytes);
        let _ = parse_identity_token(&bytes, rng.next() as i64);
        let _ = accept_fetch(&bytes, rng.next(), &Timing::default());
    }
}

#[test]
fn near_valid_records_decode_to_none_or_to_exactly_what_they_encode() {
    let mut rng = Rng(2);
    let t = Timing::default();
    let token = accept_fetch(jwt(1_700_003_600).as_bytes(), NOW_MS, &t)
        .unwrap()
        .encode();
    for _ in 0..5_000 {
        let state = random_state(&mut rng, NOW_MS).encode();
        let bytes = rng.mutate(&state);
        if let Some(s) = FetchState::decode(&bytes) {
            assert_eq!(s.encode(), bytes, "{:?}", String::from_utf8_lossy(&bytes));
        }
        let bytes = rng.mutate(&token);
        if let Some(c) = CachedToken::decode(&bytes) {
            assert_eq!(c.encode(), bytes, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn near_valid_tokens_parse_only_to_header_safe_unexpired_jwts() {
    let mut rng = Rng(3);
    let good = jwt(1_700_003_600);
    for _ in 0..5_000 {
        let bytes = rng.mutate(good.as_bytes());
        if let Ok(token) = parse_identity_token(&bytes, 1_700_000_000) {
            assert!(token.exp() > 1_700_000_000);
            assert!(token.jwt().bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(token.jwt().split('.').count(), 3);
        }
    }
}

#[test]
fn base64url_round_trips_and_accepts_only_canonical_text() {
    let mut rng = Rng(4);
    for _ in 0..5_000 {
        let plain = rng.bytes(40);
        let text = base64url_encode(&plain);
        assert_eq!(base64url_decode(text.as_bytes()), Some(plain));
        let noise = rng.bytes(12);
        if let Some(decoded) = base64url_decode(&noise) {
            assert_eq!(base64url_encode(&decoded).as_bytes(), noise.as_slice());
        }
    }
}

#[test]
fn no_lease_is_granted_while_an_unexpired_one_exists() {
    let mut rng = Rng(5);
    let t = Timing::default();
    let token = accept_fetch(jwt(1_700_000_100).as_bytes(), NOW_MS - 60_000, &t).unwrap();
    for _ in 0..5_000 {
        let now = NOW_MS + rng.below(200_000);
        let state = random_state(&mut rng, now);
        let tok = rng.chance(50).then_some(&token);
        let granted = take_lease(now, &state, 99, &t);
        if let Some(lease) = state.lease {
            let unexpired = now < lease.until_ms && lease.until_ms <= now + lease_ms(&t);
            assert!(!(unexpired && granted.is_some()), "{state:?} at {now}");
        }
        assert_eq!(granted.is_some(), active_lease(now, &state, &t).is_none());
        if plan(now, tok, &state, &t) == Plan::Fetch {
            assert!(
                granted.is_some(),
                "plan said fetch but the lease is taken: {state:?}"
            );
        }
        if let Some(g) = granted {
            assert_eq!(active_lease(now, &g, &t).map(|l| l.holder), Some(99));
            assert_eq!(take_lease(now, &g, 98, &t), None);
            assert_eq!(
                (g.failures, g.next_attempt_ms),
                (state.failures, state.next_attempt_ms)
            );
        }
    }
}

/// One worker VM in the simulation.
#[derive(Clone, Debug)]
enum Worker {
    Idle,
    /// Read the state at `version` and will try to write `next` with CAS.
    Taking {
        version: u64,
        next: FetchState,
        holder: u64,
    },
    /// The request to the metadata server runs until `request_ends_ms` (never past the fetch
    /// timeout); the worker handles the answer at `reports_ms`, which a busy worker may do
    /// after its lease ran out.
    Fetching {
        holder: u64,
        request_ends_ms: u64,
        reports_ms: u64,
        ok: bool,
    },
    /// Died mid-fetch: never reports; the request is cut by the timeout at `request_ends_ms`.
    Vanished {
        request_ends_ms: u64,
    },
}

impl Worker {
    fn request_in_flight(&self, now: u64) -> bool {
        match *self {
            Worker::Fetching {
                request_ends_ms, ..
            }
            | Worker::Vanished { request_ends_ms } => request_ends_ms > now,
            _ => false,
        }
    }
}

/// How the metadata server and the workers misbehave, in percent of fetches.
#[derive(Clone, Copy)]
struct Faults {
    fail: u64,
    vanish: u64,
    report_late: u64,
}

const HEALTHY: Faults = Faults {
    fail: 0,
    vanish: 0,
    report_late: 0,
};

/// Workers ticking over the shared records as the host will: CAS on the state, token written
/// before the lease is released. All reads and writes of a round happen at one `now`, with
/// the workers' read and write steps interleaved at random.
struct Sim {
    t: Timing,
    rng: Rng,
    faults: Faults,
    now: u64,
    state: Vec<u8>,
    version: u64,
    token: Option<Vec<u8>>,
    crew: Vec<Worker>,
    holders: u64,
    fetches: u64,
    fetches_before_first_token: u64,
    rounds_without_usable_token_after_first: u64,
}

impl Sim {
    fn new(seed: u64, workers: usize, faults: Faults) -> Sim {
        Sim {
            // The issue's proactive-refresh scenario: 10 s tokens, 5 s margin, 1 s skew.
            t: Timing {
                refresh_margin_s: 5,
                expiry_skew_s: 1,
                max_wait_ms: 3_000,
                fetch_timeout_ms: 2_000,
            },
            rng: Rng(seed),
            faults,
            now: NOW_MS,
            // The host creates the state record before any worker plans.
            state: FetchState::default().encode(),
            version: 1,
            token: None,
            crew: vec![Worker::Idle; workers],
            holders: 0,
            fetches: 0,
            fetches_before_first_token: 0,
            rounds_without_usable_token_after_first: 0,
        }
    }

    fn run(mut self, duration_ms: u64) -> Sim {
        while self.now < NOW_MS + duration_ms {
            self.now += self.rng.below(501);
            for i in 0..self.crew.len() {
                self.report(i);
            }
            self.tick();
            let cached = self.token.as_deref().and_then(CachedToken::decode);
            if cached.is_some_and(|c| !c.usable(self.now, &self.t)) {
                self.rounds_without_usable_token_after_first += 1;
            }
        }
        self
    }

    fn read_state(&self) -> FetchState {
        FetchState::decode(&self.state).unwrap()
    }

    fn write_state(&mut self, next: &FetchState) {
        self.state = next.encode();
        self.version += 1;
    }

    /// A fetch whose answer is due is handled: token first, then the state (a CAS loop in the
    /// host, atomic here).
    fn report(&mut self, i: usize) {
        match self.crew[i] {
            Worker::Fetching {
                holder,
                request_ends_ms,
                reports_ms,
                ok,
            } if reports_ms <= self.now => {
                let body = jwt(request_ends_ms / 1000 + 10);
                let current = self.read_state();
                let next = match ok.then(|| accept_fetch(body.as_bytes(), self.now, &self.t)) {
                    Some(Ok(fresh)) => {
                        let cached = self.token.as_deref().and_then(CachedToken::decode);
                        if fresh.supersedes(cached.as_ref()) {
                            self.token = Some(fresh.encode());
                        }
                        after_success(&current, holder)
                    }
                    _ => after_failure(self.now, &current, holder, self.rng.next()),
                };
                self.write_state(&next);
                self.crew[i] = Worker::Idle;
            }
            Worker::Vanished { request_ends_ms } if request_ends_ms <= self.now => {
                self.crew[i] = Worker::Idle;
            }
            _ => {}
        }
    }

    fn tick(&mut self) {
        let mut pending: Vec<usize> = (0..self.crew.len())
            .filter(|&i| matches!(self.crew[i], Worker::Idle))
            .collect();
        while !pending.is_empty() {
            let pick = self.rng.below(pending.len() as u64) as usize;
            let i = pending[pick];
            if let Worker::Idle = self.crew[i] {
                self.read_and_plan(i);
                if let Worker::Taking { .. } = self.crew[i] {
                    continue; // its write comes at a later step
                }
            } else {
                self.try_take(i);
            }
            pending.swap_remove(pick);
        }
    }

    /// Reads the state (with its version) before the token, as the host must.
    fn read_and_plan(&mut self, i: usize) {
        let version = self.version;
        let current = self.read_state();
        let cached = self.token.as_deref().and_then(CachedToken::decode);
        if plan(self.now, cached.as_ref(), &current, &self.t) == Plan::Fetch {
            self.holders += 1;
            let holder = mix64(self.holders);
            let next = take_lease(self.now, &current, holder, &self.t).unwrap();
            self.crew[i] = Worker::Taking {
                version,
                next,
                holder,
            };
        }
    }

    fn try_take(&mut self, i: usize) {
        let Worker::Taking {
            version,
            ref next,
            holder,
        } = self.crew[i]
        else {
            return;
        };
        if version != self.version {
            self.crew[i] = Worker::Idle;
            return;
        }
        let before = self.read_state();
        let now = self.now;
        assert!(
            before.lease.is_none_or(|l| now >= l.until_ms),
            "lease granted over an unexpired one: {before:?} at {now}"
        );
        let in_flight = self
            .crew
            .iter()
            .filter(|w| w.request_in_flight(now))
            .count();
        assert_eq!(in_flight, 0, "a second fetch would start at {now}");
        let next = next.clone();
        self.write_state(&next);
        self.fetches += 1;
        if self.token.is_none() {
            self.fetches_before_first_token += 1;
        }
        let request_ends_ms = now + self.rng.below(self.t.fetch_timeout_ms + 1);
        let f = self.faults;
        self.crew[i] = if self.rng.chance(f.vanish) {
            Worker::Vanished {
                request_ends_ms: now + self.t.fetch_timeout_ms,
            }
        } else {
            let late = self.rng.chance(f.report_late);
            Worker::Fetching {
                holder,
                request_ends_ms,
                reports_ms: if late {
                    now + lease_ms(&self.t) + self.rng.below(5_000)
                } else {
                    request_ends_ms
                },
                ok: !self.rng.chance(f.fail),
            }
        };
    }
}

#[test]
fn healthy_metadata_server_is_fetched_once_at_cold_start_and_refreshed_before_expiry() {
    for seed in 0..40 {
        let sim = Sim::new(seed * 7919, 4, HEALTHY).run(60_000);
        assert_eq!(sim.fetches_before_first_token, 1, "seed {seed}");
        assert_eq!(
            sim.rounds_without_usable_token_after_first, 0,
            "seed {seed}"
        );
        // A 10 s token with a 5 s margin is refetched every 4.5 to 8 s.
        assert!(
            (8..=14).contains(&sim.fetches),
            "seed {seed}: {} fetches",
            sim.fetches
        );
    }
}

#[test]
fn failing_vanishing_and_late_fetchers_never_cause_two_fetches_at_once() {
    let faults = Faults {
        fail: 40,
        vanish: 10,
        report_late: 15,
    };
    for seed in 0..60 {
        // The assertions that matter run inside the simulation at every lease grant.
        let sim = Sim::new(seed * 104_729 + 1, 4, faults).run(120_000);
        assert!(
            sim.fetches > 3 && sim.fetches < 120,
            "seed {seed}: {} fetches",
            sim.fetches
        );
    }
}

#[test]
fn a_dead_metadata_server_is_retried_with_backoff_not_hammered() {
    let dead = Faults {
        fail: 100,
        ..HEALTHY
    };
    for seed in 0..20 {
        let sim = Sim::new(seed + 31, 8, dead).run(120_000);
        // Backoff reaches 15 to 30 s after five failures; 2 minutes allow a dozen attempts.
        assert!(
            (5..=14).contains(&sim.fetches),
            "seed {seed}: {} fetches",
            sim.fetches
        );
        assert_eq!(sim.token, None);
    }
}
