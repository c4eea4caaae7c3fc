//! Request hosts that record what the request path did: headers, property reads, replies,
//! counters.

use super::NOW_MS;
use crate::pipeline::reply::Reply;
use crate::pipeline::RequestHost;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A full Envoy-like host: properties and a body on request, metrics counted.
#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) headers: RefCell<Vec<(String, String)>>,
    pub(crate) properties: BTreeMap<String, String>,
    pub(crate) replies: RefCell<Vec<Reply>>,
    pub(crate) counters: RefCell<BTreeMap<u32, i64>>,
    /// Like GCP Service Extensions: any metric update is a host error.
    pub(crate) refuse_metrics: bool,
    pub(crate) property_reads: RefCell<Vec<String>>,
    /// The request body Envoy would hold.
    pub(crate) body: Vec<u8>,
}

impl RequestHost for FakeHost {
    fn request_headers(&self) -> Vec<u8> {
        crate::pipeline::header_map::encode(&self.headers.borrow())
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        self.property_reads.borrow_mut().push(key.clone());
        self.properties.get(&key).map(|v| v.as_bytes().to_vec())
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        crate::pipeline::header_map::replace(&mut self.headers.borrow_mut(), name, value);
    }
    fn send_reply(&self, reply: &Reply) {
        self.replies.borrow_mut().push(Reply {
            status: reply.status,
            headers: reply.headers.clone(),
            body: reply.body.clone(),
        });
    }
    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            assert!(
                !self.refuse_metrics,
                "metric call on a host without metrics"
            );
            *self.counters.borrow_mut().entry(id).or_default() += 1;
        }
    }
    fn now_ms(&self) -> i64 {
        NOW_MS
    }
    fn request_body(&self, len: usize) -> Option<Vec<u8>> {
        Some(self.body.iter().take(len).copied().collect())
    }
}

impl FakeHost {
    pub(crate) fn with(headers: &[(&str, &str)]) -> FakeHost {
        let h = FakeHost::default();
        *h.headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        h
    }
    pub(crate) fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub(crate) fn count(&self, id: Option<u32>) -> i64 {
        id.and_then(|i| self.counters.borrow().get(&i).copied())
            .unwrap_or(0)
    }
}

/// Where `source.address` comes from on this host.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source {
    /// The host refuses every property read.
    Refused,
    /// `source.address` is this `ip:port`; other properties are absent.
    Is(&'static str),
}

/// A local reply as the host received it: status and headers.
pub(crate) type Sent = (u32, Vec<(&'static str, String)>);

/// A Service Extensions-like request host.
pub(crate) struct SeHost {
    pub(crate) headers: RefCell<Vec<(String, String)>>,
    pub(crate) source: Source,
    pub(crate) property_reads: RefCell<Vec<String>>,
    pub(crate) replies: RefCell<Vec<Sent>>,
}

impl SeHost {
    pub(crate) fn new(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        source: Source,
    ) -> SeHost {
        let mut all = vec![
            (":method".to_owned(), method.to_owned()),
            (":path".to_owned(), path.to_owned()),
            (":authority".to_owned(), "bcsp.example.com".to_owned()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        SeHost {
            headers: RefCell::new(all),
            source,
            property_reads: RefCell::default(),
            replies: RefCell::default(),
        }
    }
    pub(crate) fn header(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub(crate) fn statuses(&self) -> Vec<u32> {
        self.replies.borrow().iter().map(|(s, _)| *s).collect()
    }
    pub(crate) fn reply_header(&self, name: &str) -> Option<String> {
        let replies = self.replies.borrow();
        let (_, headers) = replies.last()?;
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

impl RequestHost for SeHost {
    fn request_headers(&self) -> Vec<u8> {
        crate::pipeline::header_map::encode(&self.headers.borrow())
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        self.property_reads.borrow_mut().push(key.clone());
        match self.source {
            Source::Is(addr) if key == "source.address" => Some(addr.as_bytes().to_vec()),
            _ => None,
        }
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        crate::pipeline::header_map::replace(&mut self.headers.borrow_mut(), name, value);
    }
    fn send_reply(&self, reply: &Reply) {
        self.replies
            .borrow_mut()
            .push((reply.status, reply.headers.clone()));
    }
    fn increment(&self, metric: Option<u32>) {
        if let Some(id) = metric {
            panic!("metric {id} updated, but this host defines no metrics");
        }
    }
    fn now_ms(&self) -> i64 {
        NOW_MS
    }
    fn request_body(&self, _len: usize) -> Option<Vec<u8>> {
        None
    }
}
