//! Lockout of guessing clients as pure data: a bounded table of client addresses with their
//! recent 401s, in a compact binary form that workers share. No clock, no I/O.

use std::net::IpAddr;

/// `lockout` as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutRule {
    /// This many 401s within `window_s` start a lockout.
    pub max_failures: u32,
    pub window_s: u32,
    /// How long a locked-out client gets 429.
    pub cooldown_s: u32,
}

/// A tracked client: an IPv4 address, or the /64 of an IPv6 address (one host usually owns a
/// whole /64, so counting single IPv6 addresses would be trivial to dodge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 16]);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match crate::policy::client_ip::canonical(ip) {
            IpAddr::V4(v4) => ClientKey(v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => ClientKey((u128::from(v6) & !u128::from(u64::MAX)).to_be_bytes()),
        }
    }

    /// FNV-1a, so every worker picks the same shard for a client.
    pub fn shard(&self, shards: usize) -> usize {
        let h = self.0.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        usize::try_from(h % (shards.max(1) as u64)).unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    client: ClientKey,
    window_start_s: u32,
    failures: u32,
    /// 0: not locked.
    locked_until_s: u32,
    last_s: u32,
}

const ENTRY_LEN: usize = 32;
const FORMAT: u8 = 1;

impl Entry {
    fn locked_at(&self, now_s: u32) -> bool {
        self.locked_until_s > now_s
    }
}

/// What one more 401 amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Counted; this many failures in the current window so far.
    Counted(u32),
    /// This failure started a lockout that lasts until `until_s`.
    LockedOut { until_s: u32, failures: u32 },
    /// Already locked out (another worker got there first).
    AlreadyLocked,
}

/// One shard of tracked clients, at most `cap` of them (the oldest is evicted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    entries: Vec<Entry>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

impl Table {
    /// An empty table, usable in a `static` (the dynamic-module host keeps one per shard).
    pub const fn new() -> Table {
        Table {
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `None` for anything that is not a table this version wrote.
    pub fn decode(bytes: &[u8]) -> Option<Table> {
        let (&format, rest) = bytes.split_first()?;
        if format != FORMAT || rest.len() % ENTRY_LEN != 0 {
            return None;
        }
        let entries = rest
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let client: [u8; 16] = c.get(..16)?.try_into().ok()?;
                Some(Entry {
                    client: ClientKey(client),
                    window_start_s: u32_at(c, 16)?,
                    failures: u32_at(c, 20)?,
                    locked_until_s: u32_at(c, 24)?,
                    last_s: u32_at(c, 28)?,
                })
            })
            .collect::<Option<Vec<Entry>>>()?;
        Some(Table { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.entries.len() * ENTRY_LEN);
        out.push(FORMAT);
        for e in &self.entries {
            out.extend_from_slice(&e.client.0);
            for v in [e.window_start_s, e.failures, e.locked_until_s, e.last_s] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out
    }

    /// Seconds until `client` may try again, when it is locked out at `now_s`.
    pub fn locked(&self, client: ClientKey, now_s: u32) -> Option<u32> {
        self.entries
            .iter()
            .find(|e| e.client == client && e.locked_at(now_s))
            .map(|e| e.locked_until_s - now_s)
    }

    /// Counts one 401 for `client`, keeping at most `cap` clients.
    pub fn record_failure(
        &mut self,
        rule: &LockoutRule,
        client: ClientKey,
        now_s: u32,
        cap: usize,
    ) -> Failure {
        let index = match self.entries.iter().position(|e| e.client == client) {
            Some(i) => i,
            None => {
                self.make_room(now_s, rule, cap.saturating_sub(1));
                self.entries.push(Entry {
                    client,
                    window_start_s: now_s,
                    failures: 0,
                    locked_until_s: 0,
                    last_s: now_s,
                });
                self.entries.len() - 1
            }
        };
        let Some(e) = self.entries.get_mut(index) else {
            return Failure::AlreadyLocked;
        };
        if e.locked_at(now_s) {
            return Failure::AlreadyLocked;
        }
        let window_over = now_s.saturating_sub(e.window_start_s) >= rule.window_s;
        if e.locked_until_s != 0 || window_over {
            *e = Entry {
                client,
                window_start_s: now_s,
                failures: 0,
                locked_until_s: 0,
                last_s: now_s,
            };
        }
        e.failures = e.failures.saturating_add(1);
        e.last_s = now_s;
        if e.failures >= rule.max_failures {
            e.locked_until_s = now_s.saturating_add(rule.cooldown_s);
            let failures = e.failures;
            e.failures = 0;
            Failure::LockedOut {
                until_s: e.locked_until_s,
                failures,
            }
        } else {
            Failure::Counted(e.failures)
        }
    }

    /// Drops entries that no longer matter, then the oldest until at most `keep` remain:
    /// unlocked ones first (least recently failed), locked ones (soonest to expire) last.
    fn make_room(&mut self, now_s: u32, rule: &LockoutRule, keep: usize) {
        self.entries.retain(|e| {
            e.locked_at(now_s) || now_s.saturating_sub(e.window_start_s) < rule.window_s
        });
        while self.entries.len() > keep {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| {
                    if e.locked_at(now_s) {
                        (1, e.locked_until_s)
                    } else {
                        (0, e.last_s)
                    }
                })
                .map(|(i, _)| i);
            match victim {
                Some(i) => {
                    self.entries.swap_remove(i);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: LockoutRule = LockoutRule {
        max_failures: 3,
        window_s: 60,
        cooldown_s: 300,
    };

    fn key(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn max_failures_within_the_window_lock_out_until_the_cooldown_ends() {
        let mut t = Table::default();
        let c = key("203.0.113.7");
        assert_eq!(t.record_failure(&RULE, c, 1000, 8), Failure::Counted(1));
        assert_eq!(t.record_failure(&RULE, c, 1010, 8), Failure::Counted(2));
        assert_eq!(t.locked(c, 1010), None);
        assert_eq!(
            t.record_failure(&RULE, c, 1020, 8),
            Failure::LockedOut {
                until_s: 1320,
                failures: 3
            }
        );
        assert_eq!(t.locked(c, 1020), Some(300));
        assert_eq!(t.locked(c, 1319), Some(1));
        assert_eq!(t.locked(c, 1320), None, "the cooldown is over");
        assert_eq!(t.record_failure(&RULE, c, 1100, 8), Failure::AlreadyLocked);
        // After the cooldown the count starts from scratch.
        assert_eq!(t.record_failure(&RULE, c, 1320, 8), Failure::Counted(1));
        assert_eq!(t.locked(key("203.0.113.8"), 1020), None);
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_lock_out() {
        let mut t = Table::default();
        let c = key("203.0.113.7");
        for i in 0..10 {
            let r = t.record_failure(&RULE, c, 1000 + i * 31, 8);
            assert!(matches!(r, Failure::Counted(1 | 2)), "{i}: {r:?}");
        }
    }

    #[test]
    fn ipv6_clients_are_tracked_by_their_64_and_mapped_v4_as_v4() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:198.51.100.1"), key("198.51.100.1"));
        assert_ne!(key("198.51.100.1"), key("198.51.100.2"));
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_unlocked_client_first() {
        let mut t = Table::default();
        let locked = key("192.0.2.1");
        for s in 0..3 {
            t.record_failure(&RULE, locked, 100 + s, 4);
        }
        for (i, ip) in ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]
            .iter()
            .enumerate()
        {
            t.record_failure(&RULE, key(ip), 110 + i as u32, 4);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.locked(locked, 120), Some(282), "a lockout survives churn");
        let decoded = Table::decode(&t.encode()).unwrap();
        assert_eq!(decoded, t);
        // 192.0.2.2 was the least recently seen unlocked client.
        assert!(!t.entries.iter().any(|e| e.client == key("192.0.2.2")));
        for i in 0..100u32 {
            let ip = format!("10.0.{}.{}", i / 250, i % 250);
            t.record_failure(&RULE, key(&ip), 130, 4);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.locked(locked, 130), Some(272));
    }

    #[test]
    fn stale_entries_are_dropped_when_room_is_needed() {
        let mut t = Table::default();
        t.record_failure(&RULE, key("192.0.2.1"), 100, 8);
        t.record_failure(&RULE, key("192.0.2.2"), 500, 8);
        assert_eq!(t.len(), 1, "an entry whose window is over is forgotten");
    }

    #[test]
    fn decode_refuses_foreign_bytes() {
        assert_eq!(Table::decode(&[]), None);
        assert_eq!(Table::decode(&[2]), None);
        assert_eq!(Table::decode(&[1, 0, 0]), None);
        assert_eq!(Table::decode(&[1]), Some(Table::default()));
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let c = key("203.0.113.7");
        assert_eq!(c.shard(8), c.shard(8));
        let spread: std::collections::BTreeSet<usize> = (0..64)
            .map(|i| key(&format!("203.0.113.{i}")).shard(8))
            .collect();
        assert!(spread.len() > 4, "{spread:?}");
        assert!(spread.iter().all(|&s| s < 8));
    }
}
