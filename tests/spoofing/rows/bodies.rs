//! Bodies and framing.

use crate::config::*;
use crate::harness::om_event;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;

    // --- bodies and framing ------------------------------------------------------------------
    let over = om_event(LIMIT + 1);
    let at = om_event(LIMIT);
    let msgs = "/botconnector/messages";
    r.push(row(Body, "body over the limit, `content-length`", req("POST", msgs).key().json(over.clone()), Deny(413)));
    r.push(row(Body, "body over the limit, chunked (HTTP/2: no `content-length`)",
        req("POST", msgs).key().streamed(&over, 1000), Cut(413))
        .note("a keyed request streams: Envoy resets the upstream request when the filter answers 413"));
    r.push(row(Body, "body at the limit, chunked", req("POST", msgs).key().streamed(&at, 1000), Pass)
        .up(Up::BodyLen(LIMIT)));
    r.push(row(Body, "`content-length: 100000000`, no body sent",
        req("POST", msgs).key().header("content-type", "application/json").header("content-length", "100000000").hold()
            .raw_h1(format!("POST {msgs} HTTP/1.1\r\nhost: bcsp.test\r\nx-bcsp-key: {KEY}\r\n\
                content-type: application/json\r\ncontent-length: 100000000\r\nconnection: close\r\n\r\n")),
        Deny(413)).h2(Via::Frames, Deny(413)));
    r.push(row(Body, "`content-length` and `transfer-encoding` (CL.TE)",
        req("POST", msgs).key().header("content-type", "application/json").header("transfer-encoding", "chunked")
            .raw_h1(format!("POST {msgs} HTTP/1.1\r\nhost: bcsp.test\r\nx-bcsp-key: {KEY}\r\n\
                content-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\
                connection: close\r\n\r\n0\r\n\r\nGET /botconnector/admin HTTP/1.1\r\nhost: x\r\n\r\n")),
        E400).h2(Via::Frames, H2BAD).note("HTTP/2: `transfer-encoding` is connection-specific, so malformed"));
    r.push(row(Body, "two different `content-length`s",
        req("POST", msgs).key().header("content-type", "application/json").header("content-length", "2")
            .header("content-length", "3").hold()
            .raw_h1(format!("POST {msgs} HTTP/1.1\r\nhost: bcsp.test\r\nx-bcsp-key: {KEY}\r\n\
                content-type: application/json\r\ncontent-length: 2\r\ncontent-length: 3\r\n\
                connection: close\r\n\r\n{{}}")),
        E400).h2(Via::Frames, H2BAD));
    r.push(row(Body, "`transfer-encoding: gzip, chunked`",
        req("POST", msgs).raw_h1(format!("POST {msgs} HTTP/1.1\r\nhost: bcsp.test\r\nx-bcsp-key: {KEY}\r\n\
            content-type: application/json\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n\
            2\r\n{{}}\r\n0\r\n\r\n")), Refused(&[400, 501]))
        .no_h2("HTTP/2 has no transfer codings; see CL.TE"));
    r.push(row(Body, "chunk size overflow",
        req("POST", msgs).raw_h1(format!("POST {msgs} HTTP/1.1\r\nhost: bcsp.test\r\nx-bcsp-key: {KEY}\r\n\
            content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
            ffffffffffffffffff\r\n{{}}\r\n0\r\n\r\n")), Cut(400))
        .no_h2("HTTP/2 has no chunked encoding")
        .note("a keyed request streams: its headers may go upstream before Envoy's codec fails on the body"));
    r.push(row(Body, "POST that is not JSON", req("POST", msgs).key().header("content-type", "text/plain")
        .raw_h1(format!("POST {msgs} HTTP/1.1\r\nhost: bcsp.test\r\nx-bcsp-key: {KEY}\r\n\
            content-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")), Deny(415))
        .h2(Via::Frames, Deny(415)));

    r.push(row(Stream, "body over the limit, chunked (HTTP/2: no `content-length`)",
        req("POST", msgs).key().streamed(&over, 1000), Cut(413))
        .note("Envoy resets the upstream request when the filter answers 413"));
    r.push(row(Stream, "body over the limit, `content-length`", req("POST", msgs).key().json(over.clone()), Deny(413)));
}
