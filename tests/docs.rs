//! The docs' tables and examples against the code: defaults and limits named once in
//! `bcsp_guard::config`, the README's minimal configuration, and every relative link. No Envoy:
//! `make unit` runs it.

use bcsp_guard::config::genesys::DEFAULT_SERVICE;
use bcsp_guard::config::{
    self, Bounds, DEFAULT_KEY_HEADER, DEFAULT_KEY_ID_HEADER, DEFAULT_METADATA_AUTHORITY,
    DEFAULT_METADATA_PATH, EXPIRY_SKEW_S, FETCH_TIMEOUT_MS, LOCKOUT_COOLDOWN_S,
    LOCKOUT_MAX_FAILURES, LOCKOUT_WINDOW_S, MAX_AUDIENCES, MAX_BODY_BYTES, MAX_CIDRS, MAX_KEYS,
    MAX_ROUTES, MAX_TRUSTED_HOPS, MAX_WAIT_MS, MAX_WEBHOOKS, REFRESH_MARGIN_S,
};
use bcsp_guard::policy::webhook::DEFAULT_SIGNATURE_HEADER;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `## section` → (first cell → second cell) of every table row in it whose first cell is a
/// backticked field name.
fn field_tables(md: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in md.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_string();
        } else if line.starts_with("| `") {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            if cells.len() >= 3 {
                let field = cells[0].trim().trim_matches('`').to_string();
                out.entry(section.clone())
                    .or_default()
                    .insert(field, cells[1].trim().to_string());
            }
        }
    }
    out
}

fn range(b: Bounds) -> String {
    format!("{} ({}–{}", b.default, b.min, b.max)
}

#[test]
fn configuration_defaults_and_ranges_are_the_codes() {
    let md = read("docs/CONFIGURATION.md");
    let tables = field_tables(&md);
    let tick = |s: &str| format!("`{s}`");
    let expected: Vec<(&str, &str, String)> = vec![
        ("keys", "keys", format!("required, 1–{MAX_KEYS} entries")),
        ("keys", "keys[].header", tick(DEFAULT_KEY_HEADER)),
        ("keys", "key_id_header", tick(DEFAULT_KEY_ID_HEADER)),
        (
            "client_ip and allow_cidrs",
            "client_ip.trusted_hops",
            format!("required with `x-forwarded-for` (1–{MAX_TRUSTED_HOPS})"),
        ),
        (
            "upstream_token",
            "authority",
            tick(DEFAULT_METADATA_AUTHORITY),
        ),
        ("upstream_token", "path", tick(DEFAULT_METADATA_PATH)),
        (
            "upstream_token",
            "refresh_margin_s",
            range(REFRESH_MARGIN_S),
        ),
        ("upstream_token", "expiry_skew_s", range(EXPIRY_SKEW_S)),
        ("upstream_token", "max_wait_ms", range(MAX_WAIT_MS)),
        (
            "upstream_token",
            "fetch_timeout_ms",
            range(FETCH_TIMEOUT_MS),
        ),
        (
            "genesys_ip_ranges",
            "services",
            format!("`[\"{DEFAULT_SERVICE}\"]`"),
        ),
        (
            "routes and max_body_bytes",
            "max_body_bytes",
            range(MAX_BODY_BYTES),
        ),
        ("webhooks", "header", tick(DEFAULT_SIGNATURE_HEADER)),
        ("lockout", "max_failures", range(LOCKOUT_MAX_FAILURES)),
        ("lockout", "window_s", range(LOCKOUT_WINDOW_S)),
        ("lockout", "cooldown_s", range(LOCKOUT_COOLDOWN_S)),
    ];
    let mut wrong = Vec::new();
    for (section, field, want) in &expected {
        match tables.get(*section).and_then(|t| t.get(*field)) {
            Some(cell) if cell.starts_with(want.as_str()) => {}
            Some(cell) => wrong.push(format!("## {section} `{field}`: `{cell}`, want `{want}…`")),
            None => wrong.push(format!("## {section}: no row for `{field}`")),
        }
    }
    // Limits stated in prose or in a row's meaning.
    for (needle, what) in [
        (format!("up to {MAX_CIDRS} together"), "allow_cidrs limit"),
        (format!("up to {MAX_ROUTES}"), "routes limit"),
        (format!("up to {MAX_WEBHOOKS} entries"), "webhooks limit"),
        (
            format!("up to {MAX_AUDIENCES} distinct audiences"),
            "audiences limit",
        ),
    ] {
        if !md.contains(&needle) {
            wrong.push(format!("{what}: docs/CONFIGURATION.md lacks `{needle}`"));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/CONFIGURATION.md drifted from src/config:\n{}",
        wrong.join("\n")
    );
}

/// The README's minimal configuration is one the filter accepts.
#[test]
fn readme_minimal_configuration_compiles() {
    let readme = read("README.md");
    let start = readme.find("```json\n").expect("README has a JSON block") + "```json\n".len();
    let end = start + readme[start..].find("```").expect("closed JSON block");
    let policy = config::compile(&readme.as_bytes()[start..end]);
    assert!(
        policy.is_ok(),
        "README's minimal configuration: {:?}",
        policy.err()
    );
}

/// The README names the Envoy releases the Makefile pins.
#[test]
fn readme_names_the_pinned_envoy_releases() {
    let makefile = read("Makefile");
    let readme = read("README.md");
    for var in ["ENVOY_VERSION", "ENVOY_OLD_VERSION"] {
        let version = makefile
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(":=")?;
                (k.trim() == var).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("Makefile has no {var}"));
        let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        assert!(
            readme
                .lines()
                .take(40)
                .any(|l| l.contains(&format!("Envoy {minor}"))
                    || l.contains(&format!("and {minor}"))),
            "README's first screen does not name Envoy {minor} ({var} = {version})"
        );
    }
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "deploy", "bench"] {
        collect_md(&root().join(dir), &mut files);
    }
    files
}

fn collect_md(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect_md(&p, out);
        } else if p.extension().is_some_and(|e| e == "md") {
            out.push(p);
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes.
fn anchors(md: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for line in md.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim().to_lowercase();
        let a: String = title
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        out.push(a);
    }
    out
}

/// Every relative link in the README and the docs reaches a file, and a `#anchor` a heading,
/// so moving a section cannot leave a dead link behind.
#[test]
fn relative_links_resolve() {
    let mut dead = Vec::new();
    for file in markdown_files() {
        let md = std::fs::read_to_string(&file).unwrap_or_default();
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut rest = md.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let shown = file
                .strip_prefix(root())
                .unwrap_or(&file)
                .display()
                .to_string();
            if !resolved.exists() {
                dead.push(format!("{shown}: ({target}) — no such file"));
                continue;
            }
            if !anchor.is_empty() && resolved.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    dead.push(format!("{shown}: ({target}) — no such heading"));
                }
            }
        }
    }
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

/// Every metric the filter defines (with every feature on) has a row in docs/OPERATIONS.md's
/// counters table, and every row names a metric the filter defines.
#[test]
fn counters_table_lists_exactly_the_metrics_defined() {
    use bcsp_guard::pipeline::metrics::{Kind, Stats, PREFIX};
    let everything = br#"{
        "keys": [{"id": "k1", "sha256": "0fefc1b27100e636d38ff6bc989040691f4a48220d8bc2183b6bbcfd001524c7",
                  "not_after": "2099-01-01T00:00:00Z"}],
        "allow_cidrs": ["10.0.0.0/8"],
        "upstream_token": {"cluster": "gcp_metadata", "audience": "https://bcsp.example"},
        "routes": {"preset": "digital-bot-connector-v2", "base_path": "/botconnector"},
        "webhooks": [{"path_prefix": "/openmessaging", "secret": "0123456789abcdef0123"}],
        "lockout": {}
    }"#;
    let policy = config::compile(everything).expect("the all-features policy compiles");
    let mut defined = std::collections::BTreeSet::new();
    Stats::define(&policy, |kind, name| {
        let name = name.replace(".k1.", ".<id>.");
        defined.insert(match kind {
            Kind::Counter => name,
            Kind::Gauge => format!("{name} (gauge)"),
        });
        None
    });
    let md = read("docs/OPERATIONS.md");
    let section = md
        .split("\n## ")
        .find(|s| s.starts_with("Counters"))
        .expect("docs/OPERATIONS.md has a Counters section");
    let mut documented = std::collections::BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.trim_matches('|').split(" | ").next().unwrap_or("");
        let gauge = cell.contains("(gauge)");
        // `bcsp_guard.a.b` / `c.d`: the second name shares the prefix.
        for name in cell
            .split('/')
            .map(|n| n.trim().trim_end_matches("(gauge)").trim())
        {
            let name = name.trim_matches('`');
            let full = if name.starts_with(PREFIX) {
                name.to_string()
            } else {
                format!("{PREFIX}{name}")
            };
            documented.insert(if gauge {
                format!("{full} (gauge)")
            } else {
                full
            });
        }
    }
    let missing: Vec<_> = defined.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&defined).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/OPERATIONS.md counters table: undocumented {missing:?}, not defined {stale:?}"
    );
}
