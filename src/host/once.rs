//! "Exactly one VM says it": every worker VM (and Envoy's main thread) configures the same
//! policy, but an operator wants the startup summary once. Shared data decides who speaks.

use super::tokens::SharedHost;

const KEY: &str = "bcsp_guard.v1.announced";

/// True for exactly one caller per distinct `text` (practically: the first worker's
/// creation of the record cannot be compare-and-swapped, so a microsecond race could let a
/// second caller through). Hosts without shared data always get true.
pub fn first_to_announce<H: SharedHost>(host: &H, text: &str) -> bool {
    let logged = format!("logged|{text}");
    for _ in 0..8 {
        let (value, version) = host.get_shared(KEY);
        if value.as_deref() == Some(logged.as_bytes()) {
            return false;
        }
        if version.is_none() {
            // Absent (or no shared data at all): create a pending record, then claim it by CAS.
            if !host.set_shared(KEY, format!("pending|{text}").as_bytes(), None) {
                return true;
            }
            continue;
        }
        if host.set_shared(KEY, logged.as_bytes(), version) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::{NoSharedData, SharedStore};

    #[test]
    fn one_announcement_per_distinct_text() {
        let store = SharedStore::default();
        let said: Vec<bool> = (0..4)
            .map(|_| first_to_announce(&store, "policy A"))
            .collect();
        assert_eq!(said, vec![true, false, false, false]);
        assert!(
            first_to_announce(&store, "policy B"),
            "a changed policy is announced again"
        );
        assert!(!first_to_announce(&store, "policy B"));
    }

    #[test]
    fn hosts_without_shared_data_always_announce() {
        assert!(first_to_announce(&NoSharedData::default(), "policy"));
        assert!(first_to_announce(&NoSharedData::default(), "policy"));
    }
}
