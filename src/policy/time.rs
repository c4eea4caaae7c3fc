//! RFC 3339 timestamps to and from Unix milliseconds.
//! Hand-written (no chrono): only the one profile configs use, and it must never panic.

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into Unix milliseconds.
/// Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // A leap second (:60) is refused: validity windows never need one.
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = b.get(19..)?;
    let mut millis = 0i64;
    if rest.first() == Some(&b'.') {
        let frac_len = rest
            .iter()
            .skip(1)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if frac_len == 0 {
            return None;
        }
        let mut scale = 100;
        for c in rest.get(1..1 + frac_len.min(3))? {
            millis += i64::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = rest.get(1 + frac_len..)?;
    }
    let offset_s = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh = digits(rest, 1, 2)?;
            let om = digits(rest, 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs * 1000 + millis)
}

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (seconds precision; used in logs and by the CLI).
pub fn format_rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms, restated: days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_give_the_right_instant() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-10-01T00:00:00Z", 1_790_812_800_000),
            ("2026-10-01t00:00:00z", 1_790_812_800_000),
            ("2026-10-01T02:00:00+02:00", 1_790_812_800_000),
            ("2026-09-30T19:30:00-04:30", 1_790_812_800_000),
            ("2026-10-01T00:00:00.5Z", 1_790_812_800_500),
            ("2026-10-01T00:00:00.123456789Z", 1_790_812_800_123),
            ("2024-02-29T12:00:00Z", 1_709_208_000_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rfc3339(s), Some(want), "{s}");
        }
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for s in [
            "",
            "2026-10-01",
            "2026-10-01 00:00:00Z",
            "2026-10-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-10-01T24:00:00Z",
            "2026-10-01T00:60:00Z",
            "2026-10-01T00:00:60Z",
            "2026-10-01T00:00:00.Z",
            "2026-10-01T00:00:00+0200",
            "2026-10-01T00:00:00+24:00",
            "2026-10-01T00:00:00ZZ",
            "+2026-10-01T00:00:00Z",
            "2026-1a-01T00:00:00Z",
            "２026-10-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s:?}");
        }
    }

    #[test]
    fn format_round_trips_whole_seconds() {
        for ms in [0, 1_790_812_800_000, 1_709_208_000_000, 4_102_444_799_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
        assert_eq!(format_rfc3339(1_790_812_800_999), "2026-10-01T00:00:00Z");
    }
}
