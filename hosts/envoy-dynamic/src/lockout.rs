//! The lockout book for the whole process: the core's pure lockout tables behind a mutex per
//! shard, so every worker sees every failure at once without shared-data encoding.

use bcsp_guard::host::lockout::{CAP_PER_SHARD, SHARDS};
use bcsp_guard::pipeline::LockoutPort;
use bcsp_guard::policy::lockout::{ClientKey, Failure, LockoutRule, Table};
use std::net::IpAddr;
use std::sync::Mutex;

static BOOK: [Mutex<Table>; SHARDS] = [const { Mutex::new(Table::new()) }; SHARDS];

pub struct ProcessLockout {
    pub rule: LockoutRule,
    pub now_s: u32,
}

fn with_shard<R>(client: IpAddr, f: impl FnOnce(&mut Table, ClientKey) -> R) -> Option<R> {
    let key = ClientKey::of(client);
    let shard = BOOK.get(key.shard(SHARDS))?;
    let mut table = shard.lock().unwrap_or_else(|p| p.into_inner());
    Some(f(&mut table, key))
}

impl LockoutPort for ProcessLockout {
    fn locked(&self, client: IpAddr) -> Option<u64> {
        with_shard(client, |t, key| t.locked(key, self.now_s))
            .flatten()
            .map(u64::from)
    }
    fn failed(&self, client: IpAddr) -> Failure {
        with_shard(client, |t, key| {
            t.record_failure(&self.rule, key, self.now_s, CAP_PER_SHARD)
        })
        .unwrap_or(Failure::Counted(0))
    }
}
