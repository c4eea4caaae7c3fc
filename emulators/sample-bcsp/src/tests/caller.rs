//! Caller identity: key ids and decoded tokens reported, credentials never echoed.

use super::*;

#[test]
fn without_identity_the_caller_is_empty() {
    let (_, body) = call(&request("GET", "/botconnector/bots", &[], ""));
    assert_eq!(
        body["caller"],
        json!({
            "key_id": null,
            "token": {"present": false, "header": null, "aud": null, "exp": null, "seconds_left": null},
            "credential_headers_seen": [],
        })
    );
}

#[test]
fn reports_the_key_id_and_the_decoded_token_but_never_the_token() {
    let token = demo_token();
    let bearer = format!("Bearer {token}");
    let req = request(
        "POST",
        "/botconnector/messages",
        &[
            ("x-bcsp-key-id", "demo-genesys"),
            ("authorization", &bearer),
        ],
        &message("hello"),
    );
    let resp = app().handle_at(&req, NOW);
    assert_eq!(resp.status, 200);
    let body = body_json(&resp);
    assert_eq!(
        body["caller"],
        json!({
            "key_id": "demo-genesys",
            "token": {"present": true, "header": "authorization", "aud": AUD,
                      "exp": NOW + 1800, "seconds_left": 1800},
            "credential_headers_seen": [],
        })
    );
    let raw = String::from_utf8_lossy(&resp.body);
    for (i, segment) in token.split('.').enumerate() {
        assert!(!raw.contains(segment), "token segment {i} echoed: {raw}");
    }
    let line = log_line(&req, &resp);
    assert!(!line.contains(&token), "{line}");
    assert!(
        line.contains("demo-genesys") && line.contains("200"),
        "{line}"
    );
}

#[test]
fn an_expired_token_shows_negative_seconds_left() {
    let token = jwt_with_fake_signature(&json!({"aud": AUD, "exp": NOW - 5}));
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[("authorization", &format!("bearer {token}"))],
        "",
    ));
    assert_eq!(body["caller"]["token"]["seconds_left"], -5);
}

#[test]
fn x_serverless_authorization_wins_like_on_cloud_run() {
    let serverless =
        jwt_with_fake_signature(&json!({"aud": "https://serverless", "exp": NOW + 60}));
    let plain = jwt_with_fake_signature(&json!({"aud": AUD, "exp": NOW + 30}));
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[
            ("authorization", &format!("Bearer {plain}")),
            (
                "x-serverless-authorization",
                &format!("Bearer {serverless}"),
            ),
        ],
        "",
    ));
    let token = &body["caller"]["token"];
    assert_eq!(token["header"], "x-serverless-authorization");
    assert_eq!(token["aud"], "https://serverless");
    assert_eq!(token["seconds_left"], 60);
    assert_eq!(body["caller"]["credential_headers_seen"], json!([]));
}

#[test]
fn an_audience_list_is_reported_as_a_list() {
    let token = jwt_with_fake_signature(&json!({"aud": ["a", "b"], "exp": NOW}));
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    ));
    assert_eq!(body["caller"]["token"]["aud"], json!(["a", "b"]));
    assert_eq!(body["caller"]["token"]["seconds_left"], 0);
}

#[test]
fn leaked_credentials_are_named_but_their_values_never_echoed() {
    let secret = "demo-secret-change-me";
    let static_bearer = "Bearer static-genesys-secret";
    let req = request(
        "GET",
        "/botconnector/bots",
        &[
            ("x-bcsp-key", secret),
            ("authorization", static_bearer),
            ("x-serverless-authorization", "Basic dXNlcjpwYXNz"),
            ("x-watson-genesys-verification-token", "watson-secret"),
        ],
        "",
    );
    let resp = app().handle_at(&req, NOW);
    let body = body_json(&resp);
    assert_eq!(
        body["caller"]["credential_headers_seen"],
        json!([
            "x-bcsp-key",
            "x-watson-genesys-verification-token",
            "x-serverless-authorization",
            "authorization"
        ])
    );
    assert_eq!(body["caller"]["token"]["present"], false);
    let raw = String::from_utf8_lossy(&resp.body);
    let line = log_line(&req, &resp);
    for value in [
        secret,
        "static-genesys-secret",
        "dXNlcjpwYXNz",
        "watson-secret",
    ] {
        assert!(!raw.contains(value), "{value} echoed in {raw}");
        assert!(!line.contains(value), "{value} logged in {line}");
    }
}

#[test]
fn a_jwt_next_to_a_static_authorization_is_still_reported() {
    let token = demo_token();
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[
            ("authorization", "Bearer static"),
            ("authorization", &format!("Bearer {token}")),
        ],
        "",
    ));
    assert_eq!(body["caller"]["token"]["present"], true);
    assert_eq!(
        body["caller"]["credential_headers_seen"],
        json!(["authorization"])
    );
}

#[test]
fn several_key_ids_are_all_shown() {
    let (_, body) = call(&request(
        "GET",
        "/botconnector/bots",
        &[
            ("x-bcsp-key-id", "forged"),
            ("x-bcsp-key-id", "demo-genesys"),
        ],
        "",
    ));
    assert_eq!(body["caller"]["key_id"], json!(["forged", "demo-genesys"]));
}

#[test]
fn only_bearer_jwts_count_as_tokens() {
    let good = demo_token();
    assert!(bearer_jwt_claims(&format!("Bearer {good}")).is_some());
    assert!(bearer_jwt_claims(&format!("BEARER  {good} ")).is_some());
    let (h, p, _) = {
        let mut it = good.split('.');
        (
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
            it.next().unwrap_or(""),
        )
    };
    for bad in [
        good.clone(),
        format!("Basic {good}"),
        format!("Bearer {h}.{p}"),
        format!("Bearer {h}.{p}."),
        format!("Bearer {h}.{p}.sig.extra"),
        format!("Bearer {h}.!!!.sig"),
        format!("Bearer {h}.{}.sig", base64url_unpadded(b"[1,2]")),
        format!("Bearer {}.{p}.sig", base64url_unpadded(b"not json")),
        "Bearer".to_string(),
        "Bearer opaque-token".to_string(),
    ] {
        assert!(bearer_jwt_claims(&bad).is_none(), "{bad}");
    }
}
