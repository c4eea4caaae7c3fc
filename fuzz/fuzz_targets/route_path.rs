//! Request paths against the route allowlist: `clean_path` never panics and accepts exactly
//! the paths an independent check calls clean; a configured route (any text) never panics,
//! and `find` agrees with a segment-by-segment reference match.
#![no_main]

use bcsp_guard::policy::routes::{
    check_literal_path, clean_path, is_json_media_type, under_prefix, Route, RouteMatch, Routes,
};
use bcsp_guard_fuzz::fields;
use libfuzzer_sys::fuzz_target;

fn reference_clean(raw: &str) -> Option<&str> {
    let path = &raw[..raw.find(['?', '#']).unwrap_or(raw.len())];
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                let s = std::str::from_utf8(h).ok()?;
                if !h.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let v = u8::from_str_radix(s, 16).ok()?;
                if [b'.', b'/', b'\\', b'%', 0].contains(&v) {
                    return None;
                }
                i += 3;
            }
            b';' | b'\\' => return None,
            c if !(0x21..=0x7e).contains(&c) => return None,
            _ => i += 1,
        }
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

/// Pattern segments of a route path (`/` = none), `*` = one non-empty segment.
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

fuzz_target!(|data: &[u8]| {
    let [method, raw, spec] = fields(data, 3)[..] else {
        return;
    };
    let (method, raw, spec) = (
        String::from_utf8_lossy(method),
        String::from_utf8_lossy(raw),
        String::from_utf8_lossy(spec),
    );
    let _ = is_json_media_type(&raw);
    let _ = check_literal_path(&spec);
    let clean = clean_path(&raw);
    assert_eq!(clean.ok(), reference_clean(&raw), "{raw:?}");
    let mut routes = vec![
        Route::parse("GET", "/bots/*").unwrap(),
        Route::parse("POST", "/messages").unwrap(),
    ];
    if let Ok(r) = Route::parse(&method, &spec) {
        assert!(spec.starts_with('/') && (spec == "/" || !spec.ends_with('/')));
        if !routes.contains(&r) {
            routes.push(r);
        }
    }
    let table = Routes::new(routes.clone(), None);
    if check_literal_path(&spec).is_ok() {
        let _ = table.overlaps_prefix(&spec);
    }
    let Ok(path) = clean else { return };
    if check_literal_path(&spec).is_ok() {
        let under = under_prefix(path, &spec);
        let want = path == spec
            || (path.starts_with(&*spec) && path.as_bytes().get(spec.len()) == Some(&b'/'));
        assert_eq!(under, want, "{path} under {spec}");
    }
    let matching: Vec<&Route> = routes
        .iter()
        .filter(|r| reference_matches(&r.path, path))
        .collect();
    match table.find(&method, path) {
        RouteMatch::Allowed(r) => {
            assert_eq!(r.method, method);
            assert!(reference_matches(&r.path, path), "{r} allowed {path}");
        }
        RouteMatch::WrongMethod(allow) => {
            assert!(!matching.is_empty() && matching.iter().all(|r| r.method != method));
            for r in &matching {
                assert!(allow.split(", ").any(|m| m == r.method));
            }
        }
        RouteMatch::NotFound => assert!(matching.is_empty(), "{path} matches {matching:?}"),
    }
});
