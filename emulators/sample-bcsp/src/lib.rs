//! A sample BCSP (Bot Connector Service Provider): a tiny Genesys Cloud Digital Bot
//! Connector v2 service for bcsp-guard's local stack.
//!
//! Endpoints, relative to a configurable base path (default `/botconnector`):
//! `GET {base}/bots`, `GET {base}/bots/{botId}`, `POST {base}/messages`, plus `GET /healthz`.
//! One demo bot answers text messages. Every JSON object it returns carries a `caller`
//! field saying which identity reached it: the `x-bcsp-key-id` set by bcsp-guard and the
//! decoded audience and expiry of the identity token. It never echoes a token or any
//! header value other than the key id.
//!
//! ```no_run
//! use sample_bcsp::App;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = App::new("/botconnector")?;
//! let server = sample_bcsp::start("127.0.0.1:0", app, false)?;
//! println!("listening on {}", server.local_addr());
//! server.stop();
//! # Ok(())
//! # }
//! ```

mod base64url;
mod bots;
mod caller;
mod messages;
mod ordered;

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use http_stub::{Request, Response, Server};

use crate::ordered::Json;

pub use caller::KEY_ID_HEADER;

/// Where the binary listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The base path unless told otherwise.
pub const DEFAULT_BASE_PATH: &str = "/botconnector";

/// The service: routing and answers. Cheap to clone, no shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Normalised: empty for the root, otherwise `/seg[/seg…]` without a trailing slash.
    base: String,
}

impl App {
    /// `base_path` must start with `/`; a trailing `/` is ignored and `/` means the root.
    pub fn new(base_path: &str) -> Result<App, String> {
        if !base_path.starts_with('/') {
            return Err(format!("base path must start with '/': {base_path:?}"));
        }
        if base_path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(format!(
                "base path must not contain whitespace, '?' or '#': {base_path:?}"
            ));
        }
        if base_path.contains("//") {
            return Err(format!("base path must not contain '//': {base_path:?}"));
        }
        Ok(App {
            base: base_path.trim_end_matches('/').to_string(),
        })
    }

    /// The base path as configured, `/` for the root.
    pub fn base_path(&self) -> &str {
        if self.base.is_empty() {
            "/"
        } else {
            &self.base
        }
    }

    /// Answers `req` using the current time for the token's `seconds_left`.
    pub fn handle(&self, req: &Request) -> Response {
        self.handle_at(req, unix_now())
    }

    /// Answers `req` as if the Unix time were `now` (seconds).
    pub fn handle_at(&self, req: &Request, now: u64) -> Response {
        let caller = caller::report(req, now);
        let path = req.path();
        if path == "/healthz" {
            return match req.method.as_str() {
                "GET" | "HEAD" => reply(200, Json::object(vec![("status", Json::value("ok"))])),
                _ => method_not_allowed("GET, HEAD", caller),
            };
        }
        let Some(rest) = self.strip_base(path) else {
            return self.not_found(caller);
        };
        match rest {
            "/bots" | "/bots/" => match req.method.as_str() {
                "GET" | "HEAD" => reply(200, bots::list().with("caller", caller)),
                _ => method_not_allowed("GET, HEAD", caller),
            },
            "/messages" => match req.method.as_str() {
                "POST" => messages::handle(&req.body, caller),
                _ => method_not_allowed("POST", caller),
            },
            _ => match rest.strip_prefix("/bots/") {
                Some(id) if !id.is_empty() && !id.contains('/') => match req.method.as_str() {
                    "GET" | "HEAD" => match bots::find(id) {
                        Some(bot) => reply(200, bot.with("caller", caller)),
                        None => error(404, "BotNotFound", "no bot with that id", caller),
                    },
                    _ => method_not_allowed("GET, HEAD", caller),
                },
                _ => self.not_found(caller),
            },
        }
    }

    /// The part of `path` after the base path, if `path` lies under it.
    fn strip_base<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.base.as_str())?;
        rest.starts_with('/').then_some(rest)
    }

    fn not_found(&self, caller: Json) -> Response {
        let base = &self.base;
        let message = format!(
            "no such endpoint; this BCSP serves GET {base}/bots, GET {base}/bots/{{botId}} \
             and POST {base}/messages"
        );
        error(404, "NotFound", &message, caller)
    }
}

/// Starts serving `app` on `listen`; with `log`, one line per request goes to stderr.
pub fn start(listen: &str, app: App, log: bool) -> io::Result<Server> {
    Server::bind(listen, move |req| {
        let resp = app.handle(req);
        if log {
            eprintln!("{}", log_line(req, &resp));
        }
        resp
    })
}

/// The log line for one exchange: method, path, key id, status. Never a secret.
pub fn log_line(req: &Request, resp: &Response) -> String {
    let key_id = match req.headers_named(KEY_ID_HEADER).as_slice() {
        [] => "-".to_string(),
        ids => ids
            .iter()
            .map(|id| id.escape_debug().to_string())
            .collect::<Vec<_>>()
            .join(","),
    };
    format!(
        "sample-bcsp: {} {} key_id={} -> {}",
        req.method.escape_debug(),
        req.path().escape_debug(),
        key_id,
        resp.status
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn reply(status: u16, body: Json) -> Response {
    Response::json(status, &body.to_string()).with_header("cache-control", "no-store")
}

/// A Genesys-shaped failure: `botState: Failed` and `errorInfo`.
fn error(status: u16, code: &str, message: &str, caller: Json) -> Response {
    let info = Json::object(vec![
        ("errorCode", Json::value(code)),
        ("errorMessage", Json::value(message)),
    ]);
    reply(
        status,
        Json::object(vec![
            ("botState", Json::value("Failed")),
            ("errorInfo", info),
            ("caller", caller),
        ]),
    )
}

fn method_not_allowed(allow: &str, caller: Json) -> Response {
    let message = format!("method not allowed here; use {allow}");
    error(405, "MethodNotAllowed", &message, caller).with_header("allow", allow)
}

#[cfg(test)]
mod tests;
