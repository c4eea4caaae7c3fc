//! The local replies the filter sends instead of forwarding: JSON bodies with a stable
//! `error` code, a human message and the request id. They never carry a secret.

pub const UNAUTHENTICATED: &str = "unauthenticated";
pub const FORBIDDEN: &str = "forbidden";
pub const NO_TOKEN: &str = "upstream_token_unavailable";
pub const NOT_FOUND: &str = "not_found";
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
pub const TOO_LARGE: &str = "payload_too_large";
pub const MEDIA_TYPE: &str = "unsupported_media_type";
pub const LOCKED_OUT: &str = "too_many_failures";
pub const BODY_UNAVAILABLE: &str = "webhook_body_unavailable";
pub const REQUEST_TIMEOUT: &str = "request_timeout";

/// A local reply, ready for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn unauthenticated(challenge: &str, request_id: Option<&str>) -> Reply {
        let mut r = Reply::json(
            401,
            UNAUTHENTICATED,
            "a valid credential is required",
            request_id,
        );
        r.headers.push(("www-authenticate", challenge.to_owned()));
        r
    }

    pub fn forbidden(request_id: Option<&str>) -> Reply {
        Reply::json(403, FORBIDDEN, "client address is not allowed", request_id)
    }

    pub fn no_token(retry_after_s: u64, request_id: Option<&str>) -> Reply {
        let mut r = Reply::json(
            503,
            NO_TOKEN,
            "no valid identity token for the upstream yet; retry later",
            request_id,
        );
        r.headers
            .push(("retry-after", retry_after_s.max(1).to_string()));
        r
    }

    pub fn not_found(request_id: Option<&str>) -> Reply {
        Reply::json(404, NOT_FOUND, "no such endpoint", request_id)
    }

    /// `allow` lists the methods the path does take.
    pub fn method_not_allowed(allow: &str, request_id: Option<&str>) -> Reply {
        let mut r = Reply::json(
            405,
            METHOD_NOT_ALLOWED,
            "this endpoint does not take this method",
            request_id,
        );
        r.headers.push(("allow", allow.to_owned()));
        r
    }

    pub fn too_large(max_body_bytes: u64, request_id: Option<&str>) -> Reply {
        Reply::json(
            413,
            TOO_LARGE,
            &format!("the request body is larger than {max_body_bytes} bytes"),
            request_id,
        )
    }

    /// A held webhook delivery whose body never reached the filter (a proxy setting is
    /// missing); 5xx so that the sender retries once it is fixed.
    pub fn body_unavailable(request_id: Option<&str>) -> Reply {
        Reply::json(
            503,
            BODY_UNAVAILABLE,
            "the request body could not be read for verification; retry later",
            request_id,
        )
    }

    /// A held webhook delivery whose body did not arrive in full before its deadline.
    pub fn request_timeout(request_id: Option<&str>) -> Reply {
        Reply::json(
            408,
            REQUEST_TIMEOUT,
            "the request body did not arrive in time",
            request_id,
        )
    }

    pub fn unsupported_media_type(request_id: Option<&str>) -> Reply {
        Reply::json(
            415,
            MEDIA_TYPE,
            "the request body must be JSON (content-type: application/json)",
            request_id,
        )
    }

    pub fn locked_out(retry_after_s: u64, request_id: Option<&str>) -> Reply {
        let mut r = Reply::json(
            429,
            LOCKED_OUT,
            "too many failed authentications from this address; retry later",
            request_id,
        );
        r.headers
            .push(("retry-after", retry_after_s.max(1).to_string()));
        r
    }

    fn json(status: u32, error: &str, message: &str, request_id: Option<&str>) -> Reply {
        let id = match request_id {
            // Bounded: the id is reflected back and came from the request.
            Some(id) => format!("\"{}\"", escape(&id.chars().take(128).collect::<String>())),
            None => "null".to_owned(),
        };
        Reply {
            status,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("cache-control", "no-store".to_owned()),
            ],
            body: format!(
                "{{\"error\":\"{}\",\"message\":\"{}\",\"request_id\":{id}}}",
                escape(error),
                escape(message)
            ),
        }
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_with_stable_fields() {
        let r = Reply::unauthenticated("ApiKey realm=\"bcsp-guard\"", Some("id-\"1\"\n\\"));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"], "unauthenticated");
        assert_eq!(v["request_id"], "id-\"1\"\n\\");
        assert_eq!(r.status, 401);
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| *n == "www-authenticate" && v.starts_with("ApiKey")));

        let v: serde_json::Value = serde_json::from_str(&Reply::forbidden(None).body).unwrap();
        assert_eq!(v["error"], "forbidden");
        assert!(v["request_id"].is_null());

        let r = Reply::no_token(0, Some("x"));
        assert_eq!(r.status, 503);
        assert!(r.headers.contains(&("retry-after", "1".to_owned())));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"], "upstream_token_unavailable");
    }

    #[test]
    fn route_body_and_lockout_replies_carry_their_headers() {
        let r = Reply::method_not_allowed("GET, POST", Some("r"));
        assert_eq!(r.status, 405);
        assert!(r.headers.contains(&("allow", "GET, POST".to_owned())));
        let r = Reply::locked_out(0, None);
        assert_eq!(r.status, 429);
        assert!(r.headers.contains(&("retry-after", "1".to_owned())));
        for (r, code) in [
            (Reply::not_found(None), "not_found"),
            (Reply::too_large(10, None), "payload_too_large"),
            (
                Reply::unsupported_media_type(None),
                "unsupported_media_type",
            ),
            (Reply::locked_out(3, None), "too_many_failures"),
            (Reply::body_unavailable(None), "webhook_body_unavailable"),
            (Reply::request_timeout(None), "request_timeout"),
        ] {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["error"], code);
        }
    }

    #[test]
    fn reflected_request_id_is_bounded() {
        let long = "a".repeat(10_000);
        let r = Reply::forbidden(Some(&long));
        assert!(r.body.len() < 300);
    }
}
