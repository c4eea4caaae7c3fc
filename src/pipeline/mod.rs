//! The request path, one pure pipeline over small host traits: read headers → IP → lockout →
//! credential or webhook signature → route → body limits → strip, stamp, inject or reply.
//! Both hosts (the proxy-wasm module and the Envoy dynamic module) call it; so do the CLI's
//! `explain`, the benchmark, the fuzz target and the property tests, through [`record`].

pub mod audit;
pub mod header_map;
pub mod held;
pub mod metrics;
pub mod record;
pub mod reply;

use crate::config::fields::printable as fields_printable;
use crate::policy::client_ip::{ClientIpRule, Unknown};
use crate::policy::decide::{
    check_ip, check_key, client_of, Decision, Denial, DenyReason, RequestView,
};
use crate::policy::keys::{Key, KeyId};
use crate::policy::lockout::Failure;
use crate::policy::routes::{clean_path, is_json_media_type, RouteMatch};
use crate::policy::webhook::SignatureError;
use crate::policy::Policy;
use crate::token::plan::Missing;
use audit::{Audit, Lockout, Reason};
use held::HoldEnd;
use metrics::Stats;
use reply::Reply;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The calls the request path makes on the proxy; nothing else is needed to admit or deny.
pub trait RequestHost {
    /// The request headers, serialized as proxy-wasm does ([`header_map::decode`] reads them).
    /// They stay readable and writable for as long as this filter holds them, body phase
    /// included; once let go, the host hands out none.
    fn request_headers(&self) -> Vec<u8>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn send_reply(&self, reply: &Reply);
    fn increment(&self, metric: Option<u32>);
    fn now_ms(&self) -> i64;
    /// The first `len` bytes of the request body Envoy holds (asked only at end of stream,
    /// after every chunk was buffered).
    fn request_body(&self, len: usize) -> Option<Vec<u8>>;
    /// The request's audit record, for the access log: write every field that is set and
    /// keep the ones an earlier record set (see [`audit::Audit`]). A host without an access
    /// log ignores it.
    fn audit(&self, _record: &Audit) {}
    /// One line for the operator's log; hosts print it where Envoy's log goes.
    fn log(&self, level: log::Level, line: &str) {
        log::log!(level, "{line}");
    }
}

/// The worker's identity-token cache as the request path sees it.
pub trait TokenPort {
    /// `Bearer <jwt>` for the audience, when a token is usable now.
    fn header_value(&self, audience: &str) -> Option<Rc<str>>;
    /// No usable token: wait (and make sure a fetch is under way) or refuse at once.
    fn on_missing(&self, audience: &str) -> Missing;
}

/// The lockout book (shared across workers, or per worker as a fallback).
pub trait LockoutPort {
    /// Seconds until `client` may try again, while it is locked out.
    fn locked(&self, client: IpAddr) -> Option<u64>;
    /// One more 401 for `client`.
    fn failed(&self, client: IpAddr) -> Failure;
}

/// The ports a request may use; a host without one passes `None`.
#[derive(Clone, Copy, Default)]
pub struct Ports<'a> {
    pub tokens: Option<&'a dyn TokenPort>,
    pub lockout: Option<&'a dyn LockoutPort>,
}

/// The compiled policy and its metric ids, built once in `on_configure` and shared by
/// every request of the worker.
#[derive(Debug)]
pub struct Guard {
    pub policy: Policy,
    pub stats: Stats,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Headers are in place; let the request go upstream.
    Forward,
    /// A local reply was sent; nothing goes upstream.
    Replied,
    /// Admitted, but no token yet: pause until one arrives or the deadline passes.
    Wait { audience: String, deadline_ms: u64 },
    /// The body must be read before anything is decided: hold the headers and every body
    /// chunk here. Envoy keeps passing the body on only with the plugin config's
    /// `allow_on_headers_stop_iteration: true`; without it nothing arrives and the delivery's
    /// deadline refuses it (see `held`).
    ReadBody,
}

/// What a request still owes once body bytes arrive; the host keeps one per request.
/// Envoy hands a proxy-wasm filter no request headers once it let them go, so whatever the
/// body phase of a forwarded request needs from them is captured here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BodyState {
    /// Replied (or no body expected): whatever arrives is held and dropped with the stream.
    #[default]
    Closed,
    /// Admitted and streaming: bytes are counted against `max_body_bytes`. `held`: the
    /// request waits for a token, so this filter holds its body and Envoy reports the whole
    /// buffered body at each chunk rather than the new chunk.
    Counting {
        seen: u64,
        request_id: Option<String>,
        held: bool,
    },
    /// A webhook delivery: buffered whole, then verified, then released or refused.
    Webhook(Box<PendingWebhook>),
}

impl BodyState {
    /// The host resumed a request that waited for its token: chunks stream again.
    pub fn released(&mut self) {
        if let BodyState::Counting { held, .. } = self {
            *held = false;
        }
    }
}

/// A webhook delivery whose body is still being read; its headers wait in this filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWebhook {
    pub index: usize,
    pub signature: String,
    pub client: Option<IpAddr>,
    pub request_id: Option<String>,
    pub method: String,
}

/// The headers' verdict and what the body phase must do.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub outcome: Outcome,
    pub body: BodyState,
}

impl Step {
    fn replied() -> Step {
        Step {
            outcome: Outcome::Replied,
            body: BodyState::Closed,
        }
    }
}

/// Who was admitted, for stamping the upstream request.
enum Admitted<'p> {
    Key(&'p Key),
    Webhook,
}

/// Per request, once its headers are in. `end_of_stream`: the request has no body.
pub fn on_request_headers<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    end_of_stream: bool,
) -> Step {
    let policy = &guard.policy;
    let raw = host.request_headers();
    let headers = header_map::decode(&raw);
    let downstream = if policy.needs_downstream() {
        source_address(host)
    } else {
        None
    };
    let view = RequestView {
        headers: &headers,
        downstream: downstream.as_deref(),
        now_ms: host.now_ms(),
    };
    let allowed_client = match check_ip(policy, &view) {
        Ok(c) => c,
        Err(denial) => {
            refuse(host, guard, ports, &view, &denial);
            return Step::replied();
        }
    };
    // Lockout comes before any credential is looked at: a locked-out guesser learns nothing.
    let client = match (allowed_client, &policy.lockout) {
        (Some(ip), _) => Some(ip),
        (None, Some(_)) => client_of(policy, &view).ok(),
        (None, None) => None,
    };
    if let (Some(lockout), Some(ip)) = (ports.lockout, client) {
        if let Some(retry_after_s) = lockout.locked(ip) {
            host.increment(guard.stats.denied_locked_out);
            export(
                host,
                guard,
                &Audit {
                    lockout: Some(Lockout::Locked),
                    ..Audit::decided(Reason::LockedOut, Some(429))
                        .with_client(Some(ip), policy.client_ip)
                },
            );
            host.send_reply(&Reply::locked_out(
                retry_after_s,
                view.header("x-request-id"),
            ));
            return Step::replied();
        }
    }

    let raw_path = view.header(":path").unwrap_or("");
    let path = clean_path(raw_path);
    if let Some(index) = path.ok().and_then(|p| {
        policy
            .webhooks
            .iter()
            .position(|w| crate::policy::routes::under_prefix(p, &w.path_prefix))
    }) {
        return webhook_headers(host, guard, ports, &view, index, client, end_of_stream);
    }

    let key = match check_key(policy, &view, client) {
        Decision::Admit(key) => key,
        Decision::Deny(denial) => {
            refuse(host, guard, ports, &view, &denial);
            return Step::replied();
        }
    };
    let mut route = None;
    if let Some(routes) = &policy.routes {
        let method = view.header(":method").unwrap_or("");
        let request_id = view.header("x-request-id");
        let found = match path {
            Ok(p) => routes.find(method, p),
            Err(_) => RouteMatch::NotFound,
        };
        let refused = match found {
            RouteMatch::Allowed(r) => {
                route = Some(r.to_string());
                None
            }
            RouteMatch::WrongMethod(allow) => Some(Reply::method_not_allowed(&allow, request_id)),
            RouteMatch::NotFound => Some(Reply::not_found(request_id)),
        };
        if let Some(reply) = refused {
            let why = match path {
                Err(u) => format!("{}: {method} {}", u.as_str(), fields_printable(raw_path)),
                Ok(p) => format!("no route for {method} {}", fields_printable(p)),
            };
            let d = Refusal::new(&why, client, Reason::Route).key(&key.id);
            d.send(host, guard, ports, &view, reply);
            return Step::replied();
        }
        if method == "POST" && !view.header("content-type").is_some_and(is_json_media_type) {
            let d = Refusal::new("POST body is not JSON", client, Reason::MediaType)
                .key(&key.id)
                .route(route.take());
            d.send(
                host,
                guard,
                ports,
                &view,
                Reply::unsupported_media_type(request_id),
            );
            return Step::replied();
        }
    }
    if content_length(&view).is_some_and(|n| n > policy.max_body_bytes) {
        too_large(host, guard, ports, &view, client, Some(&key.id), route);
        return Step::replied();
    }
    let record = Audit {
        key_id: Some(key.id.to_string()),
        route,
        ..admitted(policy, ports, client)
    };
    let outcome = admit(host, guard, ports.tokens, &view, Admitted::Key(key), record);
    let body = match (&outcome, end_of_stream) {
        (Outcome::Replied, _) | (_, true) => BodyState::Closed,
        _ => BodyState::Counting {
            seen: 0,
            request_id: view.header("x-request-id").map(str::to_owned),
            held: matches!(outcome, Outcome::Wait { .. }),
        },
    };
    Step { outcome, body }
}

/// Per body chunk. `body_size` is what Envoy reports: the new chunk while this filter lets
/// the body stream, the whole buffered body while it holds it (webhooks, token waits).
/// Request headers are out of reach once let go (see [`BodyState`]); a held delivery's are not.
pub fn on_request_body<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    state: &mut BodyState,
    body_size: usize,
    end_of_stream: bool,
) -> Outcome {
    let policy = &guard.policy;
    let size = u64::try_from(body_size).unwrap_or(u64::MAX);
    match state {
        BodyState::Closed => Outcome::Replied,
        BodyState::Counting {
            seen,
            request_id,
            held,
        } => {
            *seen = if *held {
                size
            } else {
                seen.saturating_add(size)
            };
            if *seen > policy.max_body_bytes {
                // Cut off mid-stream: Envoy resets the upstream request and answers 413.
                let id = request_id.take();
                let headers = captured(id.as_deref());
                too_large(host, guard, ports, &view_of(&headers), None, None, None);
                *state = BodyState::Closed;
                return Outcome::Replied;
            }
            if *held {
                Outcome::ReadBody
            } else {
                Outcome::Forward
            }
        }
        BodyState::Webhook(_) => {
            let too_large = size > policy.max_body_bytes;
            if !too_large && !end_of_stream {
                return Outcome::ReadBody;
            }
            let BodyState::Webhook(p) = std::mem::replace(state, BodyState::Closed) else {
                return Outcome::Replied;
            };
            let captured_headers = captured(p.request_id.as_deref());
            let captured_view = view_of(&captured_headers);
            if too_large {
                too_large_webhook(host, guard, ports, &captured_view, &p);
                return Outcome::Replied;
            }
            let body = host.request_body(body_size).unwrap_or_default();
            if !webhook_check(host, guard, ports, &captured_view, &p, &body) {
                return Outcome::Replied;
            }
            // Verified. The headers are still here (held): strip, stamp, inject, release.
            let raw = host.request_headers();
            let headers = header_map::decode(&raw);
            let view = RequestView {
                headers: &headers,
                downstream: None,
                now_ms: host.now_ms(),
            };
            if view.header(":path").is_none() || host.property(&["upstream", "address"]).is_some() {
                headers_went_ahead(host, guard, p.request_id.as_deref());
                return Outcome::Replied;
            }
            let record = Audit {
                route: webhook_route(guard, p.index),
                ..admitted(&guard.policy, ports, p.client)
            };
            admit(host, guard, ports.tokens, &view, Admitted::Webhook, record)
        }
    }
}

static WARNED_HEADERS_WENT_AHEAD: AtomicBool = AtomicBool::new(false);

/// A host that ignores a header pause outright (one that "ignores pausing", such as GCP
/// Service Extensions) lets a delivery's headers on before the body is verified. The body is
/// still refused; the operator is told once per worker that this host cannot guard webhooks.
fn headers_went_ahead<H: RequestHost>(host: &H, guard: &Guard, request_id: Option<&str>) {
    if !WARNED_HEADERS_WENT_AHEAD.swap(true, Ordering::Relaxed) {
        host.log(
            log::Level::Error,
            "bcsp-guard: this host let a webhook delivery's headers go on before its signature was \
             checked (it ignores a header pause): do not configure webhooks on it",
        );
    }
    host.increment(guard.stats.denied_webhook_incomplete);
    export(
        host,
        guard,
        &Audit::decided(Reason::WebhookIncomplete, Some(503)),
    );
    let line = format!(
        "bcsp-guard: denied 503 (webhook headers out of reach: the host let them go) request_id={}",
        request_id.map_or_else(|| "-".to_owned(), fields_printable)
    );
    host.log(log::Level::Warn, &line);
    host.send_reply(&Reply::body_unavailable(request_id));
}

static WARNED_BODY_WITHHELD: AtomicBool = AtomicBool::new(false);

/// A held delivery that ends unverified: its headers never left, and now never will.
/// `Withheld` and `NoBody` are what a plugin config without `allow_on_headers_stop_iteration`
/// produces (Envoy then passes no body while the headers are held); the log says so.
pub fn end_hold<H: RequestHost>(host: &H, guard: &Guard, request_id: Option<&str>, why: HoldEnd) {
    host.increment(guard.stats.denied_webhook_incomplete);
    let id = request_id.map_or_else(|| "-".to_owned(), fields_printable);
    let secs = held::BODY_DEADLINE_MS / 1000;
    let reply = match why {
        HoldEnd::Withheld => {
            if !WARNED_BODY_WITHHELD.swap(true, Ordering::Relaxed) {
                let line = "bcsp-guard: Envoy does not pass webhook bodies to bcsp-guard while it \
                    holds their headers: set allow_on_headers_stop_iteration: true in this filter's \
                    Wasm plugin config (envoy.filters.http.wasm config; Envoy 1.35+). Until then \
                    every delivery is refused 503.";
                host.log(log::Level::Error, line);
            }
            let line = format!(
                "bcsp-guard: denied 503 (webhook body withheld by the host: \
                 allow_on_headers_stop_iteration is missing) request_id={id}"
            );
            host.log(log::Level::Warn, &line);
            Reply::body_unavailable(request_id)
        }
        HoldEnd::NoBody => {
            let line = format!(
                "bcsp-guard: denied 503 (no webhook body within {secs} s; if every delivery ends \
                 like this, the Wasm plugin config lacks allow_on_headers_stop_iteration: true) \
                 request_id={id}"
            );
            host.log(log::Level::Warn, &line);
            Reply::body_unavailable(request_id)
        }
        HoldEnd::Incomplete => {
            let line = format!(
                "bcsp-guard: denied 408 (webhook body incomplete after {secs} s) request_id={id}"
            );
            host.log(log::Level::Info, &line);
            Reply::request_timeout(request_id)
        }
    };
    export(
        host,
        guard,
        &Audit::decided(Reason::WebhookIncomplete, Some(reply.status)),
    );
    host.send_reply(&reply);
}

/// Header values the body phase may still need, as a header list for a [`RequestView`].
fn captured(request_id: Option<&str>) -> Vec<(&str, &str)> {
    request_id
        .map(|id| vec![("x-request-id", id)])
        .unwrap_or_default()
}

fn view_of<'h>(headers: &'h [(&'h str, &'h str)]) -> RequestView<'h> {
    RequestView {
        headers,
        downstream: None,
        now_ms: 0,
    }
}

fn content_length(view: &RequestView<'_>) -> Option<u64> {
    view.header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Header-time part of a webhook delivery: the signature header must be there (one value)
/// before any body is read. A delivery with a body is then held whole — headers included —
/// until the body is verified; nothing of it leaves before.
fn webhook_headers<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    view: &RequestView<'_>,
    index: usize,
    client: Option<IpAddr>,
    end_of_stream: bool,
) -> Step {
    let Some(hook) = guard.policy.webhooks.get(index) else {
        return Step::replied();
    };
    let values: Vec<&str> = view.headers_named(&hook.header).collect();
    let signature = match hook.presented(&values) {
        Ok(v) => v.to_owned(),
        Err(e) => {
            webhook_refuse(host, guard, ports, view, index, client, e);
            return Step::replied();
        }
    };
    let pending = PendingWebhook {
        index,
        signature,
        client,
        request_id: view.header("x-request-id").map(str::to_owned),
        method: view.header(":method").unwrap_or("").to_owned(),
    };
    // Larger than we would buffer: it cannot be verified, so it is not authenticated.
    if content_length(view).is_some_and(|n| n > guard.policy.max_body_bytes) {
        too_large_webhook(host, guard, ports, view, &pending);
        return Step::replied();
    }
    if end_of_stream {
        if !webhook_check(host, guard, ports, view, &pending, &[]) {
            return Step::replied();
        }
        let record = Audit {
            route: webhook_route(guard, index),
            ..admitted(&guard.policy, ports, client)
        };
        let outcome = admit(host, guard, ports.tokens, view, Admitted::Webhook, record);
        return Step {
            outcome,
            body: BodyState::Closed,
        };
    }
    // Held until its body is judged. Who sent it and for which webhook are known now, so a
    // delivery that never completes (408, a sender gone) is still logged with them.
    let held = Audit {
        route: webhook_route(guard, index),
        ..seen(&guard.policy, ports, client)
    };
    export(host, guard, &held);
    Step {
        outcome: Outcome::ReadBody,
        body: BodyState::Webhook(Box::new(pending)),
    }
}

/// 413 for a delivery too large to verify (announced or streamed); not a failed signature,
/// so it does not count towards lockout.
fn too_large_webhook<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    view: &RequestView<'_>,
    pending: &PendingWebhook,
) {
    let prefix = guard
        .policy
        .webhooks
        .get(pending.index)
        .map_or("?", |w| w.path_prefix.as_str());
    let why = format!("{} on {prefix}", SignatureError::BodyTooLarge.describe());
    Refusal::new(&why, pending.client, Reason::BodyTooLarge)
        .route(webhook_route(guard, pending.index))
        .send(
            host,
            guard,
            ports,
            view,
            Reply::too_large(guard.policy.max_body_bytes, view.header("x-request-id")),
        );
}

/// The signature over the whole body, then the method (405 only once authenticated).
fn webhook_check<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    view: &RequestView<'_>,
    pending: &PendingWebhook,
    body: &[u8],
) -> bool {
    let Some(hook) = guard.policy.webhooks.get(pending.index) else {
        return false;
    };
    if let Err(e) = hook.verify(&pending.signature, body) {
        webhook_refuse(host, guard, ports, view, pending.index, pending.client, e);
        return false;
    }
    if pending.method != "POST" {
        let why = format!("webhook {} takes only POST", hook.path_prefix);
        Refusal::new(&why, pending.client, Reason::Route)
            .route(webhook_route(guard, pending.index))
            .send(
                host,
                guard,
                ports,
                view,
                Reply::method_not_allowed("POST", view.header("x-request-id")),
            );
        return false;
    }
    true
}

fn webhook_refuse<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    view: &RequestView<'_>,
    index: usize,
    client: Option<IpAddr>,
    error: SignatureError,
) {
    let prefix = guard
        .policy
        .webhooks
        .get(index)
        .map_or("?", |w| w.path_prefix.as_str());
    let why = format!("{} on {prefix}", error.describe());
    let reply = Reply::unauthenticated(&guard.policy.www_authenticate, view.header("x-request-id"));
    Refusal::new(&why, client, Reason::WebhookSignature)
        .route(webhook_route(guard, index))
        .send(host, guard, ports, view, reply);
}

fn too_large<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    view: &RequestView<'_>,
    client: Option<IpAddr>,
    key: Option<&KeyId>,
    route: Option<String>,
) {
    let why = format!("body over max_body_bytes ({})", guard.policy.max_body_bytes);
    let mut d = Refusal::new(&why, client, Reason::BodyTooLarge).route(route);
    d.key = key;
    d.send(
        host,
        guard,
        ports,
        view,
        Reply::too_large(guard.policy.max_body_bytes, view.header("x-request-id")),
    );
}

/// Removes every credential header, any key id the caller sent, and — with `upstream_token` —
/// any identity the caller chose for the upstream, in every spelling a server may read as the
/// same header (see [`crate::policy::names`]). Only names present in the request cost a host
/// call: the map read earlier is complete.
fn strip_client_identity<H: RequestHost>(host: &H, policy: &Policy, view: &RequestView<'_>) {
    for name in policy
        .controlled
        .present(view.headers.iter().map(|(n, _)| *n))
    {
        host.set_request_header(name, None);
    }
}

/// The request trailers to remove: every controlled name, in any spelling. Trailers arrive
/// after the headers went upstream, when a refusal could only reset a half-sent request, and
/// some servers merge them into the headers; removing is what keeps them harmless.
pub fn trailers_to_remove<'t>(guard: &Guard, trailers: &[(&'t str, &str)]) -> Vec<&'t str> {
    guard
        .policy
        .controlled
        .present(trailers.iter().map(|(n, _)| *n))
}

/// Strip every credential, stamp who was admitted, and inject the identity token.
fn admit<H: RequestHost>(
    host: &H,
    guard: &Guard,
    tokens: Option<&dyn TokenPort>,
    view: &RequestView<'_>,
    who: Admitted<'_>,
    mut record: Audit,
) -> Outcome {
    let policy = &guard.policy;
    strip_client_identity(host, policy, view);
    let key_audience = match &who {
        Admitted::Key(key) => key.audience.as_deref(),
        _ => None,
    };
    match who {
        Admitted::Key(key) => {
            if let Some(id_header) = &policy.key_id_header {
                host.set_request_header(id_header, Some(key.id.as_str()));
            }
            host.increment(guard.stats.allowed);
            let index = policy.keys.keys.iter().position(|k| std::ptr::eq(k, key));
            host.increment(index.and_then(|i| guard.stats.key_accepted.get(i).copied().flatten()));
        }
        Admitted::Webhook => {
            host.increment(guard.stats.webhook_accepted);
            record.reason = Some(Reason::WebhookAccepted);
        }
    }
    let Some(upstream) = &policy.upstream_token else {
        export(host, guard, &record);
        return Outcome::Forward;
    };
    // The route read here is the one Envoy chose before these edits (see the README on
    // `audience_by_cluster`); a key's own audience does not depend on routing at all.
    let routed = if upstream.audience_by_cluster.is_empty() {
        None
    } else {
        host.property(&["xds", "cluster_name"])
            .and_then(|b| String::from_utf8(b).ok())
    };
    let audience = key_audience.unwrap_or_else(|| upstream.audience_for(routed.as_deref()));
    // Written before the token step: a 503 there overrides only the verdict and reason.
    record.audience = Some(audience.to_owned());
    export(host, guard, &record);
    let Some(tokens) = tokens else {
        // Configured for tokens but the host cannot hold them: fail closed.
        no_token(host, guard, view, 5);
        return Outcome::Replied;
    };
    if let Some(value) = tokens.header_value(audience) {
        host.set_request_header(&upstream.header, Some(&value));
        return Outcome::Forward;
    }
    match tokens.on_missing(audience) {
        Missing::Wait { deadline_ms } => {
            host.increment(guard.stats.token_waited);
            Outcome::Wait {
                audience: audience.to_owned(),
                deadline_ms,
            }
        }
        Missing::Reject { retry_after_s } => {
            no_token(host, guard, view, retry_after_s);
            Outcome::Replied
        }
    }
}

/// 503 for an admitted request that has no usable token; the upstream sees nothing.
pub fn no_token<H: RequestHost>(
    host: &H,
    guard: &Guard,
    view: &RequestView<'_>,
    retry_after_s: u64,
) {
    host.increment(guard.stats.denied_no_token);
    export(host, guard, &Audit::decided(Reason::NoToken, Some(503)));
    let request_id = view.header("x-request-id");
    host.log(
        log::Level::Warn,
        &format!(
            "bcsp-guard: refused 503 (no valid upstream identity token) request_id={}",
            request_id.unwrap_or("-")
        ),
    );
    host.send_reply(&Reply::no_token(retry_after_s, request_id));
}

fn source_address<H: RequestHost>(host: &H) -> Option<String> {
    host.property(&["source", "address"])
        .and_then(|b| String::from_utf8(b).ok())
}

static WARNED_FORWARDED_SOURCE: AtomicBool = AtomicBool::new(false);

/// An IP or credential denial (403 / 401).
fn refuse<H: RequestHost>(
    host: &H,
    guard: &Guard,
    ports: Ports<'_>,
    view: &RequestView<'_>,
    denial: &Denial<'_>,
) {
    let policy = &guard.policy;
    let request_id = view.header("x-request-id");
    let reply = match denial.reason.status() {
        403 => Reply::forbidden(request_id),
        _ => Reply::unauthenticated(&policy.www_authenticate, request_id),
    };
    if denial.reason == DenyReason::ClientUnknown(Unknown::DownstreamFromHeader)
        && !WARNED_FORWARDED_SOURCE.swap(true, Ordering::Relaxed)
    {
        let line = "bcsp-guard: client_ip is `downstream` but Envoy's source.address came from \
            X-Forwarded-For; set use_remote_address: true on the http_connection_manager (or use \
            client_ip.from x-forwarded-for with trusted_hops). Such requests are refused.";
        host.log(log::Level::Warn, line);
    }
    let mut r = Refusal::new(
        denial.reason.describe(),
        denial.client,
        Reason::of_denial(denial.reason),
    );
    r.key = denial.key;
    r.send(host, guard, ports, view, reply);
}

/// One refusal: counted, logged once (never a secret), a 401 counted towards lockout, sent.
struct Refusal<'a> {
    why: &'a str,
    client: Option<IpAddr>,
    key: Option<&'a KeyId>,
    reason: Reason,
    /// The route or webhook the request matched, for the audit record.
    route: Option<String>,
}

impl<'a> Refusal<'a> {
    fn new(why: &'a str, client: Option<IpAddr>, reason: Reason) -> Refusal<'a> {
        Refusal {
            why,
            client,
            key: None,
            reason,
            route: None,
        }
    }

    fn key(mut self, key: &'a KeyId) -> Refusal<'a> {
        self.key = Some(key);
        self
    }

    fn route(mut self, route: Option<String>) -> Refusal<'a> {
        self.route = route;
        self
    }

    fn send<H: RequestHost>(
        self,
        host: &H,
        guard: &Guard,
        ports: Ports<'_>,
        view: &RequestView<'_>,
        reply: Reply,
    ) {
        let policy = &guard.policy;
        host.increment(self.reason.counter(&guard.stats));
        let request_id = view.header("x-request-id");
        // The log names the client even when no IP rule ran; the decision path stayed lean.
        let client = self.client.or_else(|| {
            let downstream = match (view.downstream, policy.client_ip) {
                (Some(d), _) => Some(d.to_owned()),
                (None, ClientIpRule::Downstream) => source_address(host),
                (None, _) => None,
            };
            let xff: Vec<&str> = view.headers_named("x-forwarded-for").collect();
            policy.client_ip.client(&xff, downstream.as_deref()).ok()
        });
        let shown = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let key = self.key.map(|k| format!(" key={k}")).unwrap_or_default();
        host.log(
            log::Level::Info,
            &format!(
                "bcsp-guard: denied {} ({}) client={shown} request_id={}{key}",
                reply.status,
                self.why,
                request_id.map_or_else(|| "-".to_owned(), fields_printable),
            ),
        );
        let mut record = Audit {
            key_id: self.key.map(|k| k.to_string()),
            route: self.route,
            ..Audit::decided(self.reason, Some(reply.status)).with_client(client, policy.client_ip)
        };
        if let (Some(_), Some(_), false) = (ports.lockout, client, self.reason == Reason::Ip) {
            record.lockout = Some(Lockout::Clear);
        }
        if reply.status == 401 {
            if let (Some(lockout), Some(ip)) = (ports.lockout, client) {
                let failure = lockout.failed(ip);
                record.lockout = Some(match failure {
                    Failure::Counted(_) => Lockout::Counted,
                    Failure::LockedOut { .. } => Lockout::Started,
                    Failure::AlreadyLocked => Lockout::Locked,
                });
                if let Failure::LockedOut { until_s, failures } = failure {
                    host.increment(guard.stats.lockout_started);
                    let (max, window) = policy
                        .lockout
                        .map_or((failures, 0), |l| (l.max_failures, l.window_s));
                    let until = crate::policy::time::format_rfc3339(i64::from(until_s) * 1000);
                    let line = format!(
                        "bcsp-guard: locked out client={ip} after {max} failed authentications \
                         within {window} s; 429 until {until}"
                    );
                    host.log(log::Level::Warn, &line);
                }
            }
        }
        export(host, guard, &record);
        host.send_reply(&reply);
    }
}

/// The record of an admitted request before its key, route and audience are known.
/// Hands `record` to the host unless the configuration turned the export off.
fn export<H: RequestHost>(host: &H, guard: &Guard, record: &Audit) {
    if guard.policy.audit_fields {
        host.audit(record);
    }
}

fn admitted(policy: &Policy, ports: Ports<'_>, client: Option<IpAddr>) -> Audit {
    Audit {
        verdict: Some(None),
        reason: Some(Reason::Allowed),
        ..seen(policy, ports, client)
    }
}

/// The client and its lockout state, before any verdict.
fn seen(policy: &Policy, ports: Ports<'_>, client: Option<IpAddr>) -> Audit {
    let mut record = Audit::default().with_client(client, policy.client_ip);
    if ports.lockout.is_some() && client.is_some() {
        record.lockout = Some(Lockout::Clear);
    }
    record
}

fn webhook_route(guard: &Guard, index: usize) -> Option<String> {
    guard
        .policy
        .webhooks
        .get(index)
        .map(|w| format!("webhook {}", w.path_prefix))
}

#[cfg(test)]
mod tests;
