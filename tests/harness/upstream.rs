//! The recording upstream behind Envoy, and `Stack`: a recorder with an Envoy in front.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::{request, Envoy, EnvoyConfig, RequestBuilder};

/// What the upstream received (a copy of http-stub's `Request`).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Lower-cased names, in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Chunked trailer fields, as `headers`.
    pub trailers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).first().copied()
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An upstream on 127.0.0.1 that records every request and answers 200 with the headers it
/// received as JSON (`{"path": ..., "headers": [[name, value], ...]}`).
pub struct Recorder {
    server: http_stub::Server,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = http_stub::Server::bind("127.0.0.1:0", move |req: &http_stub::Request| {
            log.lock().unwrap().push(Seen {
                method: req.method.clone(),
                target: req.target.clone(),
                headers: req.headers.clone(),
                body: req.body.clone(),
                trailers: req.trailers.clone(),
            });
            let echo = serde_json::json!({"path": req.target, "headers": req.headers});
            http_stub::Response::json(200, &echo.to_string())
        })
        .expect("bind recording upstream");
        Recorder { server, seen }
    }
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    /// The last request seen; panics if there was none.
    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream saw no request at all")
    }
}

/// A recorder plus an Envoy in front of it: what most tests need.
pub struct Stack {
    pub upstream: Recorder,
    pub envoy: Envoy,
}

impl Stack {
    pub fn start(cfg: &EnvoyConfig) -> Stack {
        let upstream = Recorder::start();
        let envoy = Envoy::start(cfg, upstream.addr());
        Stack { upstream, envoy }
    }
    /// A request to this stack's listener.
    pub fn request(&self, path: &str) -> RequestBuilder {
        request("GET", path).to(self.envoy.addr())
    }
}
