//! Header names a server reads as ours (`_` for `-`, any case).

use crate::config::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let bots = "/botconnector/bots";

    // --- header-name variants ------------------------------------------------------------------
    for h in ["x-bcsp_key-id", "x_bcsp-key-id", "X-Bcsp-Key_ID"] {
        r.push(row(Variant, &format!("forged `{h}`"), get(bots).key().header(h, "admin"), Pass)
            .up(Up::KeyId("genesys")).up(Up::Absent(h)));
    }
    for h in ["x-serverless_authorization", "X_Serverless-Authorization"] {
        r.push(row(Variant, &format!("forged `{h}`"), get(bots).key().header(h, "Bearer forged.jwt.sig"), Pass)
            .up(Up::Absent(h)).up(Up::OurToken("authorization")));
    }
    r.push(row(Variant, "the valid key under `x_bcsp_key` only", get(bots).header("x_bcsp_key", KEY), Deny(401))
        .note("a variant is never read as a credential"));
    r.push(row(Variant, "the valid key under `x-bcsp_key` and `x-bcsp-key`", get(bots).key().header("x-bcsp_key", KEY), Pass)
        .up(Up::KeyId("genesys")).up(Up::Absent("x-bcsp_key")).note("admitted by the exact name; the copy is removed"));
    r.push(row(Variant, "a wrong key under `X_BCSP-KEY`, the valid one under `x-bcsp-key`",
        get(bots).key().header("X_BCSP-KEY", WRONG), Pass).up(Up::KeyId("genesys")).up(Up::Absent("x_bcsp-key")));
}
