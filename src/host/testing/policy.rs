//! Policies as `on_configure` compiles them, for the request-path tests.

use crate::config;
use crate::pipeline::metrics::{Kind, Stats};
use crate::pipeline::Guard;
use crate::policy::keys::SecretHash;

/// Keys `a` (`x-bcsp-key: alpha`) and `b` (`authorization: Bearer bravo`) plus `extra` config
/// fields; every metric gets an id.
pub(crate) fn guard(extra: &str) -> Guard {
    let a = SecretHash::of(b"alpha").to_hex();
    let b = SecretHash::of(b"bravo").to_hex();
    let json = format!(
        r#"{{"keys":[{{"id":"a","sha256":"{a}"}},
                     {{"id":"b","header":"authorization","scheme":"Bearer","sha256":"{b}"}}]{extra}}}"#
    );
    let policy = config::compile(json.as_bytes()).unwrap();
    let mut next = 0;
    let stats = Stats::define(&policy, |_, _| {
        next += 1;
        Some(next)
    });
    Guard { policy, stats }
}

pub(crate) const KEYS: &str = r#""keys":[
    {"id":"a","sha256":"HASH_ALPHA"},
    {"id":"b","header":"authorization","scheme":"Bearer","sha256":"HASH_BRAVO"},
    {"id":"retired","sha256":"HASH_OLD","not_after":"2027-01-01T00:00:00Z"}]"#;

/// The policy as `on_configure` builds it on this host: every metric definition fails.
pub(crate) fn se_guard(extra: &str) -> Guard {
    let keys = KEYS
        .replace("HASH_ALPHA", &SecretHash::of(b"alpha").to_hex())
        .replace("HASH_BRAVO", &SecretHash::of(b"bravo").to_hex())
        .replace("HASH_OLD", &SecretHash::of(b"old-secret").to_hex());
    let policy = config::compile(format!("{{{keys}{extra}}}").as_bytes())
        .unwrap_or_else(|e| panic!("config {extra}: {e}"));
    let mut asked = 0;
    let stats = Stats::define(&policy, |_: Kind, _: &str| {
        asked += 1;
        None
    });
    assert!(asked > 0, "no metric was even tried");
    Guard { policy, stats }
}
