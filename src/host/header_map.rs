//! Decoding proxy-wasm's serialized header maps without trusting them: lossy UTF-8 and
//! bounds-checked sizes, so a request with odd bytes can never trap the VM.

/// The proxy-wasm map encoding: u32 count, then (name len, value len) u32 pairs, then each
/// name and value followed by a NUL. Anything inconsistent ends the map there.
pub fn decode(b: &[u8]) -> Vec<(String, String)> {
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
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        data = value_start.saturating_add(value_len).saturating_add(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend((n.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend(*n);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn well_formed_maps_decode_in_order() {
        let b = encode(&[
            (b":path", b"/bots"),
            (b"x-bcsp-key", b"s3cret"),
            (b"x-a", b""),
        ]);
        assert_eq!(
            decode(&b),
            vec![
                (":path".to_owned(), "/bots".to_owned()),
                ("x-bcsp-key".to_owned(), "s3cret".to_owned()),
                ("x-a".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let b = encode(&[(b"x-note", b"caf\xe9"), (b"x-bcsp-key", b"\xff\xfe")]);
        let m = decode(&b);
        assert_eq!(m[0].1, "caf\u{fffd}");
        assert_eq!(m[1].1, "\u{fffd}\u{fffd}");
    }

    #[test]
    fn truncated_or_lying_maps_never_panic() {
        let good = encode(&[(b"a", b"b"), (b"c", b"d")]);
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
