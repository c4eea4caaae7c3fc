//! `explain`: runs one request through the filter's own request path (the same code Envoy
//! runs, through the pipeline's recording host `Recorder`) and says what it would do and why.
//! It never prints a header value the caller gave: only names, and the values the filter
//! itself would set.

use crate::args::{read_input, Args};
use crate::check;
use crate::envoy;
use bcsp_guard::pipeline::audit::{Audit, FIELDS};
use bcsp_guard::pipeline::header_map;
use bcsp_guard::pipeline::metrics::Stats;
use bcsp_guard::pipeline::record::{Edit, Recorder};
use bcsp_guard::pipeline::{Guard, Outcome, Ports, TokenPort};
use bcsp_guard::policy::client_ip::ClientIpRule;
use bcsp_guard::policy::decide::{check_key, Decision, RequestView};
use bcsp_guard::policy::routes::{clean_path, RouteMatch};
use bcsp_guard::policy::time::{format_rfc3339, parse_rfc3339};
use bcsp_guard::policy::Policy;
use bcsp_guard::token::plan::Missing;
use std::net::IpAddr;
use std::rc::Rc;

/// Offline there is no metadata server: a token is assumed to be available.
struct AssumedToken;

impl TokenPort for AssumedToken {
    fn header_value(&self, audience: &str) -> Option<Rc<str>> {
        Some(Rc::from(format!(
            "Bearer <Google identity token for {audience}>"
        )))
    }
    fn on_missing(&self, _audience: &str) -> Missing {
        Missing::Reject { retry_after_s: 1 }
    }
}

fn load_policy(
    path: &str,
    overrides: &[(String, String)],
) -> Result<(Policy, Vec<String>), String> {
    let bytes = read_input(path)?;
    let mut notes = Vec::new();
    let invalid = |e| format!("{path}: bcsp-guard: invalid configuration: {e}");
    if envoy::is_filter_json(&bytes) {
        let policy = check::compile(&bytes, overrides, &[], &[], &mut notes).map_err(invalid)?;
        return Ok((policy, notes));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))?;
    let found = envoy::find(&text).map_err(|e| format!("{path}: {e}"))?;
    let count = found.len();
    let f = found
        .into_iter()
        .next()
        .ok_or_else(|| format!("{path}: no bcsp-guard filter found"))?;
    if count > 1 {
        notes.push(format!(
            "note: {count} bcsp-guard filters in {path}; explaining the first ({})",
            f.label
        ));
    }
    // The rules of the build this filter loads (the dynamic module also reads generic secrets).
    let policy = check::compile_found(&f, overrides, &mut notes).map_err(invalid)?;
    Ok((policy, notes))
}

fn parse_header(h: &str) -> Result<(String, String), String> {
    let (name, value) = h
        .split_once(':')
        .filter(|(n, _)| !n.trim().is_empty())
        .ok_or_else(|| "--header expects 'name: value'".to_owned())?;
    let name = name.trim().to_ascii_lowercase();
    let token = name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
    if !token || name.starts_with(':') {
        return Err(format!("--header: `{name}` is not a header name"));
    }
    Ok((name, value.trim().to_owned()))
}

pub fn run(argv: &[String]) -> Result<u8, String> {
    let args = Args::parse(
        argv,
        &[
            "header",
            "client-ip",
            "method",
            "path",
            "at",
            "body",
            "body-file",
            "env",
        ],
        &[],
    )?;
    let config_path = args.single_positional("a configuration file (JSON, or an Envoy YAML)")?;
    let method = args.required("method")?.to_owned();
    let path = args.required("path")?.to_owned();
    if !path.starts_with('/') {
        return Err(format!("--path must start with /, got `{path}`"));
    }
    let client: Option<IpAddr> = args
        .one("client-ip")?
        .map(|s| {
            s.parse()
                .map_err(|_| format!("--client-ip: `{s}` is not an IP address"))
        })
        .transpose()?;
    let now_ms = match args.one("at")? {
        None => check::now_ms(),
        Some(t) => parse_rfc3339(t).ok_or_else(|| {
            format!("--at: `{t}` is not an RFC 3339 time such as 2026-10-01T00:00:00Z")
        })?,
    };
    let body = match (args.one("body")?, args.one("body-file")?) {
        (Some(_), Some(_)) => return Err("give --body or --body-file, not both".into()),
        (Some(b), None) => b.as_bytes().to_vec(),
        (None, Some(f)) => read_input(f)?,
        (None, None) => Vec::new(),
    };
    let (policy, mut notes) = load_policy(config_path, &args.env_pairs()?)?;

    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), method.clone()),
        (":path".into(), path.clone()),
        (":scheme".into(), "https".into()),
    ];
    for h in args.all("header") {
        headers.push(parse_header(h)?);
    }
    let has = |hs: &[(String, String)], n: &str| hs.iter().any(|(k, _)| k == n);
    if !has(&headers, ":authority") {
        headers.push((":authority".into(), "bcsp.example".into()));
    }
    if !has(&headers, "x-request-id") {
        headers.push(("x-request-id".into(), "explain".into()));
    }
    if !body.is_empty() && !has(&headers, "content-length") {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    let source = match (policy.client_ip, client) {
        (ClientIpRule::Downstream, Some(ip)) => {
            Some(std::net::SocketAddr::new(ip, 40000).to_string())
        }
        (ClientIpRule::ForwardedFor { trusted_hops }, Some(ip)) => {
            if !has(&headers, "x-forwarded-for") {
                // The client as the N-th entry from the right, as N trusted proxies would leave it.
                let mut xff = vec![ip.to_string()];
                xff.extend((1..trusted_hops).map(|i| format!("10.255.255.{i}")));
                headers.push(("x-forwarded-for".into(), xff.join(", ")));
                notes.push(format!(
                    "note: client_ip is x-forwarded-for with trusted_hops {trusted_hops}: X-Forwarded-For built as the proxies would"
                ));
            }
            None
        }
        (_, None) => None,
    };
    let given: Vec<String> = headers
        .iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(n, _)| n.clone())
        .collect();

    let mut host = Recorder::new(headers.clone(), now_ms);
    if let Some(s) = source {
        host = host.with_property("source.address", s);
    }
    if !body.is_empty() {
        host = host.with_body(body);
    }
    let guard = Guard {
        stats: Stats::define(&policy, |_, _| None),
        policy,
    };
    let ports = Ports {
        tokens: Some(&AssumedToken),
        lockout: None,
    };
    let effects = host.run(&guard, ports);

    println!(
        "request: {method} {path} from {}",
        client.map_or_else(|| "an unknown address".to_owned(), |c| c.to_string())
    );
    println!(
        "  headers given: {}",
        if given.is_empty() {
            "-".to_owned()
        } else {
            given.join(", ")
        }
    );
    println!("  at: {}", format_rfc3339(now_ms));
    for n in &notes {
        println!("  {n}");
    }
    // The filter's own log lines, as Envoy would print them.
    let why: Vec<String> = effects
        .logs
        .iter()
        .filter(|(level, _)| *level <= log::Level::Info)
        .map(|(_, l)| l.trim_start_matches("bcsp-guard: ").to_owned())
        .collect();
    if let (Some(reply), Outcome::Replied) = (effects.reply(), &effects.outcome) {
        let code = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        println!("verdict: refused with {} {code}", reply.status);
        for (n, v) in &reply.headers {
            if matches!(*n, "retry-after" | "allow" | "www-authenticate") {
                println!("  {n}: {v}");
            }
        }
        for w in &why {
            println!("why: {w}");
        }
        print_audit(&effects.audit);
        return Ok(2);
    }
    println!("verdict: forwarded to the upstream");
    explain_admission(&guard.policy, &headers, now_ms, &path, &method);
    for w in &why {
        println!("note: {w}");
    }
    println!("upstream request changes:");
    for edit in &effects.edits {
        match edit {
            Edit::Set(name, v) => println!("  set     {name}: {v}"),
            Edit::Removed(name) => println!("  removed {name}"),
        }
    }
    println!("  (lockout state lives in Envoy and is not known here)");
    print_audit(&effects.audit);
    Ok(0)
}

/// The fields Envoy's access log would print for this request (docs/OPERATIONS.md).
fn print_audit(audit: &Audit) {
    println!("access log (audit fields):");
    for field in &FIELDS {
        let value = audit
            .fields()
            .find(|(f, _)| f.name == field.name)
            .map_or_else(|| "-".to_owned(), |(_, v)| v.into_owned());
        println!("  {:<14} {value}", field.name);
    }
}

/// Why an admitted request was admitted: the key (or webhook) and the route.
fn explain_admission(
    policy: &Policy,
    headers: &[(String, String)],
    now_ms: i64,
    path: &str,
    method: &str,
) {
    let clean = clean_path(path);
    if let Some(hook) = clean.ok().and_then(|p| policy.webhook_for(p)) {
        println!(
            "why: webhook {}: the {} signature matches the body",
            hook.path_prefix, hook.header
        );
        return;
    }
    let pairs = header_map::borrowed(headers);
    let view = RequestView {
        headers: &pairs,
        downstream: None,
        now_ms,
    };
    if let Decision::Admit(key) = check_key(policy, &view, None) {
        let header = policy
            .keys
            .headers()
            .get(key.header)
            .map_or("?", String::as_str);
        let until = key
            .window
            .not_after_ms
            .map_or_else(|| "no end".to_owned(), format_rfc3339);
        println!(
            "why: key {} matched (header {header}), valid until {until}",
            key.id
        );
    }
    if let (Some(routes), Ok(p)) = (&policy.routes, clean) {
        if let RouteMatch::Allowed(r) = routes.find(method, p) {
            println!("why: route {r}");
        }
    }
}
