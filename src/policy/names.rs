//! Header names as the servers behind us read them. CGI, WSGI, Rack and PHP map a header to a
//! variable by upper-casing it and turning `-` into `_`, so `X-Bcsp_Key-Id` and
//! `x-bcsp-key-id` land in the same place. The filter therefore treats every spelling that
//! folds to one of its controlled names as that name when stripping; only the exact name
//! (ASCII case aside) is ever read as a credential.

/// One byte of a folded name: ASCII lower case, `_` read as `-`.
#[inline]
pub fn fold_byte(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// The canonical spelling every equivalent name folds to.
pub fn fold(name: &str) -> String {
    name.bytes().map(|b| char::from(fold_byte(b))).collect()
}

/// `candidate` and a name already folded with [`fold`] name the same variable on such a
/// server. No allocation: this runs for every request header.
#[inline]
pub fn same_variable(candidate: &str, folded: &str) -> bool {
    candidate.len() == folded.len()
        && candidate
            .bytes()
            .zip(folded.bytes())
            .all(|(c, f)| fold_byte(c) == f)
}

/// Path and method override headers: frameworks that honour them would let a request act on
/// another route or method than the one the route allowlist checked.
pub const OVERRIDE_HEADERS: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Which spellings of a name count as the same name in a [`NameIndex`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spelling {
    /// ASCII case aside, byte for byte: how a credential header is read.
    #[default]
    CaseOnly,
    /// As CGI-style servers read it (see [`fold`]): how controlled headers are stripped.
    Variable,
}

impl Spelling {
    #[inline]
    fn byte(self, b: u8) -> u8 {
        match self {
            Spelling::CaseOnly => b.to_ascii_lowercase(),
            Spelling::Variable => fold_byte(b),
        }
    }
}

/// Configured header names, looked up once per request header. Every request header is
/// checked against them, so a lookup rules most names out by length alone, then hashes the
/// normalized candidate once and binary-searches (length, hash) pairs: integer comparisons
/// instead of a byte-wise pass over every name (numbered names such as `x-key-01` … `x-key-64`
/// share long prefixes), with no allocation per lookup. Bytes are compared only on a hit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameIndex {
    spelling: Spelling,
    /// Sorted by (length, hash, normalized name); names are distinct once normalized.
    sorted: Vec<Entry>,
    /// Bit `len` set when some name has that length (bit 127: 127 or longer). Most request
    /// headers are ruled out by their length alone, in one step whatever the count.
    lengths: u128,
}

impl NameIndex {
    /// `names[i]` is found as `i`; of names that normalize alike, the first one wins.
    pub fn new<'a>(spelling: Spelling, names: impl IntoIterator<Item = &'a str>) -> NameIndex {
        let mut sorted: Vec<Entry> = Vec::new();
        for (i, n) in names.into_iter().enumerate() {
            let name: Vec<u8> = n.bytes().map(|b| spelling.byte(b)).collect();
            if !sorted.iter().any(|e| e.name == name) {
                sorted.push(Entry {
                    hash: fnv1a(name.iter().copied()),
                    name,
                    index: i,
                });
            }
        }
        sorted.sort_by(|a, b| a.key().cmp(&b.key()).then_with(|| a.name.cmp(&b.name)));
        let lengths = sorted
            .iter()
            .fold(0u128, |acc, e| acc | length_bit(e.name.len()));
        NameIndex {
            spelling,
            sorted,
            lengths,
        }
    }

    /// The index of the configured name `candidate` spells, if any.
    #[inline]
    pub fn find(&self, candidate: &str) -> Option<usize> {
        if self.lengths & length_bit(candidate.len()) == 0 {
            return None;
        }
        let sp = self.spelling;
        let key = (
            candidate.len(),
            fnv1a(candidate.bytes().map(|b| sp.byte(b))),
        );
        self.sorted
            .binary_search_by(|e| {
                e.key().cmp(&key).then_with(|| {
                    e.name
                        .iter()
                        .copied()
                        .cmp(candidate.bytes().map(|b| sp.byte(b)))
                })
            })
            .ok()
            .and_then(|at| self.sorted.get(at))
            .map(|e| e.index)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    name: Vec<u8>,
    hash: u64,
    index: usize,
}

impl Entry {
    fn key(&self) -> (usize, u64) {
        (self.name.len(), self.hash)
    }
}

/// FNV-1a: a few cycles per byte; names are short and chosen by the operator, and a
/// collision only costs a byte comparison, never a wrong answer.
#[inline]
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[inline]
fn length_bit(len: usize) -> u128 {
    1u128 << len.min(127)
}

/// The distinct folded names a policy strips, built once at configuration time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controlled {
    names: Vec<String>,
    index: NameIndex,
}

impl Controlled {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Controlled {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let f = fold(n);
            if !out.contains(&f) {
                out.push(f);
            }
        }
        let index = NameIndex::new(Spelling::Variable, out.iter().map(String::as_str));
        Controlled { names: out, index }
    }

    /// Whether a request header of this name (any spelling) is the filter's to remove.
    #[inline]
    pub fn covers(&self, name: &str) -> bool {
        self.index.find(name).is_some()
    }

    /// The folded names, for the startup summary and tests.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The distinct request names to remove from `headers` (each once, as the request spelt
    /// it: a removal by name drops every value of that name).
    pub fn present<'h>(&self, headers: impl IntoIterator<Item = &'h str>) -> Vec<&'h str> {
        let mut out: Vec<&'h str> = Vec::new();
        for name in headers {
            if self.covers(name) && !out.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                out.push(name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_spelling_of_a_controlled_name_is_covered() {
        let c = Controlled::new(["x-bcsp-key-id", "authorization"]);
        for n in [
            "x-bcsp-key-id",
            "x_bcsp_key_id",
            "x-bcsp_key-id",
            "X_Bcsp-Key_ID",
            "x-bcsp-key_id",
            "AUTHORIZATION",
        ] {
            assert!(c.covers(n), "{n}");
        }
        for n in [
            "x-bcsp-key",
            "x-bcsp-key-idx",
            "xbcsp-key-id",
            "authorisation",
            "",
        ] {
            assert!(!c.covers(n), "{n}");
        }
    }

    #[test]
    fn present_names_each_spelling_once() {
        let c = Controlled::new(["x-bcsp-key-id"]);
        let got = c.present([
            "x-bcsp-key-id",
            "host",
            "x_bcsp-key-id",
            "X-BCSP-KEY-ID",
            "x_bcsp-key-id",
        ]);
        assert_eq!(got, vec!["x-bcsp-key-id", "x_bcsp-key-id"]);
    }

    #[test]
    fn controlled_names_are_folded_and_distinct() {
        let c = Controlled::new(["X-A", "x_a", "x-b"]);
        assert_eq!(c.names(), ["x-a", "x-b"]);
    }

    #[test]
    fn name_index_finds_each_name_by_its_own_rules() {
        let names = ["x-bcsp-key", "authorization", "x-b", "x-a", "X-Bcsp-Key"];
        let exact = NameIndex::new(Spelling::CaseOnly, names);
        assert_eq!(exact.len(), 4, "names equal but for case are one");
        assert_eq!(exact.find("x-bcsp-key"), Some(0));
        assert_eq!(exact.find("X-BCSP-KEY"), Some(0));
        assert_eq!(exact.find("Authorization"), Some(1));
        assert_eq!(exact.find("x-a"), Some(3));
        assert_eq!(
            exact.find("x_bcsp_key"),
            None,
            "credentials are read by exact name"
        );
        for miss in ["", "x", "x-c", "x-bcsp-ke", "x-bcsp-keyy", "authorizatio"] {
            assert_eq!(exact.find(miss), None, "{miss}");
        }
        let folded = NameIndex::new(Spelling::Variable, names);
        assert_eq!(folded.find("x_bcsp_key"), Some(0));
        assert_eq!(folded.find("X_B"), Some(2));
        assert!(NameIndex::new(Spelling::CaseOnly, []).find("x").is_none());
    }

    #[test]
    fn name_index_at_the_largest_key_set() {
        let names: Vec<String> = (1..=64).map(|i| format!("x-bcsp-key-{i:02}")).collect();
        let idx = NameIndex::new(Spelling::CaseOnly, names.iter().map(String::as_str));
        for (i, n) in names.iter().enumerate() {
            assert_eq!(idx.find(&n.to_uppercase()), Some(i));
        }
        assert_eq!(idx.find("x-bcsp-key-65"), None);
        let long = "x".repeat(200);
        let with_long = NameIndex::new(Spelling::CaseOnly, [long.as_str(), "a"]);
        assert_eq!(with_long.find(&long), Some(0));
        assert_eq!(with_long.find(&"x".repeat(199)), None);
        assert_eq!(idx.find("x-bcsp-key-1"), None);
    }

    /// A name and one spelling of it: each `-` or `_` may become the other, each letter may
    /// change case.
    fn name_and_spelling() -> impl Strategy<Value = (String, String)> {
        "[a-z0-9][a-z0-9-]{0,24}".prop_flat_map(|name| {
            let n = name.len();
            (
                Just(name),
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(any::<bool>(), n),
            )
                .prop_map(|(name, swap, upper)| {
                    let spelt = name
                        .bytes()
                        .zip(swap.iter().zip(&upper))
                        .map(|(b, (&s, &u))| match b {
                            b'-' if s => '_',
                            b if u => char::from(b.to_ascii_uppercase()),
                            b => char::from(b),
                        })
                        .collect();
                    (name, spelt)
                })
        })
    }

    proptest! {
        #[test]
        fn any_spelling_matches_its_name((name, spelt) in name_and_spelling()) {
            prop_assert!(same_variable(&spelt, &fold(&name)));
            prop_assert!(Controlled::new([name.as_str()]).covers(&spelt));
        }

        #[test]
        fn matching_is_exactly_equal_folds(a in "[A-Za-z0-9_-]{0,12}", b in "[A-Za-z0-9_-]{0,12}") {
            prop_assert_eq!(same_variable(&a, &fold(&b)), fold(&a) == fold(&b));
        }

        #[test]
        fn name_index_agrees_with_a_scan(
            names in proptest::collection::vec("[A-Za-z_-]{0,4}", 0..12),
            probe in "[A-Za-z_-]{0,4}",
        ) {
            for sp in [Spelling::CaseOnly, Spelling::Variable] {
                let norm = |s: &str| -> Vec<u8> { s.bytes().map(|b| sp.byte(b)).collect() };
                let want = names.iter().position(|n| norm(n) == norm(&probe));
                let idx = NameIndex::new(sp, names.iter().map(String::as_str));
                prop_assert_eq!(idx.find(&probe), want);
            }
        }

        #[test]
        fn folding_is_idempotent_and_keeps_length(a in "[ -~]{0,16}") {
            let f = fold(&a);
            prop_assert_eq!(fold(&f), f.clone());
            prop_assert_eq!(f.len(), a.len());
        }

        #[test]
        fn a_changed_letter_never_matches((name, spelt) in name_and_spelling(), at in any::<prop::sample::Index>()) {
            let mut bytes = spelt.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = if bytes[i] == b'q' { b'z' } else { b'q' };
            let other = String::from_utf8(bytes).unwrap_or_default();
            prop_assume!(fold(&other) != fold(&name));
            prop_assert!(!Controlled::new([name.as_str()]).covers(&other));
        }
    }
}
