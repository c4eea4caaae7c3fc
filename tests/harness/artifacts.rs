//! The builds under test: where `make wasm` / `make dynmod` put them, and a refusal to run
//! against a missing or stale one.

use std::path::Path;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::manifest_dir;

/// Which build of the filter Envoy loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// `bcsp_guard.wasm` through `envoy.filters.http.wasm` (V8).
    Wasm,
    /// `libbcsp_guard_envoy.so` through `envoy.filters.http.dynamic_modules` (Envoy 1.40).
    DynamicModule,
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Newest of the files cargo says the module was built from (its `.d` dep-info), so editing a
/// test-only file under `src/` does not make the module look stale; the whole of `src/` when
/// there is no dep-info.
fn newest_input(wasm: &Path) -> SystemTime {
    let deps = std::fs::read_to_string(wasm.with_extension("d")).unwrap_or_default();
    let Some((_, inputs)) = deps.lines().next().and_then(|l| l.split_once(": ")) else {
        return newest_mtime(&manifest_dir().join("src"));
    };
    inputs
        .split_whitespace()
        .map(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| SystemTime::now())
        })
        .max()
        .unwrap_or(UNIX_EPOCH)
}

/// The release filter. Never lets a test pass against a missing or stale build.
pub fn wasm_path() -> PathBuf {
    let wasm = manifest_dir().join("target/wasm32-wasip1/release/bcsp_guard.wasm");
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    match built {
        Some(t) if t >= newest_input(&wasm) => wasm,
        _ => panic!(
            "bcsp_guard.wasm is missing/stale: run `make wasm` (or `make test`) [{}]",
            wasm.display()
        ),
    }
}

/// The release dynamic module (`make dynmod`). Never lets a test pass against a missing or
/// stale build.
pub fn dynmod_path() -> PathBuf {
    let so = manifest_dir().join("target/release/libbcsp_guard_envoy.so");
    let built = std::fs::metadata(&so).and_then(|m| m.modified()).ok();
    match built {
        Some(t) if t >= newest_input(&so) => so,
        _ => panic!(
            "libbcsp_guard_envoy.so is missing/stale: run `make dynmod` [{}]",
            so.display()
        ),
    }
}

/// `BCSP_GUARD_ARTIFACT=dynamic-module` runs a Wasm suite against the native build instead
/// (to compare the two builds); unset or `wasm`: the Wasm module.
pub(super) fn default_artifact() -> Artifact {
    match std::env::var("BCSP_GUARD_ARTIFACT").as_deref() {
        Ok("dynamic-module") => Artifact::DynamicModule,
        _ => Artifact::Wasm,
    }
}
