//! A valid key plus forged identity headers (key id, tokens, method overrides).

use crate::config::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let bots = "/botconnector/bots";

    // --- forged identity ---------------------------------------------------------------------
    r.push(row(Identity, "forged `x_bcsp_key_id` (underscores)", get(bots).key().header("x_bcsp_key_id", "admin"), Pass)
        .up(Up::KeyId("genesys")).up(Up::Absent("x_bcsp_key_id")));
    r.push(row(Identity, "forged `x_serverless_authorization` (underscores)",
        get(bots).key().header("x_serverless_authorization", "Bearer forged.jwt.sig"), Pass)
        .up(Up::Absent("x_serverless_authorization")));
    r.push(row(Identity, "101 forged `x-bcsp-key-id` fields", {
        let mut q = get(bots).key();
        for i in 0..101 { q = q.header("x-bcsp-key-id", &format!("forged-{i}")); }
        q
    }, Refused(&[431])).h2(Via::Curl, Refused(&[431, 0]))
        .note("over Envoy's 100-header limit"));
    r.push(row(Identity, "forged `x-bcsp-key-id`", get(bots).key().header("x-bcsp-key-id", "admin"), Pass)
        .up(Up::KeyId("genesys")));
    r.push(row(Identity, "forged `X-BCSP-KEY-ID` twice",
        get(bots).key().header("X-BCSP-KEY-ID", "admin").header("x-bcsp-key-id", "root"), Pass).up(Up::KeyId("genesys")));
    r.push(row(Identity, "forged key id with the Bearer key",
        get(bots).header("authorization", &format!("Bearer {BEARER}")).header("x-bcsp-key-id", "genesys"), Pass)
        .up(Up::KeyId("genesys-bearer")));
    r.push(row(Identity, "forged `authorization`", get(bots).key().header("authorization", "Bearer forged.jwt.sig"), Pass)
        .up(Up::OurToken("authorization")));
    r.push(row(Identity, "forged `authorization` twice",
        get(bots).key().header("authorization", "Bearer a.b.c").header("Authorization", "Bearer d.e.f"), Pass)
        .up(Up::OurToken("authorization")));
    r.push(row(Identity, "forged `x-serverless-authorization`",
        get(bots).key().header("x-serverless-authorization", "Bearer forged.jwt.sig"), Pass)
        .up(Up::Absent("x-serverless-authorization")));
    r.push(row(Identity, "forged `x-serverless-authorization` twice and `authorization`",
        get(bots).key().header("x-serverless-authorization", "Bearer a.b.c")
            .header("X-Serverless-Authorization", "Bearer d.e.f").header("authorization", "Bearer g.h.i"), Pass)
        .up(Up::Absent("x-serverless-authorization")).up(Up::OurToken("authorization")));
    r.push(row(Identity, "`connection: x-bcsp-key-id, authorization` (drop ours)",
        get(bots).key().header("connection", "x-bcsp-key-id, authorization"), Pass)
        .up(Up::KeyId("genesys")).h2(Via::Frames, H2BAD));
    r.push(row(Identity, "bare CR smuggling `x-bcsp-key-id` inside another header",
        get(bots).key().header("x-note", "a\rx-bcsp-key-id: admin"), Pass).up(Up::KeyId("genesys"))
        .up(Up::Header("x-note", "ax-bcsp-key-id: admin".into())).h2(Via::Frames, H2BAD)
        .note("Envoy drops the CR: one harmless `x-note` reaches the upstream"));
    r.push(row(Identity, "`x-http-method-override: DELETE` on a GET route",
        get(bots).key().header("x-http-method-override", "DELETE"), Pass)
        .up(Up::Absent("x-http-method-override"))
        .note("with `routes` set, path and method override headers are removed in every spelling"));
    for h in ["x-http-method", "x-method-override", "x_http_method_override", "x-original-url", "x-rewrite-url", "X-Original_URL"] {
        let value = if h.ends_with("url") || h.ends_with("URL") { "/botconnector/admin" } else { "DELETE" };
        r.push(row(Identity, &format!("`{h}: {value}` on a GET route"), get(bots).key().header(h, value), Pass).up(Up::Absent(h)));
    }
}
