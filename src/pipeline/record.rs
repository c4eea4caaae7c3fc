//! The one recording host: runs a request through the pipeline with no proxy around it and
//! hands back what a host would have had to do. The CLI's `explain`, the benchmark, the fuzz
//! target and the property tests all drive the pipeline through it, so what they exercise is
//! exactly the code both real hosts run.

use super::audit::Audit;
use super::header_map;
use super::reply::Reply;
use super::{on_request_body, on_request_headers, BodyState, Guard, Outcome, Ports, RequestHost};
use std::cell::RefCell;

/// One header edit the pipeline asked for, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Every value of this header was removed (only recorded when there was one).
    Removed(String),
    /// The header now has exactly this value.
    Set(String, String),
}

/// What the pipeline did to one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Effects {
    /// Header edits in the order they were made.
    pub edits: Vec<Edit>,
    /// The request headers after the edits: what the upstream gets if the request goes on.
    pub headers: Vec<(String, String)>,
    /// Local replies sent (a correct run sends at most one).
    pub replies: Vec<Reply>,
    /// Metric ids incremented, in order (metrics the host could not define are not calls).
    pub counters: Vec<u32>,
    /// The pipeline's last verdict for the request.
    pub outcome: Outcome,
    /// The audit record as an access log would print it (every record merged in order).
    pub audit: Audit,
    /// The lines the pipeline logged, in order (never a secret: the same lines Envoy prints).
    pub logs: Vec<(log::Level, String)>,
}

impl Effects {
    /// Names of the headers removed.
    pub fn removed(&self) -> impl Iterator<Item = &str> {
        self.edits.iter().filter_map(|e| match e {
            Edit::Removed(n) => Some(n.as_str()),
            Edit::Set(..) => None,
        })
    }

    /// Headers set, with their values.
    pub fn set(&self) -> impl Iterator<Item = (&str, &str)> {
        self.edits.iter().filter_map(|e| match e {
            Edit::Set(n, v) => Some((n.as_str(), v.as_str())),
            Edit::Removed(_) => None,
        })
    }

    /// The reply sent, if any (the last one, should there be several).
    pub fn reply(&self) -> Option<&Reply> {
        self.replies.last()
    }

    /// How often metric `id` was incremented (`None`: a metric the host never defined).
    pub fn count(&self, id: Option<u32>) -> usize {
        id.map_or(0, |id| self.counters.iter().filter(|&&c| c == id).count())
    }

    /// Every value of `name` (any letter case) the upstream would get.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A request as a host would hold it, recording every call the pipeline makes on it.
#[derive(Debug, Default)]
pub struct Recorder {
    headers: RefCell<Vec<(String, String)>>,
    /// Properties by dotted path (`source.address`, `xds.cluster_name`, ...).
    properties: Vec<(String, Vec<u8>)>,
    now_ms: i64,
    /// `None`: the request ends with its headers.
    body: Option<Vec<u8>>,
    edits: RefCell<Vec<Edit>>,
    replies: RefCell<Vec<Reply>>,
    counters: RefCell<Vec<u32>>,
    audit: RefCell<Audit>,
    logs: RefCell<Vec<(log::Level, String)>>,
}

impl Recorder {
    /// A request with these headers (pseudo-headers included), seen at `now_ms`.
    pub fn new(headers: Vec<(String, String)>, now_ms: i64) -> Recorder {
        Recorder {
            headers: RefCell::new(headers),
            now_ms,
            ..Recorder::default()
        }
    }

    /// A property the host answers, by dotted path (e.g. `source.address` = `ip:port`).
    pub fn with_property(mut self, path: &str, value: impl Into<Vec<u8>>) -> Recorder {
        self.properties.push((path.to_owned(), value.into()));
        self
    }

    /// The request has this body; it arrives whole as the request's last chunk.
    pub fn with_body(mut self, body: Vec<u8>) -> Recorder {
        self.body = Some(body);
        self
    }

    /// The request through the pipeline as a host runs it: its headers, then (when it has
    /// one and the headers phase asked for it) its body as one last chunk.
    pub fn run(self, guard: &Guard, ports: Ports<'_>) -> Effects {
        let step = on_request_headers(&self, guard, ports, self.body.is_none());
        let mut state = step.body;
        let body_len = self.body.as_ref().map(Vec::len);
        let outcome = match (step.outcome, body_len) {
            (Outcome::ReadBody | Outcome::Forward, Some(len)) if state != BodyState::Closed => {
                on_request_body(&self, guard, ports, &mut state, len, true)
            }
            (outcome, _) => outcome,
        };
        self.into_effects(outcome)
    }

    /// What was recorded, with the verdict the caller got from the pipeline.
    pub fn into_effects(self, outcome: Outcome) -> Effects {
        Effects {
            edits: self.edits.into_inner(),
            headers: self.headers.into_inner(),
            replies: self.replies.into_inner(),
            counters: self.counters.into_inner(),
            outcome,
            audit: self.audit.into_inner(),
            logs: self.logs.into_inner(),
        }
    }
}

impl RequestHost for Recorder {
    fn request_headers(&self) -> Vec<u8> {
        header_map::encode(&self.headers.borrow())
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties
            .iter()
            .find(|(p, _)| p.split('.').eq(path.iter().copied()))
            .map(|(_, v)| v.clone())
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let present = header_map::replace(&mut self.headers.borrow_mut(), name, value);
        let edit = match value {
            Some(v) => Edit::Set(name.to_owned(), v.to_owned()),
            None if present => Edit::Removed(name.to_owned()),
            None => return,
        };
        self.edits.borrow_mut().push(edit);
    }
    fn send_reply(&self, reply: &Reply) {
        self.replies.borrow_mut().push(reply.clone());
    }
    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            self.counters.borrow_mut().push(id);
        }
    }
    fn now_ms(&self) -> i64 {
        self.now_ms
    }
    fn audit(&self, record: &Audit) {
        self.audit.borrow_mut().merge(record);
    }
    fn log(&self, level: log::Level, line: &str) {
        self.logs.borrow_mut().push((level, line.to_owned()));
    }
    fn request_body(&self, len: usize) -> Option<Vec<u8>> {
        self.body
            .as_ref()
            .map(|b| b.iter().take(len).copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::testing::guard;

    fn request(headers: &[(&str, &str)]) -> Recorder {
        let mut all = vec![
            (":method".to_owned(), "GET".to_owned()),
            (":path".to_owned(), "/bots".to_owned()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        Recorder::new(all, crate::host::testing::NOW_MS)
    }

    #[test]
    fn admitted_request_effects_list_the_edits_and_the_counters() {
        let g = guard("");
        let fx = request(&[("x-bcsp-key", "alpha"), ("x-bcsp-key-id", "forged")])
            .run(&g, Ports::default());
        assert_eq!(fx.outcome, Outcome::Forward);
        assert_eq!(
            fx.removed().collect::<Vec<_>>(),
            ["x-bcsp-key", "x-bcsp-key-id"]
        );
        assert_eq!(fx.set().collect::<Vec<_>>(), [("x-bcsp-key-id", "a")]);
        assert_eq!(fx.header("x-bcsp-key-id"), ["a"]);
        assert!(fx.header("x-bcsp-key").is_empty());
        assert_eq!(fx.count(g.stats.allowed), 1);
        assert_eq!(fx.count(g.stats.key_accepted[0]), 1);
        assert!(fx.reply().is_none());
    }

    #[test]
    fn refused_request_effects_carry_the_reply_and_no_edit() {
        let g = guard(r#","allow_cidrs":["10.0.0.0/8"]"#);
        let fx = request(&[("x-bcsp-key", "alpha")])
            .with_property("source.address", "192.0.2.1:1000")
            .run(&g, Ports::default());
        assert_eq!(fx.outcome, Outcome::Replied);
        assert_eq!(fx.reply().map(|r| r.status), Some(403));
        assert!(fx.edits.is_empty());
        assert_eq!(fx.count(g.stats.denied_ip), 1);
        assert_eq!(fx.header("x-bcsp-key"), ["alpha"]);
        let (level, line) = &fx.logs[0];
        assert_eq!(*level, log::Level::Info);
        assert!(
            line.starts_with(
                "bcsp-guard: denied 403 (client address not in allow_cidrs) client=192.0.2.1"
            ),
            "{line}"
        );
        assert!(!line.contains("alpha"));
    }

    #[test]
    fn a_body_arrives_as_the_last_chunk_and_is_judged() {
        let g = guard(r#","max_body_bytes":4"#);
        let fx = request(&[("x-bcsp-key", "alpha")])
            .with_body(b"12345".to_vec())
            .run(&g, Ports::default());
        assert_eq!(fx.outcome, Outcome::Replied);
        assert_eq!(fx.reply().map(|r| r.status), Some(413));
    }
}
