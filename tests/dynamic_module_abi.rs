//! The dynamic module's hand-written ABI against its documentation and the Envoy it runs in:
//! every callback `hosts/envoy-dynamic/src/abi.rs` declares has a row in the callback table of
//! docs/DYNAMIC_MODULE.md (which names the test that exercises it) and no row names one it does
//! not declare; on Envoy 1.40, every declared callback is a symbol that Envoy exports.

mod harness;

use harness::*;
use std::collections::BTreeSet;
use std::process::Command;

const PREFIX: &str = "envoy_dynamic_module_callback_";

fn repo_file(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Callbacks named in `extern "C"` declarations (`pub fn envoy_dynamic_module_callback_…(`).
fn declared() -> BTreeSet<String> {
    repo_file("hosts/envoy-dynamic/src/abi.rs")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub fn "))
        .filter_map(|l| l.split('(').next())
        .filter_map(|name| name.strip_prefix(PREFIX))
        .map(str::to_string)
        .collect()
}

/// The first column of the callback table: backticked names, where `…_x` reuses the previous
/// name with its last `_part` replaced (`http_filter_scheduler_new`, `…_commit`). Event hooks
/// the module exports (`+ hook on_…`) are not callbacks.
fn documented() -> BTreeSet<String> {
    let doc = repo_file("docs/DYNAMIC_MODULE.md");
    let table = doc
        .split("| callback | used for | covered by |")
        .nth(1)
        .expect("docs/DYNAMIC_MODULE.md: no callback table");
    let mut names = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let first = row.split('|').nth(1).unwrap_or_default();
        let mut previous = String::new();
        for name in first
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| !n.starts_with("on_"))
        {
            let full = match name.strip_prefix("…_") {
                Some(last) => match previous.rsplit_once('_') {
                    Some((stem, _)) => format!("{stem}_{last}"),
                    None => panic!("`{name}` has no name before it in: {row}"),
                },
                None => name.to_string(),
            };
            previous.clone_from(&full);
            names.insert(full);
        }
    }
    names
}

#[test]
fn every_declared_callback_has_a_row_and_every_row_is_declared() {
    let declared = declared();
    let documented = documented();
    assert!(declared.len() >= 20, "abi.rs scan found only {declared:?}");
    let undocumented: Vec<&String> = declared.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/DYNAMIC_MODULE.md's callback table: missing rows for {undocumented:?}; rows for \
         callbacks abi.rs does not declare: {stale:?}"
    );
}

#[test]
fn every_declared_callback_is_exported_by_envoy() {
    if !dynmod_supported() {
        return;
    }
    let envoy = envoy_binary();
    let out = match Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&envoy)
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        _ => {
            eprintln!("skipped: `nm` (binutils) is not available to list Envoy's symbols");
            return;
        }
    };
    let exported: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|s| s.strip_prefix(PREFIX))
        .collect();
    let missing: Vec<String> = declared()
        .into_iter()
        .filter(|d| !exported.contains(d.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} does not export {missing:?}",
        envoy.display()
    );
}
