//! Helpers shared by the deployment-recipe tests: reading repository files, walking deploy/,
//! the connection managers of an Envoy bootstrap, and the shell commands of a document.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

pub fn yaml_text(name: &str, text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

pub fn yaml(rel: &str) -> Value {
    yaml_text(rel, &read(rel))
}

pub fn report(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}

pub fn check(problems: &mut Vec<String>, ok: bool, msg: impl FnOnce() -> String) {
    if !ok {
        problems.push(msg());
    }
}

/// Every file under deploy/ with one of `exts`, as paths relative to the repository root.
pub fn files_under_deploy(exts: &[&str]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    walk(&root().join("deploy"), &mut all);
    let mut out: Vec<String> = all
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            exts.iter().any(|x| name.ends_with(x))
        })
        .map(|p| {
            p.strip_prefix(root())
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// Every Envoy bootstrap under deploy/ (a YAML file with top-level static_resources).
pub fn envoy_configs() -> Vec<String> {
    files_under_deploy(&[".yaml", ".yml"])
        .into_iter()
        .filter(|f| read(f).lines().any(|l| l.starts_with("static_resources:")))
        .collect()
}

/// The connection managers of a bootstrap, with their listener's name.
pub fn hcms(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let listeners = v["static_resources"]["listeners"].as_array().cloned();
    for l in listeners.unwrap_or_default() {
        let name = l["name"].as_str().unwrap_or("?").to_string();
        for chain in l["filter_chains"].as_array().cloned().unwrap_or_default() {
            for f in chain["filters"].as_array().cloned().unwrap_or_default() {
                if f["name"] == "envoy.filters.network.http_connection_manager" {
                    out.push((name.clone(), f["typed_config"].clone()));
                }
            }
        }
    }
    out
}

/// Shell commands of a document: lines of fenced code blocks (or, for a non-Markdown file,
/// every line with a leading `#` removed), with `\` continuations joined.
pub fn commands(name: &str, text: &str) -> Vec<String> {
    let markdown = name.ends_with(".md");
    let mut in_block = false;
    let mut lines = Vec::new();
    for l in text.lines() {
        if markdown && l.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !markdown || in_block {
            lines.push(l.trim_start().trim_start_matches('#').trim().to_string());
        }
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in lines {
        match l.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(&l);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}
