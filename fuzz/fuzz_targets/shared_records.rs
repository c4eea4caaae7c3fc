//! Bytes other workers wrote to shared data (the lockout table, the token record, the fetch
//! state) and configured RFC 3339 timestamps: never panics, and what decodes re-encodes to the
//! same value.
#![no_main]

use bcsp_guard::policy::lockout::Table;
use bcsp_guard::policy::time::{format_rfc3339, parse_rfc3339};
use bcsp_guard::token::{CachedToken, FetchState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = Table::decode(data) {
        assert_eq!(t.encode(), data);
        assert_eq!(t.len(), (data.len() - 1) / 32);
    }
    if let Some(c) = CachedToken::decode(data) {
        assert!(CachedToken::decode(&c.encode()) == Some(c));
    }
    if let Some(s) = FetchState::decode(data) {
        assert_eq!(FetchState::decode(&s.encode()), Some(s));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(ms) = parse_rfc3339(text) {
            let shown = format_rfc3339(ms);
            // Years before 0000 print as `-001-…`, which is no RFC 3339 (logs only).
            if shown.len() == 20 && shown.starts_with(|c: char| c.is_ascii_digit()) {
                assert_eq!(
                    parse_rfc3339(&shown),
                    Some(ms - ms.rem_euclid(1000)),
                    "{text}"
                );
            }
        }
    }
});
