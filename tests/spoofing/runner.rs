//! Running rows against a configuration's Envoy and checking what the client and the upstream saw.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::*;
use crate::frames;
use crate::harness::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;
use crate::transport::*;
use metadata_emulator::decode_claims;
use serde_json::Value;

pub(crate) fn error_code(status: u16) -> &'static str {
    match status {
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        _ => "?",
    }
}

/// What the routes allow (the `digital-bot-connector-v2` preset) plus the webhook prefix.
pub(crate) fn is_listed(method: &str, target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/botconnector/bots") | ("POST", "/botconnector/messages") => true,
        ("GET", p) => p
            .strip_prefix("/botconnector/bots/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/') && id != "." && id != ".."),
        ("POST", p) => p == "/openmessaging" || p.starts_with("/openmessaging/"),
        _ => false,
    }
}

pub(crate) fn emulator_token(value: Option<&str>) -> Result<(), String> {
    token_for(value, AUD)
}

pub(crate) fn token_for(value: Option<&str>, aud: &str) -> Result<(), String> {
    let v = value.ok_or("no token")?;
    let jwt = v
        .strip_prefix("Bearer ")
        .ok_or_else(|| format!("token without Bearer: {v:?}"))?;
    let claims = decode_claims(jwt).ok_or_else(|| format!("not an emulator JWT: {v:?}"))?;
    if claims.aud != aud {
        return Err(format!("token for {:?}", claims.aud));
    }
    Ok(())
}

/// Every admitted request of a configuration.
pub(crate) fn invariants(cfg: Cfg, seen: &Seen) -> Result<(), String> {
    let secrets = [KEY, BEARER, OM_SECRET];
    for s in secrets {
        if seen.target.contains(s) && !seen.target.contains("x-bcsp-key=") {
            return Err(format!("a secret in the target {:?}", seen.target));
        }
        for (n, v) in &seen.headers {
            if v.contains(s) || n.contains(s) {
                return Err(format!("a secret in header {n}"));
            }
        }
    }
    if !seen.headers_named("x-bcsp-key").is_empty() {
        return Err("x-bcsp-key reached the upstream".into());
    }
    let ids = seen.headers_named("x-bcsp-key-id");
    let webhook = seen.target.starts_with("/openmessaging");
    match (webhook, ids.as_slice()) {
        (true, []) => {}
        (false, [id]) if ["genesys", "genesys-bearer"].contains(id) => {}
        _ => return Err(format!("x-bcsp-key-id {ids:?}")),
    }
    match cfg {
        Cfg::Guard => {
            let auth = seen.headers_named("authorization");
            if auth.len() != 1 {
                return Err(format!("{} authorization headers: {auth:?}", auth.len()));
            }
            emulator_token(auth.first().copied())?;
            if !seen.headers_named("x-serverless-authorization").is_empty() {
                return Err("x-serverless-authorization reached the upstream".into());
            }
            if !is_listed(&seen.method, &seen.target) {
                return Err(format!("unlisted {} {}", seen.method, seen.target));
            }
        }
        Cfg::Serverless => {
            let tok = seen.headers_named("x-serverless-authorization");
            if tok.len() != 1 {
                return Err(format!("{} x-serverless-authorization headers", tok.len()));
            }
            emulator_token(tok.first().copied())?;
        }
        Cfg::Stream => {
            if !is_listed(&seen.method, &seen.target) {
                return Err(format!("unlisted {} {}", seen.method, seen.target));
            }
        }
        Cfg::KeyRoute => {
            let auth = seen.headers_named("authorization");
            let bearer_route = seen.headers_named("x-routed") == ["bearer"];
            let want = if bearer_route { AUD_B } else { AUD };
            token_for(auth.first().copied().filter(|_| auth.len() == 1), want)?;
        }
        Cfg::Xff1 | Cfg::Xff2 => {}
    }
    Ok(())
}

pub(crate) fn check_up(up: &Up, seen: &Seen) -> Result<(), String> {
    match up {
        Up::Target(t) if seen.target != *t => Err(format!("target {:?}, want {t:?}", seen.target)),
        Up::KeyId(id) if seen.headers_named("x-bcsp-key-id") != [*id] => Err(format!(
            "x-bcsp-key-id {:?}, want {id}",
            seen.headers_named("x-bcsp-key-id")
        )),
        Up::NoKeyId if !seen.headers_named("x-bcsp-key-id").is_empty() => {
            Err("a key id on a webhook delivery".into())
        }
        Up::Header(n, v) if seen.headers_named(n) != [v.as_str()] => {
            Err(format!("{n}: {:?}, want {v:?}", seen.headers_named(n)))
        }
        Up::Absent(n) if !seen.headers_named(n).is_empty() => Err(format!(
            "{n}: {:?} reached the upstream",
            seen.headers_named(n)
        )),
        Up::OurToken(h) => match seen.headers_named(h).as_slice() {
            [one] => emulator_token(Some(one)),
            other => Err(format!("{h}: {other:?}, want one token of ours")),
        },
        Up::XffLast(ip) => {
            let xff = seen.headers_named("x-forwarded-for").join(",");
            match xff.rsplit(',').next().map(str::trim) {
                Some(last) if last == *ip => Ok(()),
                _ => Err(format!("x-forwarded-for {xff:?} does not end in {ip}")),
            }
        }
        Up::BodyLen(n) if seen.body.len() != *n => {
            Err(format!("body of {} bytes, want {n}", seen.body.len()))
        }
        Up::Trailer(n, _) | Up::NoTrailer(n) => {
            let got: Vec<&str> = seen
                .trailers
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect();
            let want: Vec<&str> = if let Up::Trailer(_, v) = up {
                vec![*v]
            } else {
                vec![]
            };
            (got == want)
                .then_some(())
                .ok_or_else(|| format!("trailer {n}: {got:?}, want {want:?}"))
        }
        _ => Ok(()),
    }
}

pub(crate) struct Env {
    pub(crate) cfg: Cfg,
    pub(crate) stack: Stack,
    pub(crate) dir: TempDir,
}

/// One row over one protocol: Ok(observed summary) or Err(why it failed).
pub(crate) fn run_one(env: &Env, row: &Row, via: Via, want: Want) -> Result<String, String> {
    let up = &env.stack.upstream;
    let (seen_before, rq_before) = (up.count(), env.stack.envoy.upstream_rq_total().unwrap_or(0));
    let addr = env.stack.envoy.addr();
    let obs = match via {
        Via::Raw => send_h1(addr, &row.req),
        Via::Curl => send_curl(addr, &row.req, env.dir.path()),
        Via::Frames => frames::send(addr, &row.req),
    };
    // A refused request must never show up later either: give a straggler a moment.
    if want != Pass {
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen: Vec<Seen> = up.requests().into_iter().skip(seen_before).collect();
    let rq = env.stack.envoy.upstream_rq_total().unwrap_or(0) - rq_before;
    let shown = obs.show();
    let fail = |why: String| format!("{why}; client saw {shown} {}", obs.detail);
    let upstream_nothing = |what: &str| -> Result<(), String> {
        if !seen.is_empty() || rq != 0 {
            return Err(format!(
                "{what}, yet the upstream got {} request(s) (router started {rq}): {:?}",
                seen.len(),
                seen.iter()
                    .map(|s| format!("{} {}", s.method, s.target))
                    .collect::<Vec<_>>()
            ));
        }
        Ok(())
    };
    match want {
        Pass => {
            if obs.status != Some(200) {
                return Err(fail("want 200".into()));
            }
            let [s] = seen.as_slice() else {
                return Err(fail(format!(
                    "want exactly one upstream request, got {}",
                    seen.len()
                )));
            };
            invariants(env.cfg, s).map_err(|e| fail(format!("upstream: {e}")))?;
            for u in &row.up {
                check_up(u, s).map_err(|e| fail(format!("upstream: {e}")))?;
            }
        }
        Deny(status) => {
            if obs.status != Some(status) {
                return Err(fail(format!("want {status}")));
            }
            let body: Value = serde_json::from_slice(&obs.body).unwrap_or(Value::Null);
            if body["error"] != error_code(status) {
                return Err(fail(format!(
                    "want the filter's {status} body, got {:?}",
                    String::from_utf8_lossy(&obs.body)
                )));
            }
            if let Some((_, id)) = row.req.headers.iter().find(|(n, _)| n == "x-request-id") {
                if body["request_id"] != id.as_str() {
                    return Err(fail(format!(
                        "request_id {} in the body, sent {id:?}",
                        body["request_id"]
                    )));
                }
            }
            upstream_nothing("refused").map_err(fail)?;
        }
        Refused(set) => {
            if !set.contains(&obs.status.unwrap_or(0)) {
                return Err(fail(format!("want one of {set:?} (0 = no reply)")));
            }
            upstream_nothing("refused").map_err(fail)?;
        }
        Cut(status) => {
            if obs.status != Some(status) {
                return Err(fail(format!("want {status}")));
            }
            if !seen.is_empty() {
                return Err(fail(format!(
                    "the upstream received {} whole request(s)",
                    seen.len()
                )));
            }
        }
    }
    Ok(format!(
        "{shown}{}",
        if rq > 0 && want != Pass {
            " (router started)"
        } else {
            ""
        }
    ))
}

pub(crate) struct Outcome {
    pub(crate) group: Group,
    pub(crate) name: String,
    pub(crate) finding: bool,
    pub(crate) h1: Option<Result<String, String>>,
    pub(crate) h2: Option<Result<String, String>>,
}

pub(crate) fn start_env(cfg: Cfg, metadata: SocketAddr) -> Env {
    Env {
        cfg,
        stack: Stack::start(&envoy_config(cfg, metadata)),
        dir: TempDir::new("spoofing"),
    }
}

/// After every attack the guard must still serve: a valid request gets 200.
pub(crate) fn health(env: &Env) -> Result<(), String> {
    let mut q = get(if env.cfg == Cfg::Serverless {
        "/x"
    } else {
        "/botconnector/bots"
    })
    .key();
    if matches!(env.cfg, Cfg::Xff1 | Cfg::Xff2) {
        q = q.xff("203.0.113.7");
    }
    let o = send_h1(env.stack.envoy.addr(), &q);
    if o.status == Some(200) {
        Ok(())
    } else {
        Err(format!(
            "a valid request right after it got {}: the guard stopped serving",
            o.show()
        ))
    }
}

pub(crate) fn run_leg(env: &Env, row: &Row, leg: Leg) -> Option<Result<String, String>> {
    let Leg::Run(via, want) = leg else {
        return None;
    };
    Some(match (run_one(env, row, via, want), health(env)) {
        (Ok(seen), Ok(())) => Ok(seen),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(h)) => Err(format!("{e}; {h}")),
    })
}

/// The shared-Envoy rows of `cfg` (`cfg` = None: every isolated row, each protocol on a fresh
/// Envoy of its configuration).
pub(crate) fn run_unit(
    cfg: Option<Cfg>,
    metadata: SocketAddr,
    rows: &[Row],
) -> (Vec<Outcome>, Duration) {
    let t0 = Instant::now();
    let shared = cfg.map(|c| start_env(c, metadata));
    let mut out = Vec::new();
    let mine = rows.iter().filter(|r| match cfg {
        Some(c) => !r.isolated && r.group.cfg() == c,
        None => r.isolated,
    });
    for row in mine {
        let leg = |l: Leg| match &shared {
            Some(env) => run_leg(env, row, l),
            None => run_leg(&start_env(row.group.cfg(), metadata), row, l),
        };
        let (h1, h2) = (leg(row.h1), leg(row.h2));
        out.push(Outcome {
            group: row.group,
            name: row.name.clone(),
            finding: row.finding.is_some(),
            h1,
            h2,
        });
    }
    (out, t0.elapsed())
}
