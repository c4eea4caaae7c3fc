//! Decoding proxy-wasm's serialized header maps without trusting them: bounds-checked sizes
//! and no panics on bytes that are not UTF-8, so a request with odd bytes can never trap the
//! VM. The pairs borrow from the host's buffer: the request path copies no header.

/// Stands in for a name or value that is not UTF-8. Envoy forwards such bytes (RFC 9110 allows
/// obs-text). The whole value is replaced, not just the bad bytes, so a mangled credential can
/// never decode to a secret it merely resembles; it only fails the checks it meets.
pub const NOT_UTF8: &str = "\u{fffd}";

/// The proxy-wasm map encoding: u32 count, then (name len, value len) u32 pairs, then each
/// name and value followed by a NUL. Anything inconsistent ends the map there.
pub fn decode<'a>(b: &'a [u8]) -> Vec<(&'a str, &'a str)> {
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let Some(mut data) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(count.min(256));
    // Names and values are checked as UTF-8 once, all together: when the whole data area is
    // valid, a slice of it is valid exactly when both its ends are character boundaries
    // (`str::get`); otherwise each slice is checked alone.
    let base = data;
    let all = b
        .get(base..)
        .and_then(|rest| std::str::from_utf8(rest).ok());
    for i in 0..count {
        let sizes = (u32_at(4 + i * 8), u32_at(8 + i * 8));
        let (Some(name_len), Some(value_len)) = sizes else {
            break;
        };
        let name = data.checked_add(name_len).and_then(|end| b.get(data..end));
        let value_start = data.saturating_add(name_len).saturating_add(1);
        let value = value_start
            .checked_add(value_len)
            .and_then(|end| b.get(value_start..end));
        let (Some(name), Some(value)) = (name, value) else {
            break;
        };
        let as_text = |start: usize, bytes: &'a [u8]| -> &'a str {
            let from = start.checked_sub(base);
            let to = from.and_then(|f| f.checked_add(bytes.len()));
            match (all, from, to) {
                (Some(a), Some(from), Some(to)) => a.get(from..to),
                _ => None,
            }
            .unwrap_or_else(|| text(bytes))
        };
        out.push((as_text(data, name), as_text(value_start, value)));
        data = value_start.saturating_add(value_len).saturating_add(1);
    }
    out
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or(NOT_UTF8)
}

/// Owned pairs viewed as the `(name, value)` slices the request path reads.
pub fn borrowed(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// A header change as Envoy applies it to owned pairs (tests, fuzzing, the CLI): every value
/// of `name` (ASCII case-insensitive) goes, then `value`, if any, is appended. Returns whether
/// `name` was there before.
pub fn replace(pairs: &mut Vec<(String, String)>, name: &str, value: Option<&str>) -> bool {
    let before = pairs.len();
    pairs.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    let present = pairs.len() != before;
    if let Some(v) = value {
        pairs.push((name.to_owned(), v.to_owned()));
    }
    present
}

/// The same encoding, for hosts that hold headers as pairs (tests, fuzzing, the CLI).
/// The dynamic module encodes every request's headers with it, so the buffer is sized once.
pub fn encode<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let data: usize = pairs
        .iter()
        .map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + 8 * pairs.len() + data);
    out.extend_from_slice(&len32(pairs.len()));
    for (n, v) in pairs {
        out.extend_from_slice(&len32(n.as_ref().len()));
        out.extend_from_slice(&len32(v.as_ref().len()));
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_maps_decode_in_order() {
        let b = encode(&[(":path", "/bots"), ("x-bcsp-key", "s3cret"), ("x-a", "")]);
        assert_eq!(
            decode(&b),
            vec![(":path", "/bots"), ("x-bcsp-key", "s3cret"), ("x-a", "")]
        );
    }

    #[test]
    fn a_length_that_cuts_a_character_in_two_gives_the_replacement() {
        // Valid UTF-8 as a whole ("é" is two bytes), but the sizes split it: the value is not
        // text, and the name after it starts in the middle of the character.
        let mut b = encode(&[("x-a", "é"), ("b", "c")]);
        b[8] = 1; // value length of the first pair: one byte of "é"
        let m = decode(&b);
        assert_eq!(m.first(), Some(&("x-a", NOT_UTF8)));
    }

    #[test]
    fn bytes_that_are_not_utf8_replace_the_whole_value() {
        let b = encode(&[
            (&b"x-note"[..], &b"caf\xe9"[..]),
            (b"x-bcsp-key", b"s3cret\xff"),
            (b"x-\xfe", b"v"),
        ]);
        let m = decode(&b);
        assert_eq!(
            m,
            vec![
                ("x-note", NOT_UTF8),
                ("x-bcsp-key", NOT_UTF8),
                (NOT_UTF8, "v")
            ]
        );
    }

    #[test]
    fn replace_drops_every_value_of_the_name_in_any_case() {
        let mut h: Vec<(String, String)> = [("X-Key", "a"), ("x-other", "b"), ("x-key", "c")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        assert!(replace(&mut h, "x-key", Some("new")));
        assert_eq!(borrowed(&h), vec![("x-other", "b"), ("x-key", "new")]);
        assert!(!replace(&mut h, "x-absent", None));
        assert!(replace(&mut h, "X-OTHER", None));
        assert_eq!(borrowed(&h), vec![("x-key", "new")]);
    }

    #[test]
    fn truncated_or_lying_maps_never_panic() {
        let good = encode(&[("a", "b"), ("c", "d")]);
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).len() <= 2);
        let mut long_name = good.clone();
        long_name[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&long_name).is_empty());
        assert!(decode(&[]).is_empty());
    }
}
