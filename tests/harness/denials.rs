//! Assertions on the filter's denial replies.

use super::Reply;

/// A denial per the contract: status, JSON content type, `error`, `message`, `request_id`.
pub fn assert_denied(reply: &Reply, status: u16, request_id: &str) {
    assert_eq!(reply.status, status, "reply: {}", reply.text());
    let ct = reply.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type of a denial: {ct:?}"
    );
    let body = reply.json();
    let (error, message) = match status {
        401 => ("unauthenticated", "a valid credential is required"),
        403 => ("forbidden", "client address is not allowed"),
        _ => panic!("not a denial status: {status}"),
    };
    assert_eq!(body["error"], error, "body: {body}");
    assert_eq!(body["message"], message, "body: {body}");
    assert_eq!(body["request_id"], request_id, "body: {body}");
}

/// 401 as above, plus a `www-authenticate` that names `header` and none of `secrets`.
pub fn assert_unauthenticated(reply: &Reply, request_id: &str, header: &str, secrets: &[&str]) {
    assert_denied(reply, 401, request_id);
    let www = reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("401 without www-authenticate: {:?}", reply.headers));
    assert!(
        www.to_ascii_lowercase()
            .contains(&header.to_ascii_lowercase()),
        "www-authenticate {www:?} does not name {header}"
    );
    for s in secrets {
        assert!(!www.contains(s), "www-authenticate leaks a secret: {www:?}");
    }
}
