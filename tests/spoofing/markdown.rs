//! The matrix in docs/SECURITY.md: generated from the rows, compared with the file.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::*;
use crate::model::Want::*;
use crate::model::*;

pub(crate) fn show_want(w: Want) -> String {
    let list = |set: &[u16]| {
        set.iter()
            .map(|s| match s {
                0 => "reset".to_string(),
                s => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match w {
        Pass => "200".into(),
        Deny(s) => s.to_string(),
        Refused(set) => format!("{} (Envoy)", list(set)),
        Cut(s) => format!("{s}, upstream reset"),
    }
}

/// What the upstream must see on one protocol (None: the protocol has no form of the row).
pub(crate) fn leg_up(row: &Row, leg: Leg) -> Option<String> {
    let Leg::Run(_, want) = leg else {
        return None;
    };
    Some(match want {
        Cut(_) => "the headers and at most the limit, then a reset; never the whole body".into(),
        Pass if row.up.is_empty() => "the request".into(),
        Pass => row
            .up
            .iter()
            .map(|u| match u {
                Up::Target(t) => format!("path `{t}`"),
                Up::KeyId(id) => format!("key id `{id}`"),
                Up::NoKeyId => "no key id".into(),
                Up::Header(n, v) => format!("`{n}: {v}`"),
                Up::Absent(n) => format!("no `{n}`"),
                Up::OurToken(h) => format!("only our token in `{h}`"),
                Up::XffLast(ip) => format!("XFF ending `{ip}`"),
                Up::BodyLen(n) => format!("the {n}-byte body"),
                Up::Trailer(n, v) => format!("trailer `{n}: {v}`"),
                Up::NoTrailer(n) => format!("no trailer `{n}`"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "nothing".into(),
    })
}

pub(crate) fn show_up(row: &Row) -> String {
    match (leg_up(row, row.h1), leg_up(row, row.h2)) {
        (Some(a), Some(b)) if a != b => format!("HTTP/1.1: {a}; HTTP/2: {b}"),
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => "—".into(),
    }
}

pub(crate) fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

pub(crate) fn matrix_markdown(rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{MARK_START}");
    let _ = writeln!(
        md,
        "\n{} rows. Configurations (one Envoy each, shared by its rows; all with \
         `use_remote_address: true`, `normalize_path`, `merge_slashes` and \
         `path_with_escaped_slashes_action: REJECT_REQUEST` unless said):\n\n| | configuration |\n|---|---|",
        rows.len()
    );
    for c in CFGS {
        let _ = writeln!(md, "| {} | {} |", c.letter(), c.describe());
    }
    let mut findings: Vec<&str> = Vec::new();
    for f in rows.iter().filter_map(|r| r.finding) {
        if !findings.contains(&f) {
            findings.push(f);
        }
    }
    if !findings.is_empty() {
        let _ = writeln!(
            md,
            "\n**Open findings.** The rows marked ⚠ assert the safe outcome, which bcsp-guard does not \
             give yet, so the suite fails on them until they are fixed:\n"
        );
        for (i, f) in findings.iter().enumerate() {
            let _ = writeln!(md, "- ⚠{}: {f}.", i + 1);
        }
    }
    let mut last = None;
    for r in rows {
        if last != Some(r.group) {
            last = Some(r.group);
            let _ = write!(
                md,
                "\n**{}** ({}).{}\n\n| attack | HTTP/1.1 | HTTP/2 | upstream sees |\n|---|---|---|---|\n",
                r.group.title(),
                r.group.cfg().letter(),
                r.group.remark()
            );
        }
        let cell = |l: Leg| match l {
            Leg::Run(Via::Frames, w) => format!("{} †", show_want(w)),
            Leg::Run(_, w) => show_want(w),
            Leg::None(why) => format!("— ({why})"),
        };
        let (h1, h2) = (cell(r.h1), cell(r.h2));
        let mut name = r.name.clone();
        if let Some(f) = r.finding {
            let n = findings.iter().position(|x| *x == f).unwrap_or(0) + 1;
            name = format!("⚠{n} {name}");
        }
        if !r.note.is_empty() {
            name = format!("{name} — {}", r.note);
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            escape_cell(&name),
            escape_cell(&h1),
            escape_cell(&h2),
            escape_cell(&show_up(r))
        );
    }
    let _ = writeln!(md, "\n{MARK_END}");
    md
}

pub(crate) fn readme_matrix() -> Option<String> {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/SECURITY.md"))
            .ok()?;
    let start = readme.find(MARK_START)?;
    let end = readme[start..].find(MARK_END)? + start + MARK_END.len();
    Some(format!("{}\n", &readme[start..end]))
}
