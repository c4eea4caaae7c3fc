//! Path tricks against the route allowlist.

use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let bots = "/botconnector/bots";

    // --- path tricks -------------------------------------------------------------------------
    let path = |name: &str, p: &str, want: Want| row(Path, name, get(p).key(), want);
    r.push(path("`..` segment", "/botconnector/bots/../admin", Deny(404)));
    r.push(path("`%2e%2e` segment", "/botconnector/bots/%2e%2e/admin", Deny(404)));
    r.push(path("`.%2E` segment", "/botconnector/bots/.%2E/admin", Deny(404)));
    r.push(path("`..` up to a listed path", "/botconnector/admin/../bots", Pass)
        .up(Up::Target("/botconnector/bots".into())));
    r.push(path("`..%2f` segment", "/botconnector/bots/..%2fadmin", E400).h2(Via::Curl, H2BAD));
    r.push(path("`%2f` for `/`", "/botconnector%2fbots", E400).h2(Via::Curl, H2BAD));
    r.push(path("`%5c` for `\\`", "/botconnector%5cbots", E400).h2(Via::Curl, H2BAD));
    r.push(path("raw `\\`", "/botconnector\\bots", Pass).up(Up::Target("/botconnector/bots".into()))
        .note("`normalize_path` turns `\\` into `/`"));
    r.push(path("`//` inside", "/botconnector//bots", Pass).up(Up::Target("/botconnector/bots".into())));
    r.push(path("leading `//`", "//botconnector/bots", Pass).up(Up::Target("/botconnector/bots".into())));
    r.push(path("`;` then `..`", "/botconnector/bots;/../admin", Deny(404)));
    r.push(path("`;` parameter", "/botconnector/bots;x=1", Deny(404)));
    r.push(path("`..;/`", "/botconnector/messages/..;/admin", Deny(404)));
    r.push(path("`%3b` for `;`", "/botconnector/bots%3bx=1", Deny(404)));
    r.push(path("`%00` encoded NUL", "/botconnector/bots/b1%00", E400).h2(Via::Curl, H2BAD));
    r.push(row(Path, "raw NUL in the path", get("/botconnector/bots/b1\0").key(), E400).h2(Via::Frames, H2BAD));
    r.push(path("`%252e%252e` double encoding", "/botconnector/bots/%252e%252e/admin", Deny(404)));
    r.push(path("`%2e` single-dot segment", "/botconnector/bots/%2e", Deny(404))
        .note("normalised to `/botconnector/bots/`, whose empty segment is refused"));
    r.push(path("trailing `/`", "/botconnector/bots/", Deny(404)));
    r.push(path("other letter case", "/BotConnector/bots", Deny(404)));
    r.push(path("percent-encoded letter `%62ots`", "/botconnector/%62ots", Pass)
        .up(Up::Target("/botconnector/bots".into())));
    r.push(path("8 KiB of `../` then a path", &format!("/botconnector/bots/{}admin", "../".repeat(2700)), Deny(404)));
    r.push(path("70 KiB path", &format!("/botconnector/bots/{}", "a".repeat(70 * 1024)), Refused(&[431]))
        .h2(Via::Curl, Refused(&[431, 0])));
    r.push(path("`%ff` encoded non-UTF-8 byte", "/botconnector/bots/%ff", Pass)
        .up(Up::Target("/botconnector/bots/%ff".into())).note("one opaque `{botId}` segment"));
    r.push(path("`%c0%ae%c0%ae` overlong UTF-8 dots", "/botconnector/bots/%c0%ae%c0%ae", Pass)
        .up(Up::Target("/botconnector/bots/%c0%ae%c0%ae".into()))
        .note("one opaque `{botId}` segment: the BCSP must not decode overlong UTF-8"));
    r.push(row(Path, "raw UTF-8 in the path", get("/botconnector/bots/caf\u{e9}").key(), E400)
        .h2(Via::Frames, Pass).up(Up::Target("/botconnector/bots/caf%C3%A9".into()))
        .note("HTTP/2: `normalize_path` percent-encodes it"));
    r.push(row(Path, "two `:path` pseudo-headers (listed, then unlisted)",
        get(bots).header(":path", "/botconnector/admin").key(), Deny(404))
        .no_h1("HTTP/1.1 has one request line").h2(Via::Frames, H2BAD));
    r.push(row(Path, "`upgrade: h2c` smuggling", get(bots).key().header("connection", "upgrade, http2-settings")
        .header("upgrade", "h2c").header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"), Pass)
        .up(Up::Absent("upgrade")).up(Up::Absent("http2-settings")).h2(Via::Frames, H2BAD));
    r.push(row(Path, "WebSocket upgrade", get(bots).key().header("connection", "upgrade").header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==").header("sec-websocket-version", "13"), Refused(&[403]))
        .h2(Via::Frames, H2BAD));
    r.push(path("query that looks like a path", "/botconnector/bots/b1?next=/../admin", Pass)
        .up(Up::Target("/botconnector/bots/b1?next=/../admin".into())));
    r.push(path("`#fragment` with `..`", "/botconnector/bots/b1#/../../admin", E400).h2(Via::Frames, H2BAD));
    r.push(row(Path, "absolute-form URI", get("http://evil.example/botconnector/bots").key(), Pass)
        .up(Up::Target("/botconnector/bots".into()))
        .h2(Via::Curl, H2BAD).note("HTTP/2 sends it as `:path` (curl `--request-target`)"));
    r.push(row(Path, "absolute-form URI to an unlisted path",
        get("http://evil.example/botconnector/admin").key(), Deny(404)).h2(Via::Curl, H2BAD));
    r.push(row(Path, "absolute-form URI with `..`",
        get("http://bcsp.test/botconnector/bots/../admin").key(), Deny(404)).h2(Via::Curl, H2BAD));
    r.push(row(Path, "unlisted method on a listed path", req("DELETE", "/botconnector/bots/b1").key(), Deny(405)));
    r.push(row(Path, "lower-case method `get`", req("get", bots).key(), E400).h2(Via::Frames, Deny(405)));
    r.push(row(Path, "`CONNECT`", req("CONNECT", "bcsp.test:443").key(), Deny(404)).h2(Via::Frames, Deny(404)));
    r.push(row(Path, "unlisted path without a key", get("/botconnector/admin"), Deny(401))
        .note("the same 401 as on a listed path: no map of the endpoints"));
    r.push(row(Path, "`..` without a key", get("/botconnector/bots/../admin"), Deny(401)));
}
