//! `bcsp-guard ipranges`: allowlist snippets from Genesys Cloud's published ranges.

use crate::common::*;
use serde_json::{json, Value};

const GENESYS: &str = r#"{"entities":[
  {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-east-1","direction":"outbound"},
  {"cidr":"52.5.17.0/24","service":"bot-connector","region":"us-east-1"},
  {"cidr":"3.120.0.0/14","service":"bot-connector","region":"eu-central-1"},
  {"cidr":"99.0.0.0/8","service":"web-services","region":"us-east-1"}]}"#;

#[test]
fn ipranges_makes_a_snippet_of_the_selected_entries_that_the_filter_accepts() {
    let dir = Dir::new("ipranges");
    let saved = dir.file("ipranges.json", GENESYS);
    let r = cli(&["ipranges", &saved, "--region", "us-east-1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let snippet: Value = serde_json::from_str(&r.stdout).unwrap();
    let ranges = &snippet["genesys_ip_ranges"];
    let cidrs: Vec<&str> = ranges["document"]["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cidr"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["34.200.73.250/32", "52.5.17.0/24"]);
    assert_eq!(
        ranges["document"]["entities"][0]["direction"], "outbound",
        "entries verbatim"
    );
    assert_eq!(ranges["regions"], json!(["us-east-1"]));
    assert_eq!(ranges["services"], json!(["bot-connector"]));
    assert!(r.stderr.contains("selected 2 of 4 entries"), "{}", r.stderr);

    // Merged into a configuration, the filter accepts it.
    let mut cfg = json!({"keys": [{"id": "k1", "sha256": sha256_hex(SECRET)}]});
    cfg["genesys_ip_ranges"] = ranges.clone();
    let f = dir.file("cfg.json", &cfg.to_string());
    let c = cli(&["check", &f]);
    assert_eq!(c.code, 0, "{}", c.all());
    assert!(
        c.stdout.contains("2 CIDRs (2 from genesys_ip_ranges"),
        "{}",
        c.stdout
    );

    // Standard input, several regions and services.
    let r = cli_with_stdin(
        &[
            "ipranges",
            "-",
            "--region",
            "us-east-1",
            "--region",
            "eu-central-1",
            "--service",
            "bot-connector",
            "--service",
            "web-services",
        ],
        Some(GENESYS.as_bytes()),
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("selected 4 of 4 entries"), "{}", r.stderr);
}

#[test]
fn ipranges_refuses_bad_input_clearly() {
    let dir = Dir::new("ipranges-bad");
    let saved = dir.file("ipranges.json", GENESYS);
    let junk = dir.file("junk.json", "<html>");
    let wrong_shape = dir.file("shape.json", r#"{"items": []}"#);
    let bad_cidr = dir.file(
        "cidr.json",
        r#"{"entities":[{"cidr":"10.0.0.1/8","service":"bot-connector","region":"r1"}]}"#,
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ipranges", &saved], "--region is required"),
        (
            vec!["ipranges", &saved, "--region", "ap-south-9"],
            "selects no entries for services [bot-connector] in regions [ap-south-9] (Genesys would be locked out); regions the document has for these services: [eu-central-1, us-east-1]",
        ),
        (vec!["ipranges", &junk, "--region", "r1"], "not JSON"),
        (vec!["ipranges", &wrong_shape, "--region", "r1"], "not a Genesys ipranges response"),
        (
            vec!["ipranges", &bad_cidr, "--region", "r1"],
            "document.entities[0].cidr: `10.0.0.1/8`: address has bits set beyond the prefix length",
        ),
        (vec!["ipranges", "--region", "r1"], "is required"),
    ];
    for (args, want) in cases {
        let r = cli(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains(want),
            "{args:?}\n  got: {}\n  want: {want}",
            r.stderr
        );
    }
}
