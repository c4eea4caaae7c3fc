//! Which BCSP endpoints an authenticated caller may reach, and the path hygiene that makes the
//! match trustworthy: a path that a normaliser could read two ways never matches anything.

use std::fmt;

/// The one preset: Genesys Digital Bot Connector v2.
pub const PRESET_DIGITAL_BOT_CONNECTOR_V2: &str = "digital-bot-connector-v2";

/// The endpoints of [`PRESET_DIGITAL_BOT_CONNECTOR_V2`], relative to `base_path`.
pub const DIGITAL_BOT_CONNECTOR_V2: &[(&str, &str)] =
    &[("GET", "/bots"), ("GET", "/bots/*"), ("POST", "/messages")];

/// Why a request path can never match a route or a webhook prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unclean {
    NotAbsolute,
    EmptySegment,
    DotSegment,
    EncodedSeparatorOrDot,
    BadPercentEncoding,
    Semicolon,
    Backslash,
    NotVisibleAscii,
}

impl Unclean {
    pub fn as_str(self) -> &'static str {
        match self {
            Unclean::NotAbsolute => "path is not absolute",
            Unclean::EmptySegment => "path has an empty segment (//)",
            Unclean::DotSegment => "path has a . or .. segment",
            Unclean::EncodedSeparatorOrDot => "path has an encoded /, \\, . or %",
            Unclean::BadPercentEncoding => "path has a malformed %-escape",
            Unclean::Semicolon => "path has a ; (path parameter)",
            Unclean::Backslash => "path has a backslash",
            Unclean::NotVisibleAscii => "path has a control, space or non-ASCII byte",
        }
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The path of a `:path` value without its query, when it is in the one form that routes
/// and webhook prefixes are matched against. Envoy with `normalize_path` and `merge_slashes`
/// already delivers this form; the checks here hold even when it does not.
pub fn clean_path(raw: &str) -> Result<&str, Unclean> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Unclean::NotAbsolute);
    }
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b';' => return Err(Unclean::Semicolon),
            b'\\' => return Err(Unclean::Backslash),
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(Unclean::BadPercentEncoding);
                };
                // `.`, `/`, `\` and `%` itself (double encoding); NUL too.
                if matches!((h << 4) | l, b'.' | b'/' | b'\\' | b'%' | 0) {
                    return Err(Unclean::EncodedSeparatorOrDot);
                }
                i += 3;
                continue;
            }
            0x21..=0x7e => {}
            _ => return Err(Unclean::NotVisibleAscii),
        }
        i += 1;
    }
    if path == "/" {
        return Ok(path);
    }
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err(Unclean::EmptySegment),
            "." | ".." => return Err(Unclean::DotSegment),
            _ => {}
        }
    }
    Ok(path)
}

/// Whether `prefix` (a clean path) covers the clean `path`: equal, or followed by `/`.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Any,
}

/// One admitted `method path` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// As configured (after `base_path`), for logs and `explain`.
    pub path: String,
    segments: Vec<Segment>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

fn is_literal_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()+,=:@".contains(&c)
}

impl Route {
    /// `method` must be an upper-case token; `path` a clean absolute path whose segments are
    /// literals or `*`.
    pub fn parse(method: &str, path: &str) -> Result<Route, RouteError> {
        let method_ok = (1..=16).contains(&method.len())
            && method.bytes().all(|c| c.is_ascii_uppercase() || c == b'-');
        if !method_ok {
            return Err(RouteError::Method);
        }
        Ok(Route {
            method: method.to_owned(),
            path: path.to_owned(),
            segments: parse_pattern(path, true)?,
        })
    }

    #[cfg(test)]
    fn matches_path(&self, path: &str) -> bool {
        let mut parts = path.split('/').skip(1);
        if path == "/" {
            return self.segments.is_empty();
        }
        for seg in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            match seg {
                Segment::Any => {
                    if part.is_empty() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if l != part {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    Method,
    NotAbsolute,
    TrailingSlash,
    EmptySegment,
    DotSegment,
    BadCharacter,
    Wildcard,
}

impl RouteError {
    pub fn message(self) -> &'static str {
        match self {
            RouteError::Method => "must be an upper-case HTTP method such as GET",
            RouteError::NotAbsolute => "must start with /",
            RouteError::TrailingSlash => "must not end with /",
            RouteError::EmptySegment => "must not contain //",
            RouteError::DotSegment => "must not contain . or .. segments",
            RouteError::BadCharacter => {
                "segments may use only A-Z a-z 0-9 - . _ ~ ! $ & ' ( ) + , = : @ (no %, ; or \\)"
            }
            RouteError::Wildcard => "`*` must be a whole segment",
        }
    }
}

/// A configured literal path (`base_path`, a webhook prefix): same rules as a route, no `*`.
pub fn check_literal_path(path: &str) -> Result<(), RouteError> {
    parse_pattern(path, false).map(|_| ())
}

/// Segments of a configured path. `/` alone is zero segments; `wildcards` says whether `*`
/// segments are allowed.
fn parse_pattern(path: &str, wildcards: bool) -> Result<Vec<Segment>, RouteError> {
    if !path.starts_with('/') {
        return Err(RouteError::NotAbsolute);
    }
    if path == "/" {
        return Ok(Vec::new());
    }
    if path.ends_with('/') {
        return Err(RouteError::TrailingSlash);
    }
    path.split('/')
        .skip(1)
        .map(|s| match s {
            "" => Err(RouteError::EmptySegment),
            "." | ".." => Err(RouteError::DotSegment),
            "*" if wildcards => Ok(Segment::Any),
            s if s.contains('*') => Err(RouteError::Wildcard),
            s if s.bytes().all(is_literal_byte) => Ok(Segment::Literal(s.to_owned())),
            _ => Err(RouteError::BadCharacter),
        })
        .collect()
}

/// The configured route list, with a segment trie built once so that a request visits only
/// the routes its path could match (a table of 64 routes under one base path would otherwise
/// be compared route by route).
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
    /// The preset's name, when the list came from one (for the startup summary).
    pub preset: Option<String>,
    /// `nodes[0]` is the root (zero segments); empty when there are no routes.
    nodes: Vec<Node>,
}

/// One position in the segment trie.
#[derive(Clone, Debug, Default)]
struct Node {
    /// Literal next segments, sorted by text, with the node each leads to.
    literal: Vec<(String, usize)>,
    /// The node a `*` segment leads to.
    any: Option<usize>,
    /// Routes whose pattern ends here, by their place in the configured list (ascending).
    ends: Vec<usize>,
}

impl Node {
    fn child(&self, segment: &str) -> Option<usize> {
        self.literal
            .binary_search_by(|(text, _)| text.as_str().cmp(segment))
            .ok()
            .and_then(|i| self.literal.get(i))
            .map(|(_, n)| *n)
    }
}

fn build_trie(routes: &[Route]) -> Vec<Node> {
    if routes.is_empty() {
        return Vec::new();
    }
    let mut nodes = vec![Node::default()];
    for (index, route) in routes.iter().enumerate() {
        let mut at = 0;
        for seg in &route.segments {
            let existing = match seg {
                Segment::Any => nodes.get(at).and_then(|n| n.any),
                Segment::Literal(l) => nodes.get(at).and_then(|n| n.child(l)),
            };
            at = match existing {
                Some(next) => next,
                None => {
                    let next = nodes.len();
                    nodes.push(Node::default());
                    if let Some(node) = nodes.get_mut(at) {
                        match seg {
                            Segment::Any => node.any = Some(next),
                            Segment::Literal(l) => {
                                let pos = node
                                    .literal
                                    .partition_point(|(text, _)| text.as_str() < l.as_str());
                                node.literal.insert(pos, (l.clone(), next));
                            }
                        }
                    }
                    next
                }
            };
        }
        if let Some(node) = nodes.get_mut(at) {
            node.ends.push(index);
        }
    }
    nodes
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'r> {
    Allowed(&'r Route),
    /// The path is known, the method is not: the methods it does take, for `allow`.
    WrongMethod(String),
    NotFound,
}

/// The answer when no route with the request's method matched: 405 with the methods of the
/// routes whose path did (each once, in configured order), else 404.
fn refusal<'r>(matching: impl Iterator<Item = &'r Route>) -> RouteMatch<'r> {
    let mut allow: Vec<&str> = Vec::new();
    for r in matching {
        if !allow.contains(&r.method.as_str()) {
            allow.push(&r.method);
        }
    }
    if allow.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::WrongMethod(allow.join(", "))
    }
}

impl Routes {
    pub fn new(routes: Vec<Route>, preset: Option<String>) -> Routes {
        let nodes = build_trie(&routes);
        Routes {
            routes,
            preset,
            nodes,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// `path` must already be clean (see [`clean_path`]). The answer is the one a scan of the
    /// list in configured order would give: the first matching route with this method, else
    /// the methods of the matching routes in that order.
    pub fn find(&self, method: &str, path: &str) -> RouteMatch<'_> {
        // Segments as `Route::matches_path` reads them: none for `/`, else what follows the
        // first `/`, split at every `/`.
        let segments = if path == "/" {
            None
        } else {
            path.split_once('/').map(|(_, rest)| rest)
        };
        let mut first: Option<usize> = None;
        self.walk(0, segments, &mut |i| {
            let same = self.routes.get(i).is_some_and(|r| r.method == method);
            if same && first.is_none_or(|f| i < f) {
                first = Some(i);
            }
        });
        if let Some(r) = first.and_then(|i| self.routes.get(i)) {
            return RouteMatch::Allowed(r);
        }
        let mut matching = Vec::new();
        self.walk(0, segments, &mut |i| matching.push(i));
        matching.sort_unstable();
        refusal(matching.iter().filter_map(|&i| self.routes.get(i)))
    }

    /// Calls `found` with every route (by index) whose pattern matches the `/`-separated
    /// `rest` from `node` on. Recursion only follows existing trie nodes, so its depth is at
    /// most the longest route's; `*` never takes an empty segment.
    fn walk(&self, node: usize, rest: Option<&str>, found: &mut dyn FnMut(usize)) {
        let Some(n) = self.nodes.get(node) else {
            return;
        };
        let Some(rest) = rest else {
            n.ends.iter().for_each(|&i| found(i));
            return;
        };
        let (segment, tail) = match rest.split_once('/') {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        if let Some(next) = n.child(segment) {
            self.walk(next, tail, found);
        }
        if let (Some(next), false) = (n.any, segment.is_empty()) {
            self.walk(next, tail, found);
        }
    }

    /// The plain scan the trie replaces; kept to check the trie against.
    #[cfg(test)]
    fn find_by_scan(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let matching = || self.routes.iter().filter(|r| r.matches_path(path));
        match matching().find(|r| r.method == method) {
            Some(r) => RouteMatch::Allowed(r),
            None => refusal(matching()),
        }
    }

    /// Whether some route could match a path under `prefix` (configs refuse such overlaps).
    pub fn overlaps_prefix(&self, prefix: &str) -> Option<&Route> {
        let Ok(prefix_segments) = parse_pattern(prefix, false) else {
            return None;
        };
        self.routes.iter().find(|r| {
            r.segments.len() >= prefix_segments.len()
                && r.segments
                    .iter()
                    .zip(&prefix_segments)
                    .all(|(a, b)| matches!(a, Segment::Any) || a == b)
        })
    }
}

/// Whether a `content-type` value is JSON: `application/json` or `application/<x>+json`,
/// parameters allowed, case-insensitive.
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some("json") => true,
        Some(sub) => sub.len() > 5 && sub.ends_with("+json") && !sub.contains(['/', ' ']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(base: &str) -> Routes {
        Routes::new(
            DIGITAL_BOT_CONNECTOR_V2
                .iter()
                .map(|(m, p)| Route::parse(m, &format!("{base}{p}")).unwrap())
                .collect(),
            Some(PRESET_DIGITAL_BOT_CONNECTOR_V2.into()),
        )
    }

    fn verdict(routes: &Routes, method: &str, raw: &str) -> String {
        match clean_path(raw) {
            Err(u) => format!("unclean: {}", u.as_str()),
            Ok(p) => match routes.find(method, p) {
                RouteMatch::Allowed(r) => format!("allowed {r}"),
                RouteMatch::WrongMethod(a) => format!("405 allow {a}"),
                RouteMatch::NotFound => "404".into(),
            },
        }
    }

    #[test]
    fn preset_admits_exactly_the_three_endpoints() {
        let r = preset("/botconnector");
        let cases = [
            (
                "GET",
                "/botconnector/bots",
                "allowed GET /botconnector/bots",
            ),
            (
                "GET",
                "/botconnector/bots?x=1",
                "allowed GET /botconnector/bots",
            ),
            (
                "GET",
                "/botconnector/bots/b-1",
                "allowed GET /botconnector/bots/*",
            ),
            (
                "POST",
                "/botconnector/messages",
                "allowed POST /botconnector/messages",
            ),
            ("POST", "/botconnector/bots", "405 allow GET"),
            ("HEAD", "/botconnector/bots/b-1", "405 allow GET"),
            ("GET", "/botconnector/messages", "405 allow POST"),
            ("GET", "/botconnector/bots/b-1/x", "404"),
            (
                "GET",
                "/botconnector/bots/",
                "unclean: path has an empty segment (//)",
            ),
            ("GET", "/botconnector", "404"),
            (
                "GET",
                "/botconnector/",
                "unclean: path has an empty segment (//)",
            ),
            ("GET", "/bots", "404"),
            ("GET", "/", "404"),
            ("GET", "/BotConnector/bots", "404"),
            ("GET", "/botconnector/botsx", "404"),
        ];
        for (m, p, want) in cases {
            assert_eq!(verdict(&r, m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn every_path_trick_is_unclean() {
        let cases = [
            ("/botconnector/bots/../admin", Unclean::DotSegment),
            ("/botconnector/./bots", Unclean::DotSegment),
            (
                "/botconnector/bots/%2e%2e/admin",
                Unclean::EncodedSeparatorOrDot,
            ),
            (
                "/botconnector/bots/%2E%2E/admin",
                Unclean::EncodedSeparatorOrDot,
            ),
            (
                "/botconnector/bots/.%2e/admin",
                Unclean::EncodedSeparatorOrDot,
            ),
            ("/botconnector//bots", Unclean::EmptySegment),
            ("//botconnector/bots", Unclean::EmptySegment),
            ("/botconnector/bots;x=1", Unclean::Semicolon),
            ("/botconnector;/bots", Unclean::Semicolon),
            ("/botconnector/bots%2fb1", Unclean::EncodedSeparatorOrDot),
            ("/botconnector/bots%2Fb1", Unclean::EncodedSeparatorOrDot),
            ("/botconnector/bots%5cb1", Unclean::EncodedSeparatorOrDot),
            ("/botconnector/bots%252e", Unclean::EncodedSeparatorOrDot),
            ("/botconnector/bots%00", Unclean::EncodedSeparatorOrDot),
            ("/botconnector/bots%2", Unclean::BadPercentEncoding),
            ("/botconnector/bots%zz", Unclean::BadPercentEncoding),
            ("/botconnector\\bots", Unclean::Backslash),
            ("/botconnector/bots\u{e9}", Unclean::NotVisibleAscii),
            ("/botconnector/bo ts", Unclean::NotVisibleAscii),
            ("botconnector/bots", Unclean::NotAbsolute),
            ("*", Unclean::NotAbsolute),
            ("", Unclean::NotAbsolute),
        ];
        for (p, want) in cases {
            assert_eq!(clean_path(p), Err(want), "{p}");
        }
        // Harmless escapes stay, and the query is not part of the path.
        assert_eq!(
            clean_path("/botconnector/bots/b%201?a=../..;//"),
            Ok("/botconnector/bots/b%201")
        );
    }

    #[test]
    fn configured_paths_are_validated() {
        assert!(Route::parse("GET", "/a/*/b").is_ok());
        assert!(Route::parse("GET", "/").is_ok());
        let cases = [
            ("get", "/a", RouteError::Method),
            ("GET", "a", RouteError::NotAbsolute),
            ("GET", "/a/", RouteError::TrailingSlash),
            ("GET", "/a//b", RouteError::EmptySegment),
            ("GET", "/a/../b", RouteError::DotSegment),
            ("GET", "/a/b*", RouteError::Wildcard),
            ("GET", "/a/%2e", RouteError::BadCharacter),
            ("GET", "/a;b", RouteError::BadCharacter),
        ];
        for (m, p, want) in cases {
            assert_eq!(Route::parse(m, p), Err(want), "{m} {p}");
        }
    }

    #[test]
    fn prefixes_cover_themselves_and_their_subtree_only() {
        assert!(under_prefix("/om", "/om"));
        assert!(under_prefix("/om/x", "/om"));
        assert!(!under_prefix("/omx", "/om"));
        assert!(!under_prefix("/o", "/om"));
        let r = preset("/botconnector");
        assert!(r.overlaps_prefix("/botconnector").is_some());
        assert!(r.overlaps_prefix("/botconnector/bots/x").is_some());
        assert!(r.overlaps_prefix("/openmessaging").is_none());
        assert!(r.overlaps_prefix("/botconnector/other").is_none());
    }

    #[test]
    fn the_trie_keeps_configured_order_among_overlapping_routes() {
        let list = [
            ("PUT", "/a/*/c"),
            ("GET", "/a/b/*"),
            ("POST", "/*/b/c"),
            ("GET", "/a/b/c"),
            ("DELETE", "/a/b"),
            ("GET", "/"),
        ];
        let r = Routes::new(
            list.iter()
                .map(|(m, p)| Route::parse(m, p).unwrap())
                .collect(),
            None,
        );
        assert_eq!(verdict(&r, "GET", "/a/b/c"), "allowed GET /a/b/*");
        assert_eq!(verdict(&r, "HEAD", "/a/b/c"), "405 allow PUT, GET, POST");
        assert_eq!(verdict(&r, "GET", "/"), "allowed GET /");
        assert_eq!(verdict(&r, "GET", "/a/b/c/d"), "404");
        assert_eq!(verdict(&Routes::default(), "GET", "/"), "404");
    }

    mod trie_against_scan {
        use super::*;
        use proptest::prelude::*;

        const WORDS: &[&str] = &["a", "b", "bots", "v2", "*", "messages", "x-1"];

        fn pattern() -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(WORDS), 0..5)
                .prop_map(|s| format!("/{}", s.join("/")))
        }

        fn request_path() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                proptest::sample::select(&["a", "b", "bots", "v2", "messages", "x-1", "*", ""][..]),
                0..7,
            )
            .prop_map(|s| format!("/{}", s.join("/")))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1024))]

            /// Random tables (up to 64 routes, overlapping freely) and paths, clean or not:
            /// the trie answers exactly as scanning the list in order does.
            #[test]
            fn trie_answers_as_the_scan_does(
                table in proptest::collection::vec(
                    (proptest::sample::select(&["GET", "POST", "PUT"][..]), pattern()),
                    0..64,
                ),
                method in proptest::sample::select(&["GET", "POST", "PUT", "HEAD"][..]),
                path in request_path(),
            ) {
                let list: Vec<Route> = table
                    .iter()
                    .filter_map(|(m, p)| Route::parse(m, p).ok())
                    .collect();
                let routes = Routes::new(list, None);
                prop_assert_eq!(routes.find(method, &path), routes.find_by_scan(method, &path));
            }
        }
    }

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.genesys+json",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/json",
            "application/jsonx",
            "application/+json",
            "text/plain",
            "application/x-www-form-urlencoded",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }
}
