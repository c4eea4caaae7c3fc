//! `keygen`: a fresh 256-bit secret from the OS and the `keys` entry that admits it.

use crate::args::Args;
use bcsp_guard::base64::{self, Alphabet};
use bcsp_guard::config;
use bcsp_guard::policy::keys::SecretHash;
use serde_json::{json, Map, Value};
use std::io::Read;

fn random_bytes() -> Result<[u8; 32], String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf)
}

pub fn run(argv: &[String]) -> Result<u8, String> {
    let args = Args::parse(
        argv,
        &["id", "header", "scheme", "not-before", "not-after"],
        &["json"],
    )?;
    if !args.positional.is_empty() {
        return Err(format!(
            "keygen takes no positional arguments, got `{}`",
            args.positional.join(" ")
        ));
    }
    let mut entry = Map::new();
    entry.insert("id".into(), json!(args.required("id")?));
    for (opt, field) in [
        ("header", "header"),
        ("scheme", "scheme"),
        ("not-before", "not_before"),
        ("not-after", "not_after"),
    ] {
        if let Some(v) = args.one(opt)? {
            entry.insert(field.into(), json!(v));
        }
    }
    // URL-safe base64 of 32 random bytes: 43 characters, fine in any header value.
    let secret = base64::encode(&random_bytes()?, Alphabet::Url);
    entry.insert(
        "sha256".into(),
        json!(SecretHash::of(secret.as_bytes()).to_hex()),
    );
    let entry = Value::Object(entry);
    // The filter's own validation of the entry, with its messages (`keys[0].not_after: ...`).
    let doc = json!({ "keys": [entry] });
    let policy =
        config::compile(doc.to_string().as_bytes()).map_err(|e| format!("invalid key: {e}"))?;
    let header = policy.keys.headers().first().cloned().unwrap_or_default();
    let value = match args.one("scheme")? {
        Some(s) => format!("{s} {secret}"),
        None => secret.clone(),
    };
    if args.flag("json") {
        let out = json!({"header": header, "value": value, "secret": secret, "key": entry});
        println!("{out}");
        return Ok(0);
    }
    println!("Genesys integration, Credentials tab — add this field (shown once, never stored):");
    println!("  name:  {header}");
    println!("  value: {value}");
    println!();
    println!("bcsp-guard configuration — add this entry to \"keys\":");
    println!("  {entry}");
    Ok(0)
}
