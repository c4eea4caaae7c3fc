//! The route allowlist and the body limit, for authenticated callers only.

use super::*;

#[test]
fn routes_answer_authenticated_callers_only_and_in_order() {
    let g = guard(ROUTES_CFG);
    let json = ("content-type", "application/json");
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Option<u32>);
    let cases: &[Case] = &[
        (
            "GET",
            "/botconnector/bots",
            &[("x-bcsp-key", "alpha")],
            None,
        ),
        (
            "GET",
            "/botconnector/bots/b1?x=1",
            &[("x-bcsp-key", "alpha")],
            None,
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), json],
            None,
        ),
        // Unauthenticated: 401 whatever the path, so paths cannot be discovered.
        ("GET", "/admin", &[], Some(401)),
        (
            "DELETE",
            "/botconnector/bots",
            &[("x-bcsp-key", "nope")],
            Some(401),
        ),
        ("GET", "/botconnector/bots/../admin", &[], Some(401)),
        ("GET", "/admin", &[("x-bcsp-key", "alpha")], Some(404)),
        (
            "GET",
            "/botconnector/bots/../admin",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "GET",
            "/botconnector/bots%2fb1",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "GET",
            "/botconnector//bots",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "GET",
            "/botconnector/bots;a=b",
            &[("x-bcsp-key", "alpha")],
            Some(404),
        ),
        (
            "DELETE",
            "/botconnector/bots",
            &[("x-bcsp-key", "alpha")],
            Some(405),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha")],
            Some(415),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), ("content-type", "text/plain")],
            Some(415),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), json, ("content-length", "101")],
            Some(413),
        ),
        (
            "POST",
            "/botconnector/messages",
            &[("x-bcsp-key", "alpha"), json, ("content-length", "100")],
            None,
        ),
    ];
    for (method, path, extra, want) in cases {
        let mut headers = vec![(":method", *method), (":path", *path)];
        headers.extend_from_slice(extra);
        let host = FakeHost::with(&headers);
        let step = on_headers(&host, &g, true);
        assert_eq!(last_status(&host), *want, "{method} {path} {extra:?}");
        assert_eq!(step.outcome == Outcome::Forward, want.is_none());
        if let Some(405) = want {
            let r = host.replies.borrow();
            assert!(r[0].headers.contains(&("allow", "GET".to_owned())));
        }
    }
    let host = FakeHost::with(&[(":method", "GET"), (":path", "/x"), ("x-bcsp-key", "alpha")]);
    on_headers(&host, &g, true);
    assert_eq!(host.count(g.stats.denied_route), 1);
}

#[test]
fn a_streamed_body_over_the_limit_is_cut_off_with_413() {
    let g = guard(r#","max_body_bytes":100"#);
    let host = FakeHost::with(&[
        (":method", "POST"),
        (":path", "/m"),
        ("x-bcsp-key", "alpha"),
    ]);
    let mut step = on_headers(&host, &g, false);
    assert_eq!(step.outcome, Outcome::Forward);
    let mut body =
        |size, end| on_request_body(&host, &g, Ports::default(), &mut step.body, size, end);
    assert_eq!(body(60, false), Outcome::Forward);
    assert_eq!(
        body(40, false),
        Outcome::Forward,
        "exactly the limit is fine"
    );
    assert_eq!(body(1, true), Outcome::Replied);
    assert_eq!(last_status(&host), Some(413));
    assert_eq!(host.count(g.stats.denied_body_too_large), 1);
}
