//! RFC 3339 and the lockout table.

use super::*;

proptest! {
    #![proptest_config(cases(2048))]

    /// Generated timestamps (any valid date 0000–9999, fractions, offsets) give the reference
    /// instant; impossible dates and times are refused.
    #[test]
    fn rfc3339_agrees_with_reference(
        y in prop_oneof![0i64..=9999, select(&[0i64, 1600, 1900, 2000, 2024, 2100, 2400, 9999][..])],
        m in 1i64..=12,
        d in prop_oneof![1i64..=31, 28i64..=31],
        hh in 0i64..=24, mm in 0i64..=60, ss in 0i64..=60,
        frac in prop::option::of("[0-9]{1,9}"),
        offset in prop::option::of((any::<bool>(), 0i64..=24, 0i64..=60)),
        lower in any::<bool>(),
    ) {
        let off_text = match offset {
            None => if lower { "z".to_owned() } else { "Z".to_owned() },
            Some((neg, oh, om)) => format!("{}{oh:02}:{om:02}", if neg { '-' } else { '+' }),
        };
        let text = format!(
            "{y:04}-{m:02}-{d:02}{}{hh:02}:{mm:02}:{ss:02}{}{off_text}",
            if lower { 't' } else { 'T' },
            frac.as_deref().map(|f| format!(".{f}")).unwrap_or_default()
        );
        let valid = d <= days_in(y, m)
            && hh < 24 && mm < 60 && ss < 60
            && offset.is_none_or(|(_, oh, om)| oh < 24 && om < 60);
        let want = valid.then(|| {
            let millis = frac.as_deref().map_or(0, |f| format!("{f:0<3}")[..3].parse::<i64>().unwrap());
            let off = offset.map_or(0, |(neg, oh, om)| (oh * 3600 + om * 60) * if neg { -1 } else { 1 });
            (ref_days(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - off) * 1000 + millis
        });
        prop_assert_eq!(parse_rfc3339(&text), want, "{}", text);
        if let Some(ms) = want {
            let shown = format_rfc3339(ms);
            // Years outside 0000–9999 print as `-001-…` or `10000-…`, which are no RFC 3339.
            if shown.len() == 20 && shown.starts_with(|c: char| c.is_ascii_digit()) {
                prop_assert_eq!(parse_rfc3339(&shown), Some(ms - ms.rem_euclid(1000)));
            }
        }
    }

    #[test]
    fn rfc3339_never_panics(text in prop_oneof!["\\PC{0,40}", "[0-9T:.Z+-]{18,34}"]) {
        let _ = parse_rfc3339(&text);
    }

    /// Shared lockout tables: decoded exactly when they have this version's shape, and what
    /// decodes re-encodes byte for byte.
    #[test]
    fn lockout_table_decodes_only_its_own_format(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            (0usize..4, any::<u8>()).prop_flat_map(|(n, b)| prop::collection::vec(Just(b), 1 + 32 * n)),
            (0usize..4).prop_flat_map(|n| prop::collection::vec(any::<u8>(), 32 * n))
                .prop_map(|v| { let mut t = vec![1u8]; t.extend(v); t }),
        ],
    ) {
        let want = bytes.first() == Some(&1) && (bytes.len() - 1) % 32 == 0;
        match Table::decode(&bytes) {
            Some(t) => {
                prop_assert!(want);
                prop_assert_eq!(t.encode(), bytes.clone());
                prop_assert_eq!(t.len(), (bytes.len() - 1) / 32);
            }
            None => prop_assert!(!want),
        }
    }
}
