//! What of the caller's identity survives: other spellings of controlled names, override
//! headers, trailers.

use super::*;

const ROUTES: &str = r#","routes":{"preset":"digital-bot-connector-v2","base_path":"/b"}"#;

fn names(host: &FakeHost) -> Vec<String> {
    host.headers
        .borrow()
        .iter()
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn every_spelling_of_a_controlled_header_is_removed() {
    let g = guard(TOKEN_CFG);
    let host = FakeHost::with(&[
        ("x-bcsp-key", "alpha"),
        ("x-bcsp_key-id", "forged"),
        ("X_BCSP-KEY-ID", "forged"),
        ("x_serverless-authorization", "Bearer forged"),
        ("x-bcsp_key", "alpha"),
        ("x-note", "kept"),
        ("x_note", "kept too"),
    ]);
    let tokens = FakeTokens {
        value: Some("Bearer jwt"),
        missing: Missing::Reject { retry_after_s: 1 },
        asked: RefCell::default(),
    };
    assert_eq!(headers_step(&host, &g, Some(&tokens)), Outcome::Forward);
    assert_eq!(
        names(&host),
        ["x-note", "x_note", "x-bcsp-key-id", "authorization"]
    );
    assert_eq!(host.header("x-bcsp-key-id"), ["a"]);
}

#[test]
fn a_valid_secret_under_another_spelling_never_authenticates() {
    let g = guard("");
    for name in ["x_bcsp_key", "x-bcsp_key", "X_BCSP-KEY"] {
        let host = FakeHost::with(&[(name, "alpha")]);
        assert_eq!(headers_step(&host, &g, None), Outcome::Replied, "{name}");
        assert_eq!(host.replies.borrow()[0].status, 401, "{name}");
    }
}

#[test]
fn override_headers_are_removed_only_when_routes_are_set() {
    let overrides = [
        ("x-http-method-override", "DELETE"),
        ("x_http_method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x-rewrite_url", "/admin"),
    ];
    let mut sent = vec![
        (":method", "GET"),
        (":path", "/b/bots"),
        ("x-bcsp-key", "alpha"),
    ];
    sent.extend(overrides);
    let g = guard(ROUTES);
    let host = FakeHost::with(&sent);
    assert_eq!(headers_step(&host, &g, None), Outcome::Forward);
    assert_eq!(names(&host), [":method", ":path", "x-bcsp-key-id"]);

    // Without routes there is no allowlist to sidestep: they are the BCSP's business.
    let g = guard("");
    let host = FakeHost::with(&sent);
    assert_eq!(headers_step(&host, &g, None), Outcome::Forward);
    assert_eq!(host.header("x-original-url"), ["/admin"]);
}

#[test]
fn trailers_lose_every_controlled_name() {
    let g = guard(&format!("{TOKEN_CFG}{ROUTES}"));
    let trailers = [
        ("x-bcsp-key-id", "forged"),
        ("x_bcsp_key_id", "forged"),
        ("authorization", "Bearer forged"),
        ("x-serverless_authorization", "Bearer forged"),
        ("x-bcsp-key", "alpha"),
        ("x-original_url", "/admin"),
        ("grpc-status", "0"),
        ("X-BCSP-KEY-ID", "again"),
    ];
    assert_eq!(
        trailers_to_remove(&g, &trailers),
        [
            "x-bcsp-key-id",
            "x_bcsp_key_id",
            "authorization",
            "x-serverless_authorization",
            "x-bcsp-key",
            "x-original_url"
        ]
    );
    assert!(trailers_to_remove(&g, &[("x-note", "a")]).is_empty());
}

#[test]
fn a_key_with_its_own_audience_gets_that_token_whatever_the_route() {
    let a = SecretHash::of(b"alpha").to_hex();
    let b = SecretHash::of(b"bravo").to_hex();
    let json = format!(
        r#"{{"keys":[{{"id":"a","sha256":"{a}"}},
                     {{"id":"b","header":"authorization","scheme":"Bearer","sha256":"{b}",
                       "audience":"https://b.run.app"}}],
            "upstream_token":{{"cluster":"meta","audience":"https://a.run.app"}}}}"#
    );
    let policy = config::compile(json.as_bytes()).unwrap();
    let stats = Stats::define(&policy, |_, _| None);
    let g = Guard { policy, stats };
    for (sent, want) in [
        (("x-bcsp-key", "alpha"), "https://a.run.app"),
        (("authorization", "Bearer bravo"), "https://b.run.app"),
    ] {
        let mut host = FakeHost::with(&[sent, ("x-bcsp-key-id", "a")]);
        host.properties
            .insert("xds.cluster_name".into(), "eu".into());
        let tokens = FakeTokens {
            value: Some("Bearer jwt"),
            missing: Missing::Reject { retry_after_s: 1 },
            asked: RefCell::default(),
        };
        assert_eq!(headers_step(&host, &g, Some(&tokens)), Outcome::Forward);
        assert_eq!(tokens.asked.borrow().as_slice(), [want]);
        assert!(
            !host
                .property_reads
                .borrow()
                .iter()
                .any(|p| p == "xds.cluster_name"),
            "no route is consulted without audience_by_cluster"
        );
    }
}
