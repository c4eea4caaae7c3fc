//! Base64 in the two alphabets the filter meets: unpadded base64url (JWT segments) and padded
//! standard base64 (Open Messaging webhook signatures). Hand-written: tiny, and never panics.

/// Which RFC 4648 alphabet, and with it whether `=` padding is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// RFC 4648 §4: `+` and `/`, padded with `=`.
    Standard,
    /// RFC 4648 §5: `-` and `_`, unpadded (as in JWTs).
    Url,
}

impl Alphabet {
    fn value(self, c: u8) -> Option<u8> {
        match (c, self) {
            (b'A'..=b'Z', _) => Some(c - b'A'),
            (b'a'..=b'z', _) => Some(c - b'a' + 26),
            (b'0'..=b'9', _) => Some(c - b'0' + 52),
            (b'+', Alphabet::Standard) | (b'-', Alphabet::Url) => Some(62),
            (b'/', Alphabet::Standard) | (b'_', Alphabet::Url) => Some(63),
            _ => None,
        }
    }

    fn char(self, v: u32) -> char {
        // v is masked to 6 bits; the last two arms differ by alphabet.
        let b = match (v & 0x3f, self) {
            (v @ 0..=25, _) => b'A' + v as u8,
            (v @ 26..=51, _) => b'a' + (v - 26) as u8,
            (v @ 52..=61, _) => b'0' + (v - 52) as u8,
            (62, Alphabet::Standard) => b'+',
            (62, Alphabet::Url) => b'-',
            (_, Alphabet::Standard) => b'/',
            (_, Alphabet::Url) => b'_',
        };
        char::from(b)
    }

    fn padded(self) -> bool {
        self == Alphabet::Standard
    }
}

/// Encodes `input`; standard base64 is padded to a multiple of 4 characters.
pub fn encode(input: &[u8], alphabet: Alphabet) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3).saturating_mul(4));
    for chunk in input.chunks(3) {
        let mut group = [0u8; 4];
        for (slot, &b) in group.iter_mut().skip(1).zip(chunk) {
            *slot = b;
        }
        let acc = u32::from_be_bytes(group);
        for i in 0..=chunk.len() as u32 {
            out.push(alphabet.char(acc >> (18 - 6 * i)));
        }
        if alphabet.padded() {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// The data characters of `input`: padding stripped where the alphabet requires it (and
/// refused where it does not), or `None` when the length or padding is wrong.
fn data_part(input: &[u8], alphabet: Alphabet) -> Option<&[u8]> {
    if !alphabet.padded() {
        return Some(input);
    }
    if input.len() % 4 != 0 {
        return None;
    }
    let pad = input.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    input.get(..input.len() - pad)
}

/// Whether `input` is the one canonical encoding of some bytes: right alphabet, right
/// padding, and zero unused bits in the last character. Does not allocate.
pub fn is_canonical(input: &[u8], alphabet: Alphabet) -> bool {
    let Some(data) = data_part(input, alphabet) else {
        return false;
    };
    let spare_bits = match data.len() % 4 {
        0 => 0,
        2 => 4,
        3 => 2,
        _ => return false,
    };
    let mut last = 0u8;
    for &c in data {
        match alphabet.value(c) {
            Some(v) => last = v,
            None => return false,
        }
    }
    last & ((1u8 << spare_bits) - 1) == 0
}

/// Decodes canonical input (see [`is_canonical`]); `None` for anything else.
pub fn decode(input: &[u8], alphabet: Alphabet) -> Option<Vec<u8>> {
    if !is_canonical(input, alphabet) {
        return None;
    }
    let data = data_part(input, alphabet)?;
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | u32::from(alphabet.value(c)?);
        }
        // Left-align the 12, 18 or 24 bits in a 24-bit group, then keep the whole bytes.
        let bits = 6 * chunk.len() as u32;
        acc <<= 24 - bits;
        let whole_bytes = chunk.len().saturating_sub(1);
        out.extend(acc.to_be_bytes().iter().skip(1).take(whole_bytes));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4648: &[(&[u8], &str)] = &[
        (b"", ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"fooba", "Zm9vYmE="),
        (b"foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn standard_alphabet_matches_rfc4648_vectors_and_round_trips() {
        for (plain, encoded) in RFC4648 {
            assert_eq!(encode(plain, Alphabet::Standard), *encoded);
            assert_eq!(
                decode(encoded.as_bytes(), Alphabet::Standard).as_deref(),
                Some(*plain)
            );
        }
        let all: Vec<u8> = (0..=255).collect();
        let e = encode(&all, Alphabet::Standard);
        assert!(e.contains('+') && e.contains('/'));
        assert_eq!(decode(e.as_bytes(), Alphabet::Standard), Some(all));
    }

    #[test]
    fn url_alphabet_is_unpadded_and_uses_dash_and_underscore() {
        assert_eq!(encode(b"f", Alphabet::Url), "Zg");
        assert_eq!(encode(&[0xfb, 0xff], Alphabet::Url), "-_8");
        assert_eq!(encode(&[0xfb, 0xff], Alphabet::Standard), "+/8=");
    }

    #[test]
    fn non_canonical_standard_input_is_refused() {
        for bad in [
            "Zg", "Zg=", "Zg===", "Zh==", "Zm9v=", "Z===", "Zm-v", "Zm_v", "Zm9 v", "=Zm9", "Zm=v",
        ] {
            assert_eq!(decode(bad.as_bytes(), Alphabet::Standard), None, "{bad:?}");
        }
    }
}
