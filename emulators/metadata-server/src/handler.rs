//! Routing and answers: the identity endpoint, the control endpoints, /healthz.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_stub::{Request, Response};

use crate::jwt::{self, Mint};
use crate::state::{Mode, Shared, MAX_DELAY, MAX_LIFETIME_S};

pub(crate) const IDENTITY_PATH: &str =
    "/computeMetadata/v1/instance/service-accounts/default/identity";
const CONTROL_PREFIX: &str = "/_emulator/";

pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    let path = req.path();
    if let Some(knob) = path.strip_prefix(CONTROL_PREFIX) {
        return control(shared, knob, req);
    }
    if path == "/healthz" {
        return Response::text(200, "ok\n");
    }
    if path == IDENTITY_PATH {
        return identity(shared, req);
    }
    if shared.knobs().mode == Mode::Down {
        return down();
    }
    metadata(Response::text(404, "not found\n"))
}

/// Headers the real metadata server puts on its answers.
fn metadata(r: Response) -> Response {
    r.with_header("metadata-flavor", "Google")
}

fn down() -> Response {
    Response::text(503, "metadata server unavailable (emulated)\n")
}

fn identity(shared: &Shared, req: &Request) -> Response {
    let audience = req.query("audience").unwrap_or_default();
    shared.record_fetch(&audience);
    let knobs = shared.knobs();
    let (response, outcome) = identity_answer(shared, req, &audience, knobs.mode, knobs.lifetime_s);
    sleep_unless_stopped(shared, knobs.delay);
    if shared.logging.load(Ordering::Relaxed) {
        // {:?} escapes the audience so a client cannot forge log lines.
        eprintln!(
            "metadata-emulator: identity audience={audience:?} -> {} {outcome}",
            response.status
        );
    }
    response
}

/// The answer and a loggable outcome (never the token itself).
fn identity_answer(
    shared: &Shared,
    req: &Request,
    audience: &str,
    mode: Mode,
    lifetime_s: u64,
) -> (Response, String) {
    if mode == Mode::Down {
        return (down(), "down".into());
    }
    if req.method != "GET" && req.method != "HEAD" {
        return (
            metadata(Response::text(405, "method not allowed\n")),
            "method not allowed".into(),
        );
    }
    if req.header("metadata-flavor") != Some("Google") {
        shared.record_rejected();
        let body = "Missing required header \"Metadata-Flavor\": \"Google\"\n";
        return (
            metadata(Response::text(403, body)),
            "rejected: no flavor".into(),
        );
    }
    if req.header("x-forwarded-for").is_some() {
        shared.record_rejected();
        let body = "Request contains an X-Forwarded-For header and was rejected\n";
        return (
            metadata(Response::text(400, body)),
            "rejected: x-forwarded-for".into(),
        );
    }
    if audience.is_empty() {
        shared.record_rejected();
        let body = "non-empty audience parameter required\n";
        return (
            metadata(Response::text(400, body)),
            "rejected: no audience".into(),
        );
    }
    if let Some(status) = shared.take_failure() {
        let body = format!("emulated failure {status}\n");
        return (
            metadata(Response::text(status, &body)),
            "injected failure".into(),
        );
    }
    let now = unix_now();
    let lifetime = i64::try_from(lifetime_s.min(MAX_LIFETIME_S)).unwrap_or(0);
    let (iat, exp, outcome) = match mode {
        Mode::Garbage => {
            let body = "<html><body>this is not a token</body></html>";
            return (metadata(html(body.into())), "garbage".into());
        }
        Mode::Expired => (now - 3600 - lifetime, now - 3600, "expired token"),
        _ => (now, now + lifetime, "token"),
    };
    let serial = shared.next_serial();
    let token = jwt::mint(&Mint {
        audience,
        iat,
        exp,
        serial,
        full: req.query("format").as_deref() == Some("full"),
    });
    let outcome = format!("{outcome} (jti emulator-{serial}, exp in {}s)", exp - now);
    (metadata(html(token)), outcome)
}

/// The real server labels the raw JWT as HTML.
fn html(body: String) -> Response {
    Response::new(200).with_body("text/html", body)
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX / 2)
}

/// Sleeps in slices so that stopping the emulator frees delayed handlers quickly.
fn sleep_unless_stopped(shared: &Shared, delay: Duration) {
    let end = Instant::now() + delay.min(MAX_DELAY);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(20)));
    }
}

fn control(shared: &Shared, knob: &str, req: &Request) -> Response {
    let want = if knob == "stats" { "GET" } else { "POST" };
    if req.method != want {
        return Response::text(405, &format!("use {want}\n")).with_header("allow", want);
    }
    let result = match knob {
        "stats" => return Response::json(200, &shared.stats_json()),
        "fail" => param::<u32>(req, "count").and_then(|count| {
            let status = match req.query("status") {
                None => 500,
                Some(_) => param::<u16>(req, "status")?,
            };
            if !(100..=599).contains(&status) {
                return Err("status must be 100..=599".into());
            }
            shared.fail_next(count, status);
            Ok(())
        }),
        "delay" => param::<u64>(req, "ms").and_then(|ms| {
            let delay = Duration::from_millis(ms);
            if delay > MAX_DELAY {
                return Err(format!("ms must be at most {}", MAX_DELAY.as_millis()));
            }
            shared.set_delay(delay);
            Ok(())
        }),
        "lifetime" => param::<u64>(req, "s").and_then(|s| {
            if s > MAX_LIFETIME_S {
                return Err(format!("s must be at most {MAX_LIFETIME_S}"));
            }
            shared.set_lifetime(s);
            Ok(())
        }),
        "mode" => match req.query("m").as_deref().and_then(Mode::parse) {
            Some(mode) => {
                shared.set_mode(mode);
                Ok(())
            }
            None => Err("m must be normal, garbage, expired or down".into()),
        },
        "reset" => {
            shared.reset();
            Ok(())
        }
        _ => return Response::text(404, "unknown control endpoint\n"),
    };
    match result {
        Ok(()) => Response::json(200, r#"{"ok":true}"#),
        Err(why) => Response::text(400, &format!("{why}\n")),
    }
}

fn param<T: std::str::FromStr>(req: &Request, key: &str) -> Result<T, String> {
    req.query(key)
        .ok_or_else(|| format!("missing query parameter {key}"))?
        .parse()
        .map_err(|_| format!("bad value for {key}"))
}
