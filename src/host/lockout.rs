//! The lockout book: failed authentications per client, counted across workers in a few
//! shared-data shards (compare-and-swap), or per worker when the host has no shared data.
//! Generic over [`SharedHost`], so the multi-worker behaviour is tested natively.

use super::tokens::SharedHost;
use crate::policy::lockout::{ClientKey, Failure, LockoutRule, Table};
use std::cell::RefCell;
use std::net::IpAddr;

/// Shared-data records; each holds at most [`CAP_PER_SHARD`] clients.
pub const SHARDS: usize = 8;
pub const CAP_PER_SHARD: usize = 64;
/// Most clients tracked at once (each worker's fallback table is bounded the same way).
pub const MAX_TRACKED: usize = SHARDS * CAP_PER_SHARD;
const CAS_TRIES: usize = 4;

pub struct LockoutBook {
    rule: LockoutRule,
    keys: Vec<String>,
    /// Used when shared data is refused; also consulted on every check, so a lockout
    /// recorded during an outage still holds.
    local: RefCell<Vec<Table>>,
}

fn now_s<H: SharedHost>(host: &H) -> u32 {
    u32::try_from(host.now_ms() / 1000).unwrap_or(u32::MAX)
}

impl LockoutBook {
    pub fn new(rule: LockoutRule) -> LockoutBook {
        LockoutBook::in_namespace(rule, crate::token::record::DEFAULT_NAMESPACE)
    }

    /// As [`LockoutBook::new`], with the tables under `namespace`
    /// (see [`crate::token::record::namespace`]).
    pub fn in_namespace(rule: LockoutRule, namespace: &str) -> LockoutBook {
        LockoutBook {
            rule,
            keys: (0..SHARDS)
                .map(|i| format!("{namespace}.lockout.{i}"))
                .collect(),
            local: RefCell::new(vec![Table::default(); SHARDS]),
        }
    }

    /// Seconds until `client` may try again, while it is locked out.
    pub fn locked<H: SharedHost>(&self, host: &H, client: IpAddr) -> Option<u64> {
        let key = ClientKey::of(client);
        let shard = key.shard(SHARDS);
        let now = now_s(host);
        let shared = self
            .keys
            .get(shard)
            .and_then(|k| host.get_shared(k).0)
            .and_then(|b| Table::decode(&b))
            .and_then(|t| t.locked(key, now));
        let local = self
            .local
            .try_borrow()
            .ok()
            .and_then(|l| l.get(shard).and_then(|t| t.locked(key, now)));
        shared.max(local).map(u64::from)
    }

    /// Counts one 401 for `client`; exactly one caller across workers sees `LockedOut`.
    pub fn failed<H: SharedHost>(&self, host: &H, client: IpAddr) -> Failure {
        let key = ClientKey::of(client);
        let shard = key.shard(SHARDS);
        let now = now_s(host);
        if let Some(shared_key) = self.keys.get(shard) {
            for _ in 0..CAS_TRIES {
                let (value, version) = host.get_shared(shared_key);
                let mut table = value.and_then(|b| Table::decode(&b)).unwrap_or_default();
                let result = table.record_failure(&self.rule, key, now, CAP_PER_SHARD);
                if host.set_shared(shared_key, &table.encode(), version) {
                    return result;
                }
                if version.is_none() {
                    break; // not a lost race: the host refuses shared data
                }
            }
        }
        match self.local.try_borrow_mut() {
            Ok(mut local) => match local.get_mut(shard) {
                Some(t) => t.record_failure(&self.rule, key, now, CAP_PER_SHARD),
                None => Failure::Counted(0),
            },
            Err(_) => Failure::Counted(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{SharedStore, Worker, NOW_MS};

    const RULE: LockoutRule = LockoutRule {
        max_failures: 4,
        window_s: 60,
        cooldown_s: 3,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn books_in_different_namespaces_share_nothing() {
        let store = SharedStore::at(NOW_MS as u64);
        let w = Worker { store: &store };
        let ours = LockoutBook::in_namespace(RULE, "bcsp_guard.v2.a.1");
        let other = LockoutBook::in_namespace(RULE, "bcsp_guard.v2.b.2");
        let c = ip("198.51.100.9");
        for _ in 0..4 {
            let _ = other.failed(&w, c);
        }
        assert!(other.locked(&w, c).is_some());
        assert_eq!(
            ours.locked(&w, c),
            None,
            "another plugin's table is not ours"
        );
        assert_eq!(ours.failed(&w, c), Failure::Counted(1));
    }

    #[test]
    fn failures_on_two_workers_add_up_and_one_of_them_sees_the_lockout() {
        let store = SharedStore::at(NOW_MS as u64);
        let (w1, w2) = (Worker { store: &store }, Worker { store: &store });
        let (b1, b2) = (LockoutBook::new(RULE), LockoutBook::new(RULE));
        let c = ip("198.51.100.9");
        assert_eq!(b1.failed(&w1, c), Failure::Counted(1));
        assert_eq!(b2.failed(&w2, c), Failure::Counted(2));
        assert_eq!(b1.failed(&w1, c), Failure::Counted(3));
        assert!(matches!(b2.failed(&w2, c), Failure::LockedOut { .. }));
        assert_eq!(
            b1.locked(&w1, c),
            Some(3),
            "worker 1 sees worker 2's lockout"
        );
        assert_eq!(b2.locked(&w2, c), Some(3));
        assert_eq!(b1.locked(&w1, ip("198.51.100.10")), None);
        // Expiry.
        store.advance(3_000);
        assert_eq!(b1.locked(&w1, c), None);
    }

    #[test]
    fn a_lost_race_is_retried_not_dropped() {
        let store = SharedStore::at(NOW_MS as u64);
        let w = Worker { store: &store };
        let b = LockoutBook::new(RULE);
        let c = ip("198.51.100.9");
        b.failed(&w, c);
        store.lose_races.set(2);
        assert_eq!(b.failed(&w, c), Failure::Counted(2));
    }

    #[test]
    fn without_shared_data_each_worker_counts_alone() {
        let store = SharedStore::at(NOW_MS as u64);
        let w = Worker { store: &store };
        store.refuse.set(true);
        let b = LockoutBook::new(RULE);
        let c = ip("2001:db8::1");
        for n in 1..4 {
            assert_eq!(b.failed(&w, c), Failure::Counted(n));
        }
        assert!(matches!(b.failed(&w, c), Failure::LockedOut { .. }));
        assert_eq!(b.locked(&w, ip("2001:db8::2")), Some(3), "same /64");
        assert!(store.data.borrow().is_empty());
    }

    #[test]
    fn tracking_is_bounded_however_many_clients_fail() {
        let store = SharedStore::at(NOW_MS as u64);
        let w = Worker { store: &store };
        let b = LockoutBook::new(RULE);
        for i in 0..5000u32 {
            b.failed(&w, IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | i)));
        }
        let tracked: usize = store
            .data
            .borrow()
            .values()
            .map(|(v, _)| Table::decode(v).unwrap().len())
            .sum();
        assert!(tracked <= MAX_TRACKED, "{tracked}");
        assert!(store
            .data
            .borrow()
            .values()
            .all(|(v, _)| v.len() <= 1 + 32 * CAP_PER_SHARD));
    }
}
