//! Running the binary and scratch files, shared by every command's tests.

use bcsp_guard::policy::keys::SecretHash;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

pub(crate) fn cli(args: &[&str]) -> Run {
    cli_with_stdin(args, None)
}

pub(crate) fn cli_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bcsp-guard"))
        .args(args)
        .env_remove("OM_WEBHOOK_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bcsp-guard");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A file in a fresh temp dir, removed with the dir when the test passes.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!(
            "bcsp-guard-cli-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    pub(crate) fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub(crate) const SECRET: &str = "cli-suite-secret-0b9e7d";

pub(crate) fn sha256_hex(s: &str) -> String {
    SecretHash::of(s.as_bytes()).to_hex()
}

/// `bcsp-guard check` on an Envoy YAML written to a scratch file.
pub(crate) fn check_envoy_yaml(yaml: &str) -> Run {
    let dir = Dir::new("check-envoy");
    let file = dir.file("envoy.yaml", yaml);
    cli(&["check", &file])
}
