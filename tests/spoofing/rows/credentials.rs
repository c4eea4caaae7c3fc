//! Credential headers, and header bytes that are not UTF-8.

use crate::config::*;
use crate::harness::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let bots = "/botconnector/bots";

    // --- credential headers ------------------------------------------------------------------
    r.push(row(Credential, "baseline: valid `x-bcsp-key`", get(bots).key(), Pass)
        .up(Up::KeyId("genesys")).up(Up::Target(bots.into())));
    r.push(row(Credential, "baseline: valid `authorization: Bearer`",
        get(bots).header("authorization", &format!("Bearer {BEARER}")), Pass).up(Up::KeyId("genesys-bearer")));
    r.push(row(Credential, "baseline: no credential", get(bots), Deny(401)));
    r.push(row(Credential, "name in mixed case `X-Bcsp-Key`", get(bots).header("X-Bcsp-Key", KEY), Pass)
        .up(Up::KeyId("genesys"))
        .note("HTTP/2 through curl: curl lower-cases the name, so this is the plain header"));
    r.push(row(Credential, "name in upper case `X-BCSP-KEY`", get(bots).header("X-BCSP-KEY", KEY), Pass)
        .up(Up::KeyId("genesys")).h2(Via::Frames, H2BAD)
        .note("upper-case field names are malformed in HTTP/2 (RFC 9113 8.2.1)"));
    r.push(row(Credential, "repeated, both valid", get(bots).key().key(), Deny(401))
        .note("HTTP/2: two header fields of the same name"));
    r.push(row(Credential, "repeated in two letter cases", get(bots).key().header("X-BCSP-Key", KEY), Deny(401)));
    r.push(row(Credential, "repeated, valid then empty", get(bots).key().header("x-bcsp-key", ""), Deny(401)));
    r.push(row(Credential, "repeated, wrong then valid", get(bots).header("x-bcsp-key", WRONG).key(), Deny(401)));
    r.push(row(Credential, "two copies in one value, comma-joined",
        get(bots).header("x-bcsp-key", &format!("{KEY}, {KEY}")), Deny(401)));
    r.push(row(Credential, "`authorization: Bearer` repeated",
        get(bots).header("authorization", &format!("Bearer {BEARER}")).header("authorization", &format!("Bearer {BEARER}")),
        Deny(401)).note("Envoy joins repeated `authorization` fields into one value with `,`"));
    r.push(row(Credential, "valid `x-bcsp-key` plus a wrong Bearer",
        get(bots).key().header("authorization", &format!("Bearer {WRONG}")), Pass)
        .up(Up::KeyId("genesys")).note("a valid key admits; both credential headers are removed"));
    r.push(row(Credential, "leading and trailing spaces", get(bots).header("x-bcsp-key", &format!("   {KEY}   ")), Pass)
        .up(Up::KeyId("genesys")).h2(Via::Frames, Deny(401))
        .note("HTTP/1.1: Envoy drops the whitespace around a value before any filter; HTTP/2: Envoy \
               passes it on and the filter compares the exact bytes"));
    r.push(row(Credential, "leading and trailing tabs", get(bots).header("x-bcsp-key", &format!("\t{KEY}\t")), Pass)
        .up(Up::KeyId("genesys")).h2(Via::Frames, Deny(401)));
    r.push(row(Credential, "whitespace inside the value", get(bots).header("x-bcsp-key", &format!("{KEY} x")), Deny(401)));
    r.push(row(Credential, "obs-fold continuation of the value",
        get(bots).header("x-bcsp-key", &format!("{KEY}\r\n {KEY}")), Deny(401))
        .no_h2("no line folding in HTTP/2; see the CR and LF rows")
        .note("Envoy accepts obs-fold and unfolds it to a space: the filter sees `<key> <key>`"));
    r.push(row(Credential, "obs-fold hiding a credential line",
        get(bots).header("x-note", &format!("a\r\n x-bcsp-key: {KEY}")), Deny(401))
        .no_h2("no line folding in HTTP/2").note("unfolded into the value of `x-note`"));
    r.push(row(Credential, "obs-fold before the key (empty first line)",
        get(bots).header("x-bcsp-key", &format!("\r\n {KEY}")), Pass).up(Up::KeyId("genesys"))
        .no_h2("no line folding in HTTP/2").note("unfolds to the key itself: the same secret, no bypass"));
    r.push(row(Credential, "obs-fold in another header, valid key",
        get(bots).key().header("x-note", "a\r\n b"), Pass).up(Up::Header("x-note", "a b".into()))
        .no_h2("no line folding in HTTP/2"));
    r.push(row(Credential, "NUL in the value", get(bots).header("x-bcsp-key", &format!("{KEY}\0")), E400)
        .h2(Via::Frames, H2BAD));
    r.push(row(Credential, "NUL in the name", get(bots).header("x-bcsp\0-key", KEY), E400).h2(Via::Frames, H2BAD));
    r.push(row(Credential, "bare CR in the value", get(bots).header("x-bcsp-key", &format!("{KEY}\rx")), Deny(401))
        .h2(Via::Frames, H2BAD).note("HTTP/1.1: Envoy drops a bare CR, so the filter sees `<key>x`"));
    r.push(row(Credential, "bare LF in the value", get(bots).header("x-bcsp-key", &format!("{KEY}\nx")), E400)
        .h2(Via::Frames, H2BAD));
    r.push(row(Credential, "CR LF and a credential line inside one value",
        get(bots).header("x-note", &format!("a\r\nx-bcsp-key: {KEY}")), Deny(401))
        .no_h1("in HTTP/1.1 a CR LF simply ends the field").h2(Via::Frames, H2BAD));
    r.push(row(Credential, "vertical tab after the key", get(bots).header("x-bcsp-key", &format!("{KEY}\x0b")), E400)
        .h2(Via::Frames, H2BAD));
    r.push(row(Credential, "space before the colon", get(bots).header("x-bcsp-key ", KEY), E400)
        .h2(Via::Frames, H2BAD));
    r.push(row(Credential, "64 KiB value", get(bots).header("x-bcsp-key", &"A".repeat(64 * 1024)), Refused(&[431]))
        .h2(Via::Curl, Refused(&[431, 0])));
    r.push(row(Credential, "58 KiB wrong value (under Envoy's header limit)",
        get(bots).header("x-bcsp-key", &"A".repeat(58 * 1024)), Deny(401)));
    r.push(row(Credential, "key in the query string", get(&format!("{bots}?x-bcsp-key={KEY}")), Deny(401)));
    r.push(row(Credential, "key in a cookie", get(bots).header("cookie", &format!("x-bcsp-key={KEY}")), Deny(401)));
    r.push(row(Credential, "key in a chunked trailer",
        req("POST", "/botconnector/messages").raw_h1(format!(
            "POST /botconnector/messages HTTP/1.1\r\nhost: bcsp.test\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{MSG}\r\n0\r\nx-bcsp-key: {KEY}\r\n\r\n",
            MSG.len())), Deny(401))
        .no_h2("trailers are not credentials; covered over HTTP/1.1"));
    r.push(row(Credential, "hash of the key instead of the key",
        get(bots).header("x-bcsp-key", &sha256_hex(KEY)), Deny(401)));
    r.push(row(Credential, "key missing its last character",
        get(bots).header("x-bcsp-key", &KEY[..KEY.len() - 1]), Deny(401)));
    r.push(row(Credential, "key plus one character", get(bots).header("x-bcsp-key", &format!("{KEY}0")), Deny(401)));
    r.push(row(Credential, "`x-bcsp-key: Bearer <key>`", get(bots).header("x-bcsp-key", &format!("Bearer {KEY}")), Deny(401)));
    r.push(row(Credential, "Bearer secret in `x-bcsp-key`", get(bots).header("x-bcsp-key", BEARER), Deny(401)));
    r.push(row(Credential, "`Bearer` with two spaces", get(bots).header("authorization", &format!("Bearer  {BEARER}")), Pass)
        .up(Up::KeyId("genesys-bearer")).note("documented: one or more spaces"));
    r.push(row(Credential, "`bearer` in lower case", get(bots).header("authorization", &format!("bearer {BEARER}")), Pass)
        .up(Up::KeyId("genesys-bearer")));
    r.push(row(Credential, "`Bearer` and a tab", get(bots).header("authorization", &format!("Bearer\t{BEARER}")), Deny(401)));
    r.push(row(Credential, "`Basic` scheme", get(bots).header("authorization", &format!("Basic {BEARER}")), Deny(401)));
    r.push(row(Credential, "scheme only", get(bots).header("authorization", "Bearer"), Deny(401)));
    r.push(row(Credential, "Bearer secret without the scheme", get(bots).header("authorization", BEARER), Deny(401)));
    r.push(row(Credential, "credential nominated hop-by-hop (`connection: x-bcsp-key`)",
        get(bots).key().header("connection", "x-bcsp-key"), Deny(401))
        .h2(Via::Frames, H2BAD)
        .note("Envoy drops the fields `connection` names before any filter; connection-specific \
               fields are malformed in HTTP/2"));

    r.push(row(Credential, "`x-request-id` with JSON metacharacters, no key",
        get(bots).header("x-request-id", r#"a","error":"ok\"#), Deny(401))
        .note("the 401 body stays valid JSON and echoes the id verbatim"));

    // --- bytes that are not UTF-8 --------------------------------------------------------------
    let key_line = format!("x-bcsp-key: {KEY}");
    let mut bad_key = KEY.as_bytes().to_vec();
    bad_key.push(0xe9);
    r.push(row(Bytes, "control: UTF-8 `café` in another header, valid key", get(bots).key().header("x-note", "café"), Pass)
        .up(Up::Header("x-note", "café".into())));
    r.push(row(Bytes, "byte 0xE9 in an unrelated header, no key",
        get(bots).raw_field(b"x-note", b"caf\xe9").raw_h1(raw_get(bots, &[b"x-note: caf\xe9"])), Deny(401))
        .h2(Via::Frames, Deny(401)).isolated());
    r.push(row(Bytes, "byte 0xE9 in an unrelated header, valid key",
        get(bots).key().raw_field(b"x-note", b"caf\xe9")
            .raw_h1(raw_get(bots, &[key_line.as_bytes(), b"x-note: caf\xe9"])), Pass)
        .h2(Via::Frames, Pass).isolated());
    r.push(row(Bytes, "byte 0xE9 after the key",
        get(bots).raw_field(b"x-bcsp-key", &bad_key)
            .raw_h1(raw_get(bots, &[&[b"x-bcsp-key: ".as_slice(), &bad_key].concat()])), Deny(401))
        .h2(Via::Frames, Deny(401)).isolated());
    r.push(row(Bytes, "byte 0xE9 in X-Forwarded-For, from outside the allowlist",
        get(bots).key().from(OUTSIDE).raw_field(b"x-forwarded-for", b"127.0.0.5\xe9")
            .raw_h1(raw_get(bots, &[key_line.as_bytes(), b"x-forwarded-for: 127.0.0.5\xe9"])), Deny(403))
        .h2(Via::Frames, Deny(403)).isolated());
}
