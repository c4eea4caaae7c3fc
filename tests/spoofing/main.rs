//! The spoofing matrix: one table of attacks, every row sent to a real Envoy
//! over HTTP/1.1 (raw bytes through the harness) and over HTTP/2 (h2c, prior knowledge), each
//! asserting what the client saw and what the upstream saw — nothing, or exactly what it should.
//!
//! HTTP/2 goes through the system `curl --http2-prior-knowledge` (the suite fails, it does not
//! skip, when curl or its HTTP2 feature is missing). curl rewrites some attacks before they reach
//! the wire — it lower-cases header names, drops leading whitespace from values, refuses control
//! bytes, strips a `#fragment` and drops connection-specific headers — so those rows are sent as
//! raw HTTP/2 frames instead (a literal-only HPACK encoder in `frames.rs`; marked † in
//! docs/SECURITY.md).
//!
//! One Envoy per configuration, shared by its rows; the configurations run in parallel. A row
//! that may break the Envoy it hits is `isolated`: each protocol gets a fresh one. After every
//! row a valid request must still get 200. A row with a `finding` asserts the safe outcome that
//! bcsp-guard does not give yet: it fails until the finding is fixed, by design.
//!
//! docs/SECURITY.md holds the matrix generated from these rows; the test fails
//! if it drifts, and writes the current one to `target/spoofing-matrix.md`.
//!
//! Layout: `config` (secrets and the Envoy configurations), `model` (the row type and its
//! builders), `rows/` (one module per group of attacks), `transport` and `frames` (putting a row
//! on the wire), `runner` (running and checking), `markdown` (the table in docs/SECURITY.md).

#[path = "../harness/mod.rs"]
mod harness;

mod config;
mod frames;
mod markdown;
mod model;
mod rows;
mod runner;
mod transport;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::*;
use crate::harness::*;
use crate::markdown::*;
use crate::model::*;
use crate::runner::*;
use crate::transport::*;
use metadata_emulator::Emulator;

use crate::rows::rows;

#[test]
fn spoofing_matrix() {
    curl_check();
    let rows = rows();
    let mut names = std::collections::HashSet::new();
    for r in &rows {
        assert!(
            names.insert((r.group, r.name.clone())),
            "duplicate row {:?}",
            r.name
        );
        if let Leg::Run(Via::Curl, _) = r.h2 {
            for (n, v) in &r.req.headers {
                assert!(
                    !v.starts_with([' ', '\t'])
                        && !v.ends_with([' ', '\t'])
                        && !v.bytes().any(|b| b < 0x20 && b != b'\t')
                        && !n.bytes().any(|b| b <= 0x20),
                    "row {:?}: curl would rewrite header {n:?}; send it as frames",
                    r.name
                );
            }
        }
    }
    // Absolute-form rows reach curl through --request-target.
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|mut r| {
            if !r.req.path.starts_with('/')
                && r.req.method != "CONNECT"
                && r.req.h2_target.is_none()
            {
                let p = r.req.path.clone();
                r.req = r.req.target(&p);
            }
            r
        })
        .collect();

    let t0 = Instant::now();
    let emu = Emulator::start("127.0.0.1:0", 3600).expect("metadata emulator");
    let metadata = emu.addr();
    let units: Vec<Option<Cfg>> = CFGS.iter().copied().map(Some).chain([None]).collect();
    let results: BTreeMap<String, (Vec<Outcome>, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = units
            .iter()
            .map(|&unit| {
                let rows = &rows;
                let name = unit.map_or("isolated".to_string(), |c| format!("{c:?}"));
                (name, s.spawn(move || run_unit(unit, metadata, rows)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| (name, h.join().expect("configuration thread panicked")))
            .collect()
    });
    let elapsed = t0.elapsed();

    let mut failures = Vec::new();
    let (mut n1, mut n2) = (0, 0);
    let mut table = String::new();
    for (unit, (outcomes, took)) in &results {
        let _ = writeln!(table, "--- {unit} ({} rows, {took:.1?})", outcomes.len());
        for o in outcomes {
            let cell = |r: &Option<Result<String, String>>| match r {
                None => "—".to_string(),
                Some(Ok(s)) => s.clone(),
                Some(Err(_)) => "FAIL".to_string(),
            };
            let _ = writeln!(
                table,
                "{:<12} {:<10} {:?}: {}",
                cell(&o.h1),
                cell(&o.h2),
                o.group,
                o.name
            );
            for (proto, r) in [("HTTP/1.1", &o.h1), ("HTTP/2", &o.h2)] {
                match r {
                    Some(Err(e)) => failures.push(format!(
                        "{}[{:?}] {} over {proto}: {e}",
                        if o.finding { "OPEN FINDING " } else { "" },
                        o.group,
                        o.name
                    )),
                    Some(Ok(_)) if proto == "HTTP/1.1" => n1 += 1,
                    Some(Ok(_)) => n2 += 1,
                    None => {}
                }
            }
        }
    }
    eprintln!("{table}");
    let h1_rows = rows.iter().filter(|r| matches!(r.h1, Leg::Run(..))).count();
    let h2_rows = rows.iter().filter(|r| matches!(r.h2, Leg::Run(..))).count();
    println!(
        "spoofing matrix: {} rows ({h1_rows} over HTTP/1.1, {h2_rows} over HTTP/2; {n1} + {n2} held) \
         in {elapsed:.1?} on {}",
        rows.len(),
        envoy_binary().display()
    );

    let md = matrix_markdown(&rows);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/spoofing-matrix.md");
    let _ = std::fs::write(&out, &md);
    if readme_matrix().as_deref() != Some(md.as_str()) {
        failures.push(format!(
            "docs/SECURITY.md's matrix (between the spoofing-matrix markers) is not \
             the one these rows generate: paste {}",
            out.display()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) over {} checks ({h1_rows} HTTP/1.1 + {h2_rows} HTTP/2):\n{}",
        failures.len(),
        h1_rows + h2_rows,
        failures.join("\n")
    );
}
