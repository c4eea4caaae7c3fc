//! Routes: matching and path hygiene.

use super::*;

const SEGMENTS: &[&str] = &[
    "bots",
    "messages",
    "botconnector",
    "b-1",
    "*",
    ".",
    "..",
    "",
    "%2e",
    "%2E%2e",
    "%2F",
    "%5c",
    "%25",
    "%00",
    "%41",
    "%zz",
    "%2",
    ";x",
    "a\\b",
    "é",
    "a b",
    "x?q=../..",
    "y#frag",
    "~a",
];

fn raw_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(select(SEGMENTS), 0..5),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(segs, abs)| format!("{}{}", if abs { "/" } else { "" }, segs.join("/")))
}

/// The documented cleanliness rule, before the query: absolute, visible ASCII, no `;` or
/// `\`, every `%` two hex digits not encoding `.`, `/`, `\`, `%` or NUL, no empty, `.` or
/// `..` segment.
fn reference_clean(raw: &str) -> Option<&str> {
    let path = &raw[..raw.find(['?', '#']).unwrap_or(raw.len())];
    if !path.starts_with('/') {
        return None;
    }
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            if [b'.', b'/', b'\\', b'%', 0].contains(&u8::from_str_radix(h, 16).ok()?) {
                return None;
            }
            i += 3;
            continue;
        }
        if b[i] == b';' || b[i] == b'\\' || !(0x21..=0x7e).contains(&b[i]) {
            return None;
        }
        i += 1;
    }
    if path != "/"
        && path[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    Some(path)
}

/// A configured route: method, path; accepted exactly when valid.
fn reference_route_ok(method: &str, path: &str) -> bool {
    let method_ok = (1..=16).contains(&method.len())
        && method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-');
    let literal = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()+,=:@".contains(&c))
    };
    let path_ok = path == "/"
        || (path.starts_with('/')
            && !path.ends_with('/')
            && path[1..]
                .split('/')
                .all(|s| s == "*" || (!s.is_empty() && s != "." && s != ".." && literal(s))));
    method_ok && path_ok
}

fn reference_matches(pattern: &str, path: &str) -> bool {
    let segs = |p: &str| -> Vec<String> {
        if p == "/" {
            Vec::new()
        } else {
            p[1..].split('/').map(str::to_owned).collect()
        }
    };
    let (pat, got) = (segs(pattern), segs(path));
    pat.len() == got.len()
        && pat
            .iter()
            .zip(&got)
            .all(|(p, g)| (p == "*" && !g.is_empty()) || p == g)
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Request paths made of tricky segments: clean exactly when the reference says so; then
    /// the route table answers as a segment-by-segment match would.
    #[test]
    fn route_paths_are_clean_and_matched_as_the_reference_says(
        raw in raw_path(),
        method in select(&["GET", "POST", "PUT", "HEAD"][..]),
        base in select(&["", "/botconnector", "/bots"][..]),
        extra in prop::collection::vec((select(&["GET", "POST", "get", "DELETE"][..]), raw_path()), 0..3),
    ) {
        let clean = clean_path(&raw);
        prop_assert_eq!(clean.ok(), reference_clean(&raw), "{:?}", raw);
        let mut list: Vec<Route> = routes::DIGITAL_BOT_CONNECTOR_V2
            .iter()
            .map(|(m, p)| Route::parse(m, &format!("{base}{p}")).unwrap())
            .collect();
        for (m, p) in &extra {
            let parsed = Route::parse(m, p);
            prop_assert_eq!(parsed.is_ok(), reference_route_ok(m, p), "{} {}", m, p);
            if let Ok(r) = parsed {
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        let Ok(path) = clean else { return Ok(()) };
        let table = Routes::new(list.clone(), None);
        let matching: Vec<&Route> = list.iter().filter(|r| reference_matches(&r.path, path)).collect();
        match table.find(method, path) {
            RouteMatch::Allowed(r) => {
                prop_assert_eq!(r.method.as_str(), method);
                // The first matching route with this method, in configured order.
                let first = matching.iter().find(|m| m.method == method);
                prop_assert_eq!(Some(&r), first, "{} allowed {}", r, path);
            }
            RouteMatch::WrongMethod(allow) => {
                prop_assert!(!matching.is_empty() && matching.iter().all(|r| r.method != method));
                let mut want: Vec<&str> = Vec::new();
                for r in &matching {
                    if !want.contains(&r.method.as_str()) {
                        want.push(&r.method);
                    }
                }
                prop_assert_eq!(allow, want.join(", "));
            }
            RouteMatch::NotFound => prop_assert!(matching.is_empty(), "{} matches {:?}", path, matching),
        }
    }

    /// Large tables (up to 64 routes, the most a config takes) drawn from few segments, so
    /// routes overlap, share prefixes and mix literals with `*`: the compiled table answers
    /// exactly as scanning the list in configured order does.
    #[test]
    fn route_table_answers_as_a_scan_in_order(
        table in prop::collection::vec(
            (
                select(&["GET", "POST", "PUT", "DELETE"][..]),
                prop::collection::vec(select(&["v2", "bots", "a", "b", "*"][..]), 0..5),
            ),
            0..64,
        ),
        method in select(&["GET", "POST", "PUT", "HEAD"][..]),
        segments in prop::collection::vec(select(&["v2", "bots", "a", "b", "c"][..]), 0..6),
    ) {
        let mut list: Vec<Route> = Vec::new();
        for (m, segs) in &table {
            let r = Route::parse(m, &format!("/{}", segs.join("/"))).unwrap();
            if !list.contains(&r) {
                list.push(r);
            }
        }
        let path = format!("/{}", segments.join("/"));
        let matching: Vec<&Route> = list.iter().filter(|r| reference_matches(&r.path, &path)).collect();
        let mut allow: Vec<&str> = Vec::new();
        for r in &matching {
            if !allow.contains(&r.method.as_str()) {
                allow.push(&r.method);
            }
        }
        let want = match matching.iter().find(|r| r.method == method) {
            Some(r) => RouteMatch::Allowed(r),
            None if allow.is_empty() => RouteMatch::NotFound,
            None => RouteMatch::WrongMethod(allow.join(", ")),
        };
        let compiled = Routes::new(list.clone(), None);
        prop_assert_eq!(compiled.find(method, &path), want);
    }

    /// Any text as a path, route or media type: never panics.
    #[test]
    fn route_parsers_never_panic(a in "\\PC{0,40}", b in "[/a-z*.%;\\\\?#2eE5cC0 ]{0,24}") {
        for s in [&a, &b] {
            if let Ok(p) = clean_path(s) {
                prop_assert_eq!(Some(p), reference_clean(s));
            }
            prop_assert_eq!(Route::parse("GET", s).is_ok(), reference_route_ok("GET", s), "{:?}", s);
            let _ = routes::check_literal_path(s);
            let _ = routes::is_json_media_type(s);
        }
    }
}
