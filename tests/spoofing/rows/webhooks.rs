//! Open Messaging webhook signatures, and the token in `x-serverless-authorization` mode.

use crate::config::*;
use crate::harness::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;

    // --- webhooks ----------------------------------------------------------------------------
    let over = om_event(LIMIT + 1);
    let body = om_event(600);
    let good = om_signature(OM_SECRET, &body);
    let inbound = "/openmessaging/inbound";
    r.push(row(Webhook, "baseline: signed delivery", hook(inbound, &body, &good), Pass)
        .up(Up::NoKeyId).up(Up::BodyLen(body.len())).up(Up::Target(inbound.into())));
    r.push(row(Webhook, "signature over a different body",
        hook(inbound, &body, &om_signature(OM_SECRET, &om_event(601))), Deny(401)));
    r.push(row(Webhook, "signature in hex instead of base64",
        hook(inbound, &body, &format!("sha256={}", hex_lower(&hmac_sha256(OM_SECRET.as_bytes(), &body)))), Deny(401)));
    r.push(row(Webhook, "signature without `sha256=`",
        hook(inbound, &body, good.trim_start_matches("sha256=")), Deny(401)));
    r.push(row(Webhook, "signature with another secret",
        hook(inbound, &body, &om_signature("not-the-om-secret-0123", &body)), Deny(401)));
    r.push(row(Webhook, "signature repeated", hook(inbound, &body, &good).header("x-hub-signature-256", &good), Deny(401)));
    r.push(row(Webhook, "valid key instead of a signature",
        req("POST", inbound).key().json(body.clone()), Deny(401)));
    r.push(row(Webhook, "signed delivery over the limit",
        hook(inbound, &over, &om_signature(OM_SECRET, &over)), Deny(413)));
    r.push(row(Webhook, "signed delivery, forged key id, `authorization` and a wrong key",
        hook(inbound, &body, &good).header("x-bcsp-key-id", "genesys").header("authorization", "Bearer forged.jwt.sig")
            .header("x-bcsp-key", WRONG), Pass).up(Up::NoKeyId).up(Up::OurToken("authorization")));
    r.push(row(Webhook, "signed body sent to `/openmessaging/../botconnector/messages`",
        hook("/openmessaging/../botconnector/messages", &body, &good), Deny(401))
        .note("normalised to a keyed route: a signature is not a key"));
    r.push(row(Webhook, "key sent to `/botconnector/../openmessaging/inbound`",
        req("POST", "/botconnector/../openmessaging/inbound").key().json(body.clone()), Deny(401)));
    r.push(row(Webhook, "signed delivery to `/openmessaging%2f..%2fbotconnector/messages`",
        hook("/openmessaging%2f..%2fbotconnector/messages", &body, &good), E400).h2(Via::Curl, H2BAD));
    r.push(row(Webhook, "signed delivery to `/OpenMessaging/inbound`",
        hook("/OpenMessaging/inbound", &body, &good), Deny(401)));
    r.push(row(Webhook, "signed delivery to `/openmessagingX`", hook("/openmessagingX", &body, &good), Deny(401)));
    r.push(row(Webhook, "GET with the signature of an empty body",
        get(inbound).header("x-hub-signature-256", &om_signature(OM_SECRET, b"")), Deny(405)));

    // --- x-serverless-authorization mode -----------------------------------------------------
    r.push(row(Serverless, "forged `x-serverless-authorization`",
        get("/x").key().header("x-serverless-authorization", "Bearer forged.jwt.sig"), Pass)
        .up(Up::OurToken("x-serverless-authorization")));
    r.push(row(Serverless, "forged `x-serverless-authorization` twice",
        get("/x").key().header("x-serverless-authorization", "Bearer a.b.c").header("X-Serverless-Authorization", "Bearer d.e.f"),
        Pass).up(Up::OurToken("x-serverless-authorization")));
    r.push(row(Serverless, "caller's `authorization` goes to the app", get("/x").key().header("authorization", "Basic YXBwOmFwcA=="), Pass)
        .up(Up::Header("authorization", "Basic YXBwOmFwcA==".into()))
        .note("documented: in this mode `authorization` belongs to the BCSP"));
    r.push(row(Serverless, "two `authorization` fields", get("/x").key().header("authorization", "Basic a")
        .header("authorization", "Basic b"), Pass).up(Up::Header("authorization", "Basic a,Basic b".into()))
        .note("Envoy joins them into one value before any filter"));
    r.push(row(Serverless, "no credential", get("/x").header("x-serverless-authorization", "Bearer forged.jwt.sig"), Deny(401)));
}
