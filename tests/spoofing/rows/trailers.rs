//! Request trailers.

use crate::config::*;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let msgs = "/botconnector/messages";

    // --- trailers ------------------------------------------------------------------------------
    let with_trailers = |q: Req, body: &[u8], trailers: &[(&str, &str)]| {
        let mut q = q.streamed(body, body.len());
        let mut raw = format!("{} {} HTTP/1.1\r\nhost: bcsp.test\r\ncontent-type: application/json\r\n\
            transfer-encoding: chunked\r\nconnection: close\r\n", q.method, q.path).into_bytes();
        for (n, v) in &q.headers { raw.extend(format!("{n}: {v}\r\n").bytes()); }
        raw.extend(format!("\r\n{:x}\r\n", body.len()).bytes());
        raw.extend_from_slice(body);
        raw.extend(b"\r\n0\r\n");
        for (n, v) in trailers.iter().chain([&("x-note", "kept")]) {
            raw.extend(format!("{n}: {v}\r\n").bytes());
            q.trailers.push((n.to_string(), v.to_string()));
        }
        raw.extend(b"\r\n");
        q.raw_h1(raw)
    };
    let trailer_rows: [(&str, &[(&str, &str)]); 4] = [
        ("forged `x-bcsp-key-id` and `x_bcsp_key_id`", &[("x-bcsp-key-id", "admin"), ("x_bcsp_key_id", "admin")]),
        ("forged `authorization` and `x-serverless-authorization`",
            &[("authorization", "Bearer forged.jwt.sig"), ("x-serverless-authorization", "Bearer forged.jwt.sig")]),
        ("the valid key as `x-bcsp-key` and `x-bcsp_key`", &[("x-bcsp-key", KEY), ("x-bcsp_key", KEY)]),
        ("`x-http-method-override` and `x-original_url`", &[("x-http-method-override", "DELETE"), ("x-original_url", "/botconnector/admin")]),
    ];
    for (what, trailers) in trailer_rows {
        let mut rw = row(Trailer, &format!("{what} as trailers, valid key"),
            with_trailers(req("POST", msgs).key(), MSG.as_bytes(), trailers), Pass)
            .h2(Via::Frames, Pass).up(Up::KeyId("genesys")).up(Up::Trailer("x-note", "kept"));
        for (n, _) in trailers { rw = rw.up(Up::NoTrailer(n)); }
        r.push(rw);
    }
}
