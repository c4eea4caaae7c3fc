//! The `bcsp-guard` binary, run as an operator would: every subcommand, good and bad input.
//! One module per command; `common` runs the binary and holds scratch files.

mod common;
mod yaml;

mod check;
mod check_dynamic_module;
mod check_routes;
mod check_webhooks;
mod explain;
mod explain_audit;
mod ipranges;
mod keygen;

use crate::common::*;

#[test]
fn unknown_commands_and_help() {
    let r = cli(&[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("USAGE"), "{}", r.stderr);
    let r = cli(&["--help"]);
    assert_eq!(r.code, 0);
    for sub in ["keygen", "check", "ipranges", "explain"] {
        assert!(
            r.stdout.contains(&format!("bcsp-guard {sub}")),
            "{}",
            r.stdout
        );
    }
    let r = cli(&["frobnicate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown command `frobnicate`"),
        "{}",
        r.stderr
    );
}
