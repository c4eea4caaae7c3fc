//! Token and lockout ports the request path is handed.

use super::NoSharedData;
use crate::host::lockout::LockoutBook;
use crate::pipeline::{LockoutPort, TokenPort};
use crate::policy::lockout::Failure;
use crate::token::plan::Missing;
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

/// A token cache that answers with `value` (or `missing`) and records every audience asked for.
pub(crate) struct FakeTokens {
    pub(crate) value: Option<&'static str>,
    pub(crate) missing: Missing,
    pub(crate) asked: RefCell<Vec<String>>,
}

impl TokenPort for FakeTokens {
    fn header_value(&self, audience: &str) -> Option<Rc<str>> {
        self.asked.borrow_mut().push(audience.to_owned());
        self.value.map(Rc::from)
    }
    fn on_missing(&self, _audience: &str) -> Missing {
        match self.missing {
            Missing::Wait { deadline_ms } => Missing::Wait { deadline_ms },
            Missing::Reject { retry_after_s } => Missing::Reject { retry_after_s },
        }
    }
}

/// A lockout port that reports `locked` and locks out on every recorded failure.
pub(crate) struct FakeLockout {
    pub(crate) locked: Option<u64>,
    pub(crate) failures: RefCell<Vec<IpAddr>>,
}

impl LockoutPort for FakeLockout {
    fn locked(&self, _client: IpAddr) -> Option<u64> {
        self.locked
    }
    fn failed(&self, client: IpAddr) -> Failure {
        self.failures.borrow_mut().push(client);
        Failure::LockedOut {
            until_s: 1_800_000_300,
            failures: 20,
        }
    }
}

/// The lockout port as the Wasm glue builds it (`BookPort`), over a host without shared data.
pub(crate) struct SeBook<'a> {
    pub(crate) book: &'a LockoutBook,
    pub(crate) host: &'a NoSharedData,
}

impl LockoutPort for SeBook<'_> {
    fn locked(&self, client: IpAddr) -> Option<u64> {
        self.book.locked(self.host, client)
    }
    fn failed(&self, client: IpAddr) -> Failure {
        self.book.failed(self.host, client)
    }
}

/// A token port that must never be touched.
pub(crate) struct Untouchable;

impl TokenPort for Untouchable {
    fn header_value(&self, audience: &str) -> Option<Rc<str>> {
        panic!("token port asked for {audience} without upstream_token");
    }
    fn on_missing(&self, audience: &str) -> Missing {
        panic!("token port on_missing({audience}) without upstream_token");
    }
}
