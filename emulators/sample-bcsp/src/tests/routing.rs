//! Routing: health, the bot list, unknown paths and methods, the base path.

use super::*;

#[test]
fn healthz_answers_200() {
    let (status, body) = call(&request("GET", "/healthz", &[], ""));
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[test]
fn lists_the_demo_bot_in_the_genesys_shape() {
    let (status, body) = call(&request("GET", "/botconnector/bots", &[], ""));
    assert_eq!(status, 200);
    let bots = body["entities"].as_array().cloned().unwrap_or_default();
    assert_eq!(bots.len(), 1, "{body}");
    let bot = &bots[0];
    assert_eq!(bot["id"], "demo-bot");
    assert!(bot["name"].is_string() && bot["description"].is_string());
    assert_eq!(
        bot["versions"],
        json!([{
            "version": "1",
            "supportedLanguages": ["en-us"],
            "intents": [{"name": "Greeting", "entities": []}],
        }])
    );
    assert!(body["caller"].is_object(), "{body}");
}

#[test]
fn gets_one_bot_and_404s_an_unknown_one() {
    let (status, body) = call(&request("GET", "/botconnector/bots/demo-bot", &[], ""));
    assert_eq!(status, 200);
    assert_eq!(body["id"], "demo-bot");
    assert_eq!(body["versions"][0]["version"], "1");
    assert!(body["caller"].is_object());

    let (status, body) = call(&request("GET", "/botconnector/bots/nope", &[], ""));
    assert_eq!(status, 404);
    assert_eq!(body["errorInfo"]["errorCode"], "BotNotFound");
}

#[test]
fn query_strings_and_a_trailing_slash_on_bots_are_fine() {
    assert_eq!(
        call(&request("GET", "/botconnector/bots?x=1", &[], "")).0,
        200
    );
    assert_eq!(call(&request("GET", "/botconnector/bots/", &[], "")).0, 200);
}

#[test]
fn unknown_paths_are_404_with_a_hint() {
    for target in [
        "/",
        "/bots",
        "/botconnector",
        "/botconnectorx/bots",
        "/botconnector/bots/demo-bot/extra",
        "/botconnector/message",
    ] {
        let (status, body) = call(&request("GET", target, &[], ""));
        assert_eq!(status, 404, "{target}");
        assert_eq!(body["errorInfo"]["errorCode"], "NotFound", "{target}");
        let hint = body["errorInfo"]["errorMessage"].as_str().unwrap_or("");
        assert!(hint.contains("/botconnector/messages"), "{hint}");
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    for (method, target, allow) in [
        ("POST", "/botconnector/bots", "GET, HEAD"),
        ("DELETE", "/botconnector/bots/demo-bot", "GET, HEAD"),
        ("GET", "/botconnector/messages", "POST"),
        ("POST", "/healthz", "GET, HEAD"),
    ] {
        let resp = app().handle_at(&request(method, target, &[], ""), NOW);
        assert_eq!(resp.status, 405, "{method} {target}");
        assert!(
            resp.headers.iter().any(|(n, v)| n == "allow" && v == allow),
            "{:?}",
            resp.headers
        );
        assert_eq!(body_json(&resp)["botState"], "Failed");
    }
}

#[test]
fn base_path_is_configurable_and_normalised() {
    let ok = |p: &str| match App::new(p) {
        Ok(app) => app,
        Err(e) => panic!("{p}: {e}"),
    };
    let custom = ok("/v2/genesys/");
    assert_eq!(custom.base_path(), "/v2/genesys");
    let get = |app: &App, target: &str| app.handle_at(&request("GET", target, &[], ""), NOW);
    assert_eq!(get(&custom, "/v2/genesys/bots").status, 200);
    assert_eq!(get(&custom, "/botconnector/bots").status, 404);

    let root = ok("/");
    assert_eq!(root.base_path(), "/");
    assert_eq!(get(&root, "/bots").status, 200);
    assert_eq!(get(&root, "/bots/demo-bot").status, 200);
    assert_eq!(get(&root, "/healthz").status, 200);

    for bad in ["", "botconnector", "/a b", "/a?b", "/a//b", "/a#b"] {
        assert!(App::new(bad).is_err(), "{bad:?} accepted");
    }
}
