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

/// The distinct folded names a policy strips, built once at configuration time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controlled(Vec<String>);

impl Controlled {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Controlled {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            let f = fold(n);
            if !out.contains(&f) {
                out.push(f);
            }
        }
        Controlled(out)
    }

    /// Whether a request header of this name (any spelling) is the filter's to remove.
    #[inline]
    pub fn covers(&self, name: &str) -> bool {
        self.0.iter().any(|f| same_variable(name, f))
    }

    /// The folded names, for the startup summary and tests.
    pub fn names(&self) -> &[String] {
        &self.0
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
