//! Envoy's shared data, faked: one store every worker sees, and a host that refuses it.

use super::NOW_MS;
use crate::host::tokens::SharedHost;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// One shared-data store for every worker: a version per write, a clock, the outbound calls made.
#[derive(Default)]
pub(crate) struct SharedStore {
    pub(crate) data: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    pub(crate) next_version: Cell<u32>,
    pub(crate) clock_ms: Cell<u64>,
    /// `cluster authority path` of every dispatched fetch.
    pub(crate) calls: RefCell<Vec<String>>,
    pub(crate) refuse_dispatch: Cell<bool>,
    /// Every read and write fails, as on a host whose shared data is unavailable.
    pub(crate) refuse: Cell<bool>,
    /// Writes that lose a CAS race on purpose, to exercise the retry.
    pub(crate) lose_races: Cell<u32>,
}

impl SharedStore {
    /// A store whose clock reads `clock_ms`.
    pub(crate) fn at(clock_ms: u64) -> SharedStore {
        let store = SharedStore::default();
        store.clock_ms.set(clock_ms);
        store
    }

    pub(crate) fn advance(&self, ms: u64) {
        self.clock_ms.set(self.clock_ms.get() + ms);
    }

    fn bump_version(&self) -> u32 {
        let v = self.next_version.get() + 1;
        self.next_version.set(v);
        v
    }
}

impl SharedHost for SharedStore {
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        if self.refuse.get() {
            return (None, None);
        }
        match self.data.borrow().get(key) {
            Some((v, ver)) => (Some(v.clone()), Some(*ver)),
            None => (None, None),
        }
    }
    // Envoy's rule: a version is checked only when the key exists.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if self.refuse.get() {
            return false;
        }
        if self.lose_races.get() > 0 {
            self.lose_races.set(self.lose_races.get() - 1);
            let v = self.bump_version();
            if let Some(e) = self.data.borrow_mut().get_mut(key) {
                e.1 = v;
            }
        }
        let mut data = self.data.borrow_mut();
        if let (Some(want), Some((_, have))) = (cas, data.get(key)) {
            if want != *have {
                return false;
            }
        }
        let v = self.bump_version();
        data.insert(key.to_owned(), (value.to_vec(), v));
        true
    }
    fn dispatch_fetch(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        _timeout_ms: u64,
    ) -> Option<u32> {
        if self.refuse_dispatch.get() {
            return None;
        }
        let mut calls = self.calls.borrow_mut();
        calls.push(format!("{cluster} {authority} {path}"));
        Some(u32::try_from(calls.len()).unwrap())
    }
    fn now_ms(&self) -> u64 {
        self.clock_ms.get()
    }
}

/// One worker's view of a [`SharedStore`]: the same data, its own identity.
pub(crate) struct Worker<'s> {
    pub(crate) store: &'s SharedStore,
}

impl SharedHost for Worker<'_> {
    fn get_shared(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.store.get_shared(key)
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.store.set_shared(key, value, cas)
    }
    fn dispatch_fetch(&self, cluster: &str, authority: &str, path: &str, t: u64) -> Option<u32> {
        self.store.dispatch_fetch(cluster, authority, path, t)
    }
    fn now_ms(&self) -> u64 {
        self.store.now_ms()
    }
}

/// Shared data and outbound calls as a host without them offers them (GCP Service
/// Extensions): refused every time, and counted; an outbound call panics.
#[derive(Default)]
pub(crate) struct NoSharedData {
    pub(crate) gets: Cell<u32>,
    pub(crate) sets: Cell<u32>,
}

impl SharedHost for NoSharedData {
    fn get_shared(&self, _key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.gets.set(self.gets.get() + 1);
        (None, None)
    }
    fn set_shared(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> bool {
        self.sets.set(self.sets.get() + 1);
        false
    }
    fn dispatch_fetch(&self, _: &str, _: &str, _: &str, _: u64) -> Option<u32> {
        panic!("outbound call on a host without outbound calls");
    }
    fn now_ms(&self) -> u64 {
        NOW_MS as u64
    }
}
