use super::*;

const H: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"; // sha256("password")

fn ok(json: &str) -> Policy {
    match compile(json.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("{json} → {e}"),
    }
}

fn err(json: &str) -> String {
    match compile(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

fn with_key(extra_key: &str, extra_top: &str) -> String {
    format!(r#"{{"keys":[{{"id":"k","sha256":"{H}"{extra_key}}}]{extra_top}}}"#)
}

#[test]
fn the_documented_example_compiles() {
    let json = format!(
        r#"{{
          "keys": [
            {{"id": "genesys-2026q4", "header": "x-bcsp-key", "sha256": "{H}",
             "not_before": "2026-10-01T00:00:00Z", "not_after": "2027-01-15T00:00:00Z"}},
            {{"id": "genesys-bearer", "header": "Authorization", "scheme": "Bearer", "sha256": "{}"}}
          ],
          "client_ip": {{"from": "x-forwarded-for", "trusted_hops": 1}},
          "allow_cidrs": ["34.200.73.250/32", "2600:1f18:4a3:6900::/56"],
          "key_id_header": "x-bcsp-key-id",
          "upstream_token": {{"cluster": "gcp_metadata", "audience": "https://bcsp-abc-uc.a.run.app",
             "audience_by_cluster": {{"bcsp_eu": "https://bcsp-eu-ew.a.run.app"}}}}
        }}"#,
        H.to_uppercase()
    );
    let p = ok(&json);
    assert_eq!(p.keys.headers, vec!["x-bcsp-key", "authorization"]);
    assert_eq!(p.keys.keys.len(), 2);
    assert_eq!(p.client_ip, ClientIpRule::ForwardedFor { trusted_hops: 1 });
    assert_eq!(p.allow.as_ref().map(|a| a.len()), Some(2));
    assert_eq!(p.key_id_header.as_deref(), Some("x-bcsp-key-id"));
    let t = p.upstream_token.as_ref().unwrap();
    assert_eq!(t.header, "authorization");
    assert_eq!(
        t.timing,
        Timing {
            refresh_margin_s: 300,
            expiry_skew_s: 30,
            max_wait_ms: 3000,
            fetch_timeout_ms: 2000
        }
    );
    assert_eq!(
        t.audience_for(Some("bcsp_eu")),
        "https://bcsp-eu-ew.a.run.app"
    );
    assert_eq!(
        p.www_authenticate,
        r#"ApiKey realm="bcsp-guard", header="x-bcsp-key", Bearer realm="bcsp-guard", header="authorization""#
    );
}

#[test]
fn defaults_apply_when_fields_are_absent() {
    let p = ok(&with_key("", ""));
    assert_eq!(p.keys.headers, vec!["x-bcsp-key"]);
    assert_eq!(p.client_ip, ClientIpRule::Downstream);
    assert!(p.allow.is_none());
    assert!(!p.needs_downstream());
    assert_eq!(p.key_id_header.as_deref(), Some("x-bcsp-key-id"));
    assert!(p.upstream_token.is_none());
    assert!(ok(&with_key("", r#","allow_cidrs":[]"#)).allow.is_none());
    assert!(ok(&with_key("", r#","key_id_header":"""#))
        .key_id_header
        .is_none());
    assert!(ok(&with_key("", r#","allow_cidrs":["10.0.0.0/8"]"#)).needs_downstream());
}

#[test]
fn every_config_error_names_its_field() {
    let sixty_five: Vec<String> = (0..65)
        .map(|i| format!(r#"{{"id":"k{i}","sha256":"{H}"}}"#))
        .collect();
    let too_many = format!(r#"{{"keys":[{}]}}"#, sixty_five.join(","));
    let tok = |f: &str| {
        with_key(
            "",
            &format!(r#","upstream_token":{{"cluster":"m","audience":"https://a.run.app"{f}}}"#),
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "configuration: is empty"),
        ("[]".into(), "configuration: must be a JSON object"),
        ("\"keys\"".into(), "configuration: must be a JSON object"),
        ("{".into(), "configuration: EOF"),
        ("{}".into(), "configuration: missing field `keys`"),
        (r#"{"keys":[]}"#.into(), "keys: must hold 1 to 64"),
        (too_many, "keys: must hold 1 to 64 keys, got 65"),
        (
            with_key("", r#","allow_cidr":[]"#),
            "allow_cidr: unknown field `allow_cidr`",
        ),
        (
            with_key(r#","sha":"x""#, ""),
            "keys[0].sha: unknown field `sha`",
        ),
        (
            r#"{"keys":[{"id":"k"}]}"#.into(),
            "keys[0]: missing field `sha256`",
        ),
        (
            format!(r#"{{"keys":[{{"id":"a b","sha256":"{H}"}}]}}"#),
            "keys[0].id: must be 1-64",
        ),
        (
            format!(r#"{{"keys":[{{"id":"a","sha256":"{H}"}},{{"id":"a","sha256":"{H}"}}]}}"#),
            "keys[1].id: `a` is used by another key",
        ),
        (
            r#"{"keys":[{"id":"k","sha256":"abc"}]}"#.into(),
            "keys[0].sha256: expected 64 hex",
        ),
        (
            format!(r#"{{"keys":[{{"id":"a-b","sha256":"{H}"}},{{"id":"a.b","sha256":"{H}"}}]}}"#),
            "keys[1].id: `a.b` and `a-b` would share one Prometheus metric name",
        ),
        (
            format!(
                r#"{{"keys":[{{"id":"k","sha256":"{}"}}]}}"#,
                H.replace('5', "z")
            ),
            "keys[0].sha256: expected 64 hex",
        ),
        (with_key(r#","sha256":1"#, ""), "keys[0]"),
        (
            with_key(r#","header":"x bad""#, ""),
            "keys[0].header: `x bad` is not a valid header name",
        ),
        (
            with_key(r#","header":"Host""#, ""),
            "keys[0].header: `host` is reserved",
        ),
        (
            with_key(r#","scheme":"Bear er""#, ""),
            "keys[0].scheme: must be a single word",
        ),
        (
            with_key(r#","not_before":"2026-10-01""#, ""),
            "keys[0].not_before: expected an RFC 3339",
        ),
        (
            with_key(r#","not_after":"yesterday""#, ""),
            "keys[0].not_after: expected an RFC 3339",
        ),
        (
            with_key(
                r#","not_before":"2026-10-01T00:00:00Z","not_after":"2026-10-01T00:00:00Z""#,
                "",
            ),
            "keys[0].not_after: must be later than not_before",
        ),
        (
            with_key("", r#","allow_cidrs":["10.0.0.0/8","10.0.0.1/8"]"#),
            "allow_cidrs[1]: `10.0.0.1/8`: address has bits set",
        ),
        (
            with_key("", r#","allow_cidrs":["banana"]"#),
            "allow_cidrs[0]: `banana`: not an IP address",
        ),
        (
            with_key("", r#","allow_cidrs":"10.0.0.0/8""#),
            "allow_cidrs: invalid type",
        ),
        (
            with_key(
                "",
                r#","client_ip":{"from":"x-forwarded-for","trusted_hops":0}"#,
            ),
            "client_ip.trusted_hops: must be 1 to 32",
        ),
        (
            with_key(
                "",
                r#","client_ip":{"from":"x-forwarded-for","trusted_hops":33}"#,
            ),
            "client_ip.trusted_hops: must be 1 to 32",
        ),
        (
            with_key(
                "",
                r#","client_ip":{"from":"x-forwarded-for","trusted_hops":-1}"#,
            ),
            "client_ip.trusted_hops: invalid value",
        ),
        (
            with_key("", r#","client_ip":{"from":"x-forwarded-for"}"#),
            "client_ip.trusted_hops: is required",
        ),
        (
            with_key("", r#","client_ip":{"from":"downstream","trusted_hops":1}"#),
            "client_ip.trusted_hops: only applies",
        ),
        (
            with_key("", r#","client_ip":{"from":"leftmost"}"#),
            "client_ip.from: must be `downstream` or `x-forwarded-for`",
        ),
        (
            with_key("", r#","client_ip":{"from":"downstream","hops":1}"#),
            "client_ip.hops: unknown field `hops`",
        ),
        (
            with_key("", r#","key_id_header":"x-bcsp-key""#),
            "key_id_header: `x-bcsp-key` is also a credential header",
        ),
        (
            with_key("", r#","key_id_header":"a:b""#),
            "key_id_header: `a:b` is not a valid header name",
        ),
        (
            tok(r#","header":"x-auth""#),
            "upstream_token.header: must be `authorization`",
        ),
        (
            tok(r#","refresh_margin_s":0"#),
            "upstream_token.refresh_margin_s: must be 1 to 3000, got 0",
        ),
        (
            tok(r#","refresh_margin_s":100,"expiry_skew_s":100"#),
            "upstream_token.expiry_skew_s: must be smaller than refresh_margin_s",
        ),
        (
            tok(r#","max_wait_ms":0"#),
            "upstream_token.max_wait_ms: must be 1 to 60000",
        ),
        (
            tok(r#","fetch_timeout_ms":3600000"#),
            "upstream_token.fetch_timeout_ms: must be 100 to 60000",
        ),
        (
            tok(r#","path":"identity""#),
            "upstream_token.path: `identity` must be an absolute path",
        ),
        (tok(r#","authority":"a b""#), "upstream_token.authority"),
        (
            tok(r#","audience_by_cluster":{"eu":"ftp://x"}"#),
            "upstream_token.audience_by_cluster.eu: `ftp://x` is not an http(s) URL",
        ),
        (
            tok(r#","extra":1"#),
            "upstream_token.extra: unknown field `extra`",
        ),
        (
            with_key("", r#","upstream_token":{"cluster":"m","audience":"bcsp"}"#),
            "upstream_token.audience: `bcsp` is not an http(s) URL",
        ),
        (
            with_key("", r#","upstream_token":{"audience":"https://a"}"#),
            "upstream_token: missing field `cluster`",
        ),
    ];
    for (json, want) in &cases {
        let got = err(json);
        assert!(
            got.starts_with(want) || got.contains(want),
            "config {json}\n  got:  {got}\n  want: {want}"
        );
    }
}

#[test]
fn error_messages_never_echo_a_hash() {
    let bad = format!(r#"{{"keys":[{{"id":"k","sha256":"{}"}}]}}"#, &H[..63]);
    assert!(!err(&bad).contains(&H[..63]));
}

#[test]
fn summary_lists_ids_and_windows_but_no_secret() {
    let p = ok(&with_key(
        r#","not_after":"2027-01-15T00:00:00Z""#,
        r#","allow_cidrs":["10.0.0.0/8"]"#,
    ));
    let s = p.summary();
    assert!(
        s.contains("k (header x-bcsp-key, valid - .. 2027-01-15T00:00:00Z)"),
        "{s}"
    );
    assert!(s.contains("1 CIDRs"), "{s}");
    assert!(!s.contains(H) && !s.contains(&H[..16]), "{s}");
}
