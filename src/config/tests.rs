use super::*;

const H: &str = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"; // sha256("password")

fn compiled(json: &str) -> Policy {
    match compile(json.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("{json} → {e}"),
    }
}

fn compile_error(json: &str) -> String {
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
    let p = compiled(&json);
    assert_eq!(p.keys.headers(), vec!["x-bcsp-key", "authorization"]);
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
    let p = compiled(&with_key("", ""));
    assert_eq!(p.keys.headers(), vec!["x-bcsp-key"]);
    assert_eq!(p.client_ip, ClientIpRule::Downstream);
    assert!(p.allow.is_none());
    assert!(!p.needs_downstream());
    assert_eq!(p.key_id_header.as_deref(), Some("x-bcsp-key-id"));
    assert!(p.upstream_token.is_none());
    assert!(compiled(&with_key("", r#","allow_cidrs":[]"#))
        .allow
        .is_none());
    assert!(compiled(&with_key("", r#","key_id_header":"""#))
        .key_id_header
        .is_none());
    assert!(compiled(&with_key("", r#","allow_cidrs":["10.0.0.0/8"]"#)).needs_downstream());
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
        (
            format!(r#"{{"keys":[{{"id":"k","sha256":"{H}"}}]}}{{"allow_cidrs":["10.0.0.0/8"]}}"#),
            "configuration: unexpected content after the configuration object",
        ),
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
        let got = compile_error(json);
        assert!(
            got.starts_with(want) || got.contains(want),
            "config {json}\n  got:  {got}\n  want: {want}"
        );
    }
}

#[test]
fn error_messages_never_echo_a_hash() {
    let bad = format!(r#"{{"keys":[{{"id":"k","sha256":"{}"}}]}}"#, &H[..63]);
    assert!(!compile_error(&bad).contains(&H[..63]));
}

#[test]
fn summary_lists_ids_and_windows_but_no_secret() {
    let p = compiled(&with_key(
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

// ---- Genesys IP ranges, routes, body limit, webhooks, lockout ------------------------------

const DOC: &str = r#"{"entities":[
    {"cidr":"34.200.73.250/32","service":"bot-connector","region":"us-east-1","direction":"outbound"},
    {"cidr":"52.5.0.0/16","service":"bot-connector","region":"us-east-1"},
    {"cidr":"3.120.0.0/14","service":"bot-connector","region":"eu-central-1"},
    {"cidr":"99.0.0.0/8","service":"web-services","region":"us-east-1"}],
  "pageSize": 25}"#;

fn ranges(inner: &str) -> String {
    with_key(
        "",
        &format!(r#","genesys_ip_ranges":{{"document":{DOC}{inner}}}"#),
    )
}

#[test]
fn genesys_ip_ranges_select_by_service_and_region_and_join_allow_cidrs() {
    let p = compiled(&ranges(r#","regions":["us-east-1"]"#));
    let allow = p.allow.as_ref().unwrap();
    assert_eq!(allow.len(), 2);
    assert!(allow.contains("52.5.1.1".parse().unwrap()));
    assert!(
        !allow.contains("99.1.1.1".parse().unwrap()),
        "other service"
    );
    assert!(
        !allow.contains("3.120.0.1".parse().unwrap()),
        "other region"
    );
    let p = compiled(&ranges(
        r#","regions":["us-east-1","eu-central-1"],"services":["bot-connector","web-services"]"#,
    ));
    assert_eq!(p.allow.as_ref().unwrap().len(), 4);
    let both = with_key(
        "",
        &format!(
            r#","allow_cidrs":["10.0.0.0/8"],"genesys_ip_ranges":{{"document":{DOC},"regions":["eu-central-1"]}}"#
        ),
    );
    let p = compiled(&both);
    assert_eq!(p.allow.as_ref().unwrap().len(), 2);
    assert!(
        p.summary().contains("2 CIDRs (1 from genesys_ip_ranges"),
        "{}",
        p.summary()
    );
}

#[test]
fn genesys_ip_range_errors_name_their_field() {
    let e = compile_error(&ranges(r#","regions":["ap-south-9"]"#));
    assert!(
        e.starts_with("genesys_ip_ranges: selects no entries"),
        "{e}"
    );
    assert!(e.contains("[eu-central-1, us-east-1]"), "{e}");
    assert_eq!(
        compile_error(&ranges(r#","regions":[]"#)),
        "genesys_ip_ranges.regions: must name at least one Genesys region, such as us-east-1"
    );
    assert!(compile_error(&ranges("")).starts_with("genesys_ip_ranges: missing field `regions`"));
    assert!(
        compile_error(&ranges(r#","regions":["us-east-1"],"services":[]"#))
            .starts_with("genesys_ip_ranges.services: must not be empty")
    );
    assert!(
        compile_error(&ranges(r#","regions":["us-east-1"],"region":"x""#))
            .starts_with("genesys_ip_ranges.region: unknown field `region`")
    );
    let bad_doc = with_key(
        "",
        r#","genesys_ip_ranges":{"document":{"entities":[{"cidr":"34.200.73.250/33","service":"bot-connector","region":"r"}]},"regions":["r"]}"#,
    );
    assert_eq!(
        compile_error(&bad_doc),
        "genesys_ip_ranges.document.entities[0].cidr: `34.200.73.250/33`: IPv4 prefix length must be at most 32"
    );
    let no_cidr = with_key(
        "",
        r#","genesys_ip_ranges":{"document":{"entities":[{"service":"bot-connector"}]},"regions":["r"]}"#,
    );
    assert!(compile_error(&no_cidr)
        .starts_with("genesys_ip_ranges.document.entities[0]: missing field `cidr`"));
}

#[test]
fn routes_come_from_the_preset_or_an_explicit_list() {
    let p = compiled(&with_key(
        "",
        r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/botconnector"}"#,
    ));
    let list: Vec<String> = p
        .routes
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(
        list,
        [
            "GET /botconnector/bots",
            "GET /botconnector/bots/*",
            "POST /botconnector/messages"
        ]
    );
    let p = compiled(&with_key(
        "",
        r#","routes":{"preset":"digital-bot-connector-v2"}"#,
    ));
    assert_eq!(
        p.routes.as_ref().unwrap().iter().next().unwrap().path,
        "/bots"
    );
    let p = compiled(&with_key(
        "",
        r#","routes":[{"method":"GET","path":"/v1/bots/*/versions"},{"method":"POST","path":"/v1/messages"}]"#,
    ));
    assert_eq!(p.routes.as_ref().unwrap().len(), 2);
    assert_eq!(p.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn route_and_body_limit_errors_name_their_field() {
    let cases = [
        (
            r#","routes":{"preset":"dbc-v3"}"#,
            "routes.preset: must be `digital-bot-connector-v2`, got `dbc-v3`",
        ),
        (
            r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/bc/"}"#,
            "routes.base_path: `/bc/` must not end with /",
        ),
        (
            r#","routes":{"preset":"digital-bot-connector-v2","base":"/bc"}"#,
            "routes.base: unknown field `base`",
        ),
        (
            r#","routes":[]"#,
            "routes: must hold 1 to 64 entries, got 0",
        ),
        (
            r#","routes":[{"method":"GET","path":"/a"},{"method":"get","path":"/b"}]"#,
            "routes[1].method: `get` must be an upper-case HTTP method such as GET",
        ),
        (
            r#","routes":[{"method":"GET","path":"/a/../b"}]"#,
            "routes[0].path: `/a/../b` must not contain . or .. segments",
        ),
        (
            r#","routes":[{"method":"GET","path":"/a"},{"method":"GET","path":"/a"}]"#,
            "routes[1]: `GET /a` is listed twice",
        ),
        (
            r#","routes":[{"method":"GET"}]"#,
            "routes[0]: missing field `path`",
        ),
        (r#","routes":"all""#, "routes: invalid type: string \"all\""),
        (
            r#","max_body_bytes":0"#,
            "max_body_bytes: must be 1 to 16777216, got 0",
        ),
        (
            r#","max_body_bytes":16777217"#,
            "max_body_bytes: must be 1 to 16777216, got 16777217",
        ),
    ];
    for (extra, want) in cases {
        let e = compile_error(&with_key("", extra));
        assert!(e.starts_with(want), "{extra}\n  got:  {e}\n  want: {want}");
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "OM_WEBHOOK_SECRET" => Some("a-webhook-secret-of-32-bytes-xyz".into()),
        "SHORT" => Some("short".into()),
        _ => None,
    }
}

fn compile_env(json: &str) -> Result<Policy, String> {
    compile_with_env(json.as_bytes(), &env).map_err(|e| e.to_string())
}

#[test]
fn webhook_secrets_from_envoy_generic_secrets_need_the_dynamic_module() {
    let hook = r#","webhooks":[{"path_prefix":"/om","secret_generic":"om-hook"}]"#;
    let json = with_key("", hook);
    let e = compile_env(&json).unwrap_err();
    assert!(
        e.starts_with(
            "webhooks[0].secret_generic: Envoy generic secrets reach only the dynamic-module build"
        ),
        "{e}"
    );
    let generic = |name: &str, sds: Option<&str>| match (name, sds) {
        ("om-hook", None) => Ok(Some("a-generic-secret-of-32-bytes-xyz".to_owned())),
        (_, Some(_)) => Ok(None),
        _ => Err(format!(
            "no generic secret `{name}` in static_resources.secrets"
        )),
    };
    let lookups = SecretLookups {
        env: &env,
        generic: Some(&generic),
    };
    let p = compile_with_secrets(json.as_bytes(), lookups).unwrap();
    let s = p.summary();
    assert!(
        s.contains("/om (header x-hub-signature-256, Envoy generic secret om-hook)"),
        "{s}"
    );
    assert!(
        !s.contains("a-generic-secret") && p.warnings.is_empty(),
        "{s}"
    );
    let missing = with_key(
        "",
        r#","webhooks":[{"path_prefix":"/om","secret_generic":"nope"}]"#,
    );
    let e = compile_with_secrets(missing.as_bytes(), lookups)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "webhooks[0].secret_generic: no generic secret `nope` in static_resources.secrets"
    );
    // Over SDS: subscribed now, delivered later; until then no signature verifies.
    let sds = with_key(
        "",
        r#","webhooks":[{"path_prefix":"/om","secret_generic":"om-hook","secret_generic_sds":{"ads":{}}}]"#,
    );
    let p = compile_with_secrets(sds.as_bytes(), lookups).unwrap();
    let w = &p.webhooks[0];
    assert!(p
        .summary()
        .contains("Envoy generic secret om-hook over SDS"));
    assert!(w.verify(&w.secret.sign(b"x"), b"x").is_err());
    assert!(w.secret.replace(b"a-generic-secret-of-32-bytes-xyz"));
    let key = WebhookSecret::new(b"a-generic-secret-of-32-bytes-xyz").unwrap();
    assert_eq!(w.verify(&key.sign(b"x"), b"x"), Ok(()));
    let bad = with_key(
        "",
        r#","webhooks":[{"path_prefix":"/om","secret_env":"OM_WEBHOOK_SECRET","secret_generic_sds":{}}]"#,
    );
    let e = compile_with_secrets(bad.as_bytes(), lookups)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("webhooks[0].secret_generic_sds: only with `secret_generic`"),
        "{e}"
    );
}

#[test]
fn webhooks_take_their_secret_from_the_vm_environment() {
    let hook = r#","webhooks":[{"path_prefix":"/openmessaging","secret_env":"OM_WEBHOOK_SECRET"}]"#;
    let p = compile_env(&with_key("", hook)).unwrap();
    let w = &p.webhooks[0];
    assert_eq!(w.header, "x-hub-signature-256");
    assert_eq!(
        w.source,
        crate::policy::webhook::SecretSource::Env("OM_WEBHOOK_SECRET".into())
    );
    assert!(p.warnings.is_empty());
    let s = p.summary();
    assert!(s.contains(
        "/openmessaging (header x-hub-signature-256, secret from env OM_WEBHOOK_SECRET)"
    ));
    assert!(!s.contains("a-webhook-secret"), "{s}");
    assert!(!format!("{p:?}").contains("a-webhook-secret"));

    let inline = r#","webhooks":[{"path_prefix":"/om","header":"X-Sig","secret":"inline-secret-0123456789"}]"#;
    let p = compile_env(&with_key("", inline)).unwrap();
    assert_eq!(p.webhooks[0].header, "x-sig");
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].contains("inline secret"));
    assert!(!p.warnings[0].contains("inline-secret-0123456789"));
}

#[test]
fn webhook_errors_name_their_field_and_never_the_secret() {
    let routes = r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/botconnector"}"#;
    let cases = [
        (
            r#","webhooks":[{"path_prefix":"/om","secret_env":"MISSING_VAR"}]"#,
            "webhooks[0].secret_env: environment variable `MISSING_VAR` is not set in the Wasm VM",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","secret_env":"SHORT"}]"#,
            "webhooks[0].secret_env: the secret must be at least 16 bytes, got 5",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","secret":"tiny"}]"#,
            "webhooks[0].secret: the secret must be at least 16 bytes, got 4",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om"}]"#,
            "webhooks[0]: needs exactly one of `secret_env` (preferred), `secret_generic` or `secret`",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","secret":"inline-secret-0123456789","secret_env":"OM_WEBHOOK_SECRET"}]"#,
            "webhooks[0]: needs exactly one of",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","secret_env":"OM WEBHOOK"}]"#,
            "webhooks[0].secret_env: `OM WEBHOOK` is not an environment variable name",
        ),
        (
            r#","webhooks":[{"path_prefix":"/","secret_env":"OM_WEBHOOK_SECRET"}]"#,
            "webhooks[0].path_prefix: must not be /",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om/","secret_env":"OM_WEBHOOK_SECRET"}]"#,
            "webhooks[0].path_prefix: `/om/` must not end with /",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","secret_env":"OM_WEBHOOK_SECRET"},{"path_prefix":"/om/x","secret_env":"OM_WEBHOOK_SECRET"}]"#,
            "webhooks[1].path_prefix: `/om/x` overlaps `/om`",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","header":"x-bcsp-key","secret_env":"OM_WEBHOOK_SECRET"}]"#,
            "webhooks[0].header: `x-bcsp-key` is also a credential header",
        ),
        (
            r#","webhooks":[{"path_prefix":"/om","secret_env":"OM_WEBHOOK_SECRET","secrets":"x"}]"#,
            "webhooks[0].secrets: unknown field `secrets`",
        ),
    ];
    for (extra, want) in cases {
        let e = compile_env(&with_key("", extra)).err().unwrap();
        assert!(e.starts_with(want), "{extra}\n  got:  {e}\n  want: {want}");
        assert!(
            !e.contains("a-webhook-secret") && !e.contains("inline-secret"),
            "{e}"
        );
    }
    let overlap = format!(
        r#"{routes},"webhooks":[{{"path_prefix":"/botconnector/bots","secret_env":"OM_WEBHOOK_SECRET"}}]"#
    );
    let e = compile_env(&with_key("", &overlap)).err().unwrap();
    assert!(e.starts_with("webhooks[0].path_prefix: `/botconnector/bots` overlaps the route `GET /botconnector/bots`"), "{e}");
}

#[test]
fn lockout_has_defaults_and_bounds() {
    let p = compiled(&with_key("", r#","lockout":{}"#));
    assert_eq!(
        p.lockout,
        Some(LockoutRule {
            max_failures: 20,
            window_s: 60,
            cooldown_s: 300
        })
    );
    assert!(
        p.needs_downstream(),
        "the client address is needed to count"
    );
    assert!(compiled(&with_key("", "")).lockout.is_none());
    assert_eq!(
        compile_error(&with_key("", r#","lockout":{"max_failures":0}"#)),
        "lockout.max_failures: must be 1 to 10000, got 0"
    );
    assert_eq!(
        compile_error(&with_key("", r#","lockout":{"cooldown_s":86401}"#)),
        "lockout.cooldown_s: must be 1 to 86400, got 86401"
    );
    assert!(compile_error(&with_key("", r#","lockout":{"window":5}"#))
        .starts_with("lockout.window: unknown field `window`"));
}

mod audience_and_names;
