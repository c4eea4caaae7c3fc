//! Envoy routes that match the key id header; an audience per key.

use crate::config::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let bots = "/botconnector/bots";

    // --- Envoy routes on the key id header -----------------------------------------------------
    let bearer = || get(bots).header("authorization", &format!("Bearer {BEARER}"));
    r.push(row(KeyRoute, "valid `x-bcsp-key`", get(bots).key(), Pass)
        .up(Up::KeyId("genesys")).up(Up::Header("x-routed", "default".into())));
    r.push(row(KeyRoute, "valid Bearer key", bearer(), Pass)
        .up(Up::KeyId("genesys-bearer")).up(Up::Header("x-routed", "bearer".into())));
    r.push(row(KeyRoute, "valid `x-bcsp-key`, forged `x-bcsp-key-id: genesys-bearer`",
        get(bots).key().header("x-bcsp-key-id", "genesys-bearer"), Pass)
        .up(Up::KeyId("genesys")).up(Up::Header("x-routed", "default".into()))
        .note("Envoy routes again on the id bcsp-guard stamped, not on the forged one"));
    r.push(row(KeyRoute, "valid Bearer key, forged `x-bcsp-key-id: genesys`", bearer().header("x-bcsp-key-id", "genesys"), Pass)
        .up(Up::KeyId("genesys-bearer")).up(Up::Header("x-routed", "bearer".into())));
    r.push(row(KeyRoute, "valid key, `x_bcsp_key_id` (underscores refused by Envoy)",
        get(bots).key().header("x_bcsp_key_id", "genesys-bearer"), E400).h2(Via::Curl, H2BAD));
}
