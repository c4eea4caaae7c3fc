//! The whole request path (`pipeline::on_request_headers`, the function both hosts run)
//! through the recording host: never admits without a matching valid key, and what an
//! admitted request carries upstream holds no credential and no secret.

use super::decision::{decision_case, DecisionCase, SECRETS};
use super::*;
use bcsp_guard::pipeline::metrics::Stats;
use bcsp_guard::pipeline::record::Recorder;
use bcsp_guard::pipeline::{Guard, Outcome, Ports, TokenPort};
use bcsp_guard::token::Missing;
use std::rc::Rc;

/// Contains no generated secret (not even the one-letter `x`).
const TOKEN: &str = "Bearer upstream.token.sig";

struct Cached;

impl TokenPort for Cached {
    fn header_value(&self, _audience: &str) -> Option<Rc<str>> {
        Some(Rc::from(TOKEN))
    }
    fn on_missing(&self, _audience: &str) -> Missing {
        Missing::Reject { retry_after_s: 1 }
    }
}

fn guard(case: &DecisionCase, upstream_token: bool) -> Guard {
    let mut doc = case.document();
    if upstream_token {
        doc["upstream_token"] = json!({"cluster": "gcp", "audience": "https://bcsp.example"});
    }
    let policy = compile(doc.to_string().as_bytes()).expect("generated policy compiles");
    let mut next = 0;
    let stats = Stats::define(&policy, |_, _| {
        next += 1;
        Some(next)
    });
    Guard { policy, stats }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// The decision property's random keys, allowlists, client-IP rules, X-Forwarded-For lists
    /// and header sets, with and without token injection, run through the pipeline: every
    /// verdict is the reference's (the admitted key stamped, or 401/403 with one reply); an
    /// admitted request's effects remove every credential header it carried and every forged
    /// key id, and nothing the filter sets holds a secret.
    #[test]
    fn pipeline_never_admits_without_a_matching_valid_key(
        case in decision_case(),
        upstream_token in any::<bool>(),
    ) {
        let guard = guard(&case, upstream_token);
        let headers = case.headers();
        let now = case.now_ms();
        let mut host = Recorder::new(headers.clone(), now);
        if let Some(source) = &case.downstream.0 {
            host = host.with_property("source.address", source.as_str());
        }
        let ports = Ports { tokens: Some(&Cached), lockout: None };
        let fx = host.run(&guard, ports);

        match (case.reference(&headers, now), &fx.outcome) {
            (Ok(i), Outcome::Forward) => {
                let id = format!("key-{i}");
                prop_assert_eq!(fx.header("x-bcsp-key-id"), vec![id.as_str()]);
                prop_assert!(fx.replies.is_empty(), "admitted and replied: {:?}", fx.replies);
                prop_assert_eq!(fx.count(guard.stats.allowed), 1);
            }
            (Err(reason), Outcome::Replied) => {
                prop_assert_eq!(fx.replies.len(), 1);
                prop_assert_eq!(fx.reply().map(|r| r.status), Some(reason.status()));
                prop_assert!(fx.edits.is_empty(), "refused request edited: {:?}", fx.edits);
                prop_assert_eq!(fx.count(guard.stats.allowed), 0);
                return Ok(());
            }
            (want, got) => prop_assert!(false, "reference {:?}, pipeline {:?}: headers {:?}", want, got, headers),
        }
        let token_header = upstream_token.then_some("authorization");
        // The policy's credential headers, the key id, and with a token the client's identity.
        let mut controlled: Vec<&str> = guard.policy.keys.headers().iter().map(String::as_str).collect();
        controlled.push("x-bcsp-key-id");
        if upstream_token {
            controlled.extend(["authorization", "x-serverless-authorization"]);
        }
        for h in controlled {
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(h)) {
                prop_assert!(fx.removed().any(|n| n.eq_ignore_ascii_case(h)), "{} not removed: {:?}", h, fx.edits);
            }
            let left = fx.header(h);
            let from_filter = h == "x-bcsp-key-id" || token_header == Some(h);
            prop_assert!(from_filter || left.is_empty(), "{} reaches the upstream: {:?}", h, left);
        }
        if token_header.is_some() {
            prop_assert_eq!(fx.header("authorization"), vec![TOKEN]);
        }
        for (name, value) in fx.set() {
            for secret in SECRETS {
                prop_assert!(!value.contains(secret), "{} set to a secret: {}", name, value);
            }
        }
    }
}
