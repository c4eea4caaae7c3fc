//! `keys[].audience`, and header names compared as CGI-style servers read them.

use super::*;

const TOKEN: &str = r#","upstream_token":{"cluster":"meta","audience":"https://a.run.app"}"#;

#[test]
fn a_key_may_name_its_own_audience() {
    let p = compiled(&with_key(r#","audience":"https://k.run.app""#, TOKEN));
    assert_eq!(
        p.keys.keys[0].audience.as_deref(),
        Some("https://k.run.app")
    );
    let t = p.upstream_token.as_ref().unwrap();
    assert_eq!(t.audiences(), ["https://a.run.app", "https://k.run.app"]);
    assert!(
        p.summary().contains("audience https://k.run.app"),
        "{}",
        p.summary()
    );
}

#[test]
fn a_key_audience_needs_a_token_and_excludes_audience_by_cluster() {
    assert_eq!(
        compile_error(&with_key(r#","audience":"https://k.run.app""#, "")),
        "keys[0].audience: needs upstream_token"
    );
    let by_cluster = r#","upstream_token":{"cluster":"meta","audience":"https://a.run.app",
        "audience_by_cluster":{"eu":"https://eu.run.app"}}"#;
    let e = compile_error(&with_key(r#","audience":"https://k.run.app""#, by_cluster));
    assert!(
        e.starts_with(
            "keys[0].audience: cannot be combined with upstream_token.audience_by_cluster"
        ),
        "{e}"
    );
    let e = compile_error(&with_key(r#","audience":"not a url""#, TOKEN));
    assert!(e.starts_with("keys[0].audience: "), "{e}");
}

#[test]
fn the_key_id_header_may_not_be_another_spelling_of_a_controlled_header() {
    assert_eq!(
        compile_error(&with_key("", r#","key_id_header":"X_BCSP_KEY""#)),
        "key_id_header: `x_bcsp_key` is also a credential header"
    );
    let e = compile_error(&with_key(
        "",
        &format!(r#"{TOKEN},"key_id_header":"x-serverless_authorization""#),
    ));
    assert!(e.starts_with("key_id_header: "), "{e}");
}

#[test]
fn the_controlled_set_covers_overrides_only_with_routes() {
    let p = compiled(&with_key("", TOKEN));
    let names = p.controlled.names();
    assert_eq!(
        names,
        [
            "x-bcsp-key",
            "x-bcsp-key-id",
            "x-serverless-authorization",
            "authorization"
        ]
    );
    let p = compiled(&with_key(
        "",
        r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/b"}"#,
    ));
    assert!(p.controlled.covers("X_Original-URL"));
    assert!(!p.controlled.covers("authorization"));
}
