//! `bcsp-guard keygen`: fresh secrets and the key entries that admit them.

use crate::common::*;
use bcsp_guard::base64::{self, Alphabet};
use serde_json::{json, Value};

#[test]
fn keygen_makes_a_fresh_256_bit_secret_and_the_entry_that_admits_it() {
    let r = cli(&[
        "keygen",
        "--id",
        "genesys-2027q1",
        "--not-before",
        "2027-01-01T00:00:00Z",
        "--not-after",
        "2027-04-15T00:00:00Z",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    let secret = out["secret"].as_str().unwrap();
    let bytes = base64::decode(secret.as_bytes(), Alphabet::Url).expect("base64url");
    assert_eq!(bytes.len(), 32, "256 bits");
    assert_eq!(out["header"], "x-bcsp-key");
    assert_eq!(out["value"], secret);
    assert_eq!(out["key"]["sha256"], sha256_hex(secret));
    assert_eq!(out["key"]["id"], "genesys-2027q1");
    assert_eq!(out["key"]["not_after"], "2027-04-15T00:00:00Z");

    let again = cli(&["keygen", "--id", "x", "--json"]);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_ne!(again["secret"], out["secret"], "every secret is fresh");

    // The entry is a valid configuration as it stands.
    let dir = Dir::new("keygen");
    let cfg = dir.file(
        "cfg.json",
        &json!({"keys": [out["key"].clone()]}).to_string(),
    );
    let c = cli(&["check", &cfg]);
    assert_eq!(c.code, 0, "{}", c.all());
    assert!(!c.all().contains(secret), "check never prints a secret");
}

#[test]
fn keygen_prints_the_credential_field_and_a_bearer_value_with_a_scheme() {
    let r = cli(&[
        "keygen",
        "--id",
        "genesys-bearer",
        "--header",
        "Authorization",
        "--scheme",
        "Bearer",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("name:  authorization"), "{}", r.stdout);
    assert!(r.stdout.contains("value: Bearer "), "{}", r.stdout);
    assert!(r.stdout.contains(r#""scheme":"Bearer""#), "{}", r.stdout);
}

#[test]
fn keygen_refuses_bad_input_with_the_filters_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["keygen"], "--id is required"),
        (
            &["keygen", "--id", "bad id"],
            "keys[0].id: must be 1-64 characters of A-Z a-z 0-9 . _ -",
        ),
        (
            &["keygen", "--id", "k", "--not-after", "soon"],
            "keys[0].not_after: expected an RFC 3339 timestamp",
        ),
        (
            &[
                "keygen",
                "--id",
                "k",
                "--not-before",
                "2027-02-01T00:00:00Z",
                "--not-after",
                "2027-01-01T00:00:00Z",
            ],
            "keys[0].not_after: must be later than not_before",
        ),
        (
            &["keygen", "--id", "k", "--header", "host"],
            "keys[0].header: `host` is reserved",
        ),
        (
            &["keygen", "--id", "k", "--colour"],
            "unknown option --colour",
        ),
        (&["keygen", "--id"], "--id needs a value"),
    ];
    for (args, want) in cases {
        let r = cli(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains(want),
            "{args:?}\n  got: {}\n  want: {want}",
            r.stderr
        );
        assert!(
            r.stdout.is_empty(),
            "no secret is printed on error: {}",
            r.stdout
        );
    }
}
