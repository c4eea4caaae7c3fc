//! Log lines and the order of reply fields.

use super::*;

#[test]
fn log_lines_name_method_path_key_and_status_only() {
    let req = request(
        "GET",
        "/botconnector/bots?secret=query",
        &[("x-bcsp-key-id", "demo-genesys")],
        "",
    );
    let resp = app().handle_at(&req, NOW);
    assert_eq!(
        log_line(&req, &resp),
        "sample-bcsp: GET /botconnector/bots key_id=demo-genesys -> 200"
    );
    let anon = request("GET", "/nope", &[("x-bcsp-key-id", "a\nb")], "");
    let resp = app().handle_at(&anon, NOW);
    assert_eq!(
        log_line(&anon, &resp),
        "sample-bcsp: GET /nope key_id=a\\nb -> 404"
    );
}

#[test]
fn replies_read_in_a_natural_order() {
    let resp = app().handle_at(
        &request("POST", "/botconnector/messages", &[], &message("hi")),
        NOW,
    );
    let raw = String::from_utf8_lossy(&resp.body);
    assert!(
        raw.starts_with(r#"{"botState":"MoreData","replyMessages":"#),
        "{raw}"
    );
    assert!(
        raw.contains(r#","caller":{"key_id":null,"token":{"present":false,"#),
        "{raw}"
    );
    let resp = app().handle_at(&request("GET", "/botconnector/bots", &[], ""), NOW);
    let raw = String::from_utf8_lossy(&resp.body);
    assert!(
        raw.starts_with(r#"{"entities":[{"id":"demo-bot","name":"#),
        "{raw}"
    );
    let resp = app().handle_at(&request("POST", "/botconnector/messages", &[], "{"), NOW);
    let raw = String::from_utf8_lossy(&resp.body);
    assert!(
        raw.starts_with(r#"{"botState":"Failed","errorInfo":{"errorCode":"InvalidJson","#),
        "{raw}"
    );
}
