//! The service over a real loopback socket: one request per connection, bounded waits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sample_bcsp::App;

fn exchange(addr: SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream.write_all(raw.as_bytes()).expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serves_bots_and_messages_over_http() {
    let app = App::new("/botconnector").expect("base path");
    let server = sample_bcsp::start("127.0.0.1:0", app, false).expect("bind");
    let addr = server.local_addr();

    let bots = exchange(
        addr,
        "GET /botconnector/bots HTTP/1.1\r\nhost: x\r\nx-bcsp-key-id: demo-genesys\r\nconnection: close\r\n\r\n",
    );
    assert!(bots.starts_with("HTTP/1.1 200"), "{bots}");
    assert!(bots.contains("\"demo-bot\""), "{bots}");
    assert!(bots.contains("\"key_id\":\"demo-genesys\""), "{bots}");

    let body = r#"{"botId":"demo-bot","botSessionId":"s","messageId":"m","inputMessage":{"type":"Text","text":"bye"},"languageCode":"en-us"}"#;
    let reply = exchange(
        addr,
        &format!(
            "POST /botconnector/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"botState\":\"Complete\""), "{reply}");

    let bad = exchange(
        addr,
        "POST /botconnector/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\n{",
    );
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("\"botState\":\"Failed\""), "{bad}");

    server.stop();
}
