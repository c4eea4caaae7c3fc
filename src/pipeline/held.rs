//! Webhook deliveries whose headers this filter holds until their body is verified. Each has a
//! deadline, so a delivery never waits forever: not when its sender stalls, and not when the
//! host ignores the pause's "keep sending me the body" part (Envoy without
//! `allow_on_headers_stop_iteration`). Plain Rust, driven by the root context's timer.

/// How long a delivery's body may take to arrive in full. Genesys gives up after 10 s and
/// retries, so waiting longer only keeps a connection open for nothing.
pub const BODY_DEADLINE_MS: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    context_id: u32,
    deadline_ms: u64,
    request_id: Option<String>,
    /// What the host said the request weighed (`request.total_size`) when its headers came.
    size_at_headers: Option<u64>,
    body_seen: bool,
}

/// Why a held delivery is refused without being verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldEnd {
    /// Body bytes reached the host but not this filter: the host does not pass the body on
    /// while the headers are held (the plugin config lacks the flag).
    Withheld,
    /// The deadline passed and no body byte ever reached this filter.
    NoBody,
    /// The deadline passed with the body still incomplete (a slow or stalled sender).
    Incomplete,
}

/// A delivery to refuse now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub context_id: u32,
    pub request_id: Option<String>,
    pub why: HoldEnd,
}

#[derive(Debug, Default)]
pub struct Held {
    entries: Vec<Entry>,
}

impl Held {
    pub fn add(
        &mut self,
        context_id: u32,
        now_ms: u64,
        request_id: Option<String>,
        size_at_headers: Option<u64>,
    ) {
        self.remove(context_id);
        self.entries.push(Entry {
            context_id,
            deadline_ms: now_ms.saturating_add(BODY_DEADLINE_MS),
            request_id,
            size_at_headers,
            body_seen: false,
        });
    }

    /// A body callback reached this filter: the host honours the pause.
    pub fn saw_body(&mut self, context_id: u32) {
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.context_id == context_id)
        {
            e.body_seen = true;
        }
    }

    pub fn remove(&mut self, context_id: u32) {
        self.entries.retain(|e| e.context_id != context_id);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Deliveries whose deadline passed, taken out of the book.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<Expired> {
        let (due, keep): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| now_ms >= e.deadline_ms);
        self.entries = keep;
        due.into_iter()
            .map(|e| Expired {
                context_id: e.context_id,
                why: if e.body_seen {
                    HoldEnd::Incomplete
                } else {
                    HoldEnd::NoBody
                },
                request_id: e.request_id,
            })
            .collect()
    }

    /// Deliveries that got no body callback yet, with their size at header time: the host
    /// is asked whether it has received more since.
    pub fn to_probe(&self) -> Vec<(u32, u64)> {
        self.entries
            .iter()
            .filter(|e| !e.body_seen)
            .filter_map(|e| e.size_at_headers.map(|s| (e.context_id, s)))
            .collect()
    }

    /// Takes out a delivery the host received body bytes for that never reached this filter.
    pub fn take_if_withheld(&mut self, context_id: u32, size_now: Option<u64>) -> Option<Expired> {
        let i = self.entries.iter().position(|e| {
            e.context_id == context_id && withheld(e.size_at_headers, size_now, e.body_seen)
        })?;
        let e = self.entries.remove(i);
        Some(Expired {
            context_id,
            request_id: e.request_id,
            why: HoldEnd::Withheld,
        })
    }
}

/// The host has taken in body bytes (the request grew since its headers) that this filter was
/// never shown: it holds the body back, which Envoy does when the plugin config lacks
/// `allow_on_headers_stop_iteration`.
pub fn withheld(size_at_headers: Option<u64>, size_now: Option<u64>, body_seen: bool) -> bool {
    match (size_at_headers, size_now) {
        (Some(before), Some(now)) => !body_seen && now > before,
        _ => false,
    }
}

/// `request.total_size` as proxy-wasm hands it over: a little-endian 64-bit integer.
pub fn size_property(bytes: &[u8]) -> Option<u64> {
    let raw: [u8; 8] = bytes.try_into().ok()?;
    u64::try_from(i64::from_le_bytes(raw)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_expires_once_with_the_reason_its_body_tells() {
        let mut h = Held::default();
        h.add(1, 1_000, Some("r1".into()), Some(300));
        h.add(2, 1_500, None, None);
        h.saw_body(2);
        assert!(h.take_expired(1_000 + BODY_DEADLINE_MS - 1).is_empty());
        let due = h.take_expired(1_000 + BODY_DEADLINE_MS);
        assert_eq!(
            due,
            vec![Expired {
                context_id: 1,
                request_id: Some("r1".into()),
                why: HoldEnd::NoBody
            }]
        );
        assert!(h.take_expired(1_000 + BODY_DEADLINE_MS).is_empty(), "once");
        let due = h.take_expired(u64::MAX);
        assert_eq!(due[0].why, HoldEnd::Incomplete);
        assert!(h.is_empty());
    }

    #[test]
    fn a_host_that_took_body_bytes_the_filter_never_saw_is_caught() {
        assert!(withheld(Some(300), Some(1_300), false));
        assert!(!withheld(Some(300), Some(300), false), "nothing sent yet");
        assert!(!withheld(Some(300), Some(1_300), true), "the filter saw it");
        assert!(!withheld(None, Some(1_300), false), "no size: no verdict");
        assert!(!withheld(Some(300), None, false));

        let mut h = Held::default();
        h.add(7, 0, Some("r7".into()), Some(300));
        h.add(8, 0, None, Some(200));
        h.add(9, 0, None, None);
        h.saw_body(8);
        assert_eq!(h.to_probe(), vec![(7, 300)]);
        assert_eq!(h.take_if_withheld(7, Some(300)), None);
        let got = h.take_if_withheld(7, Some(900)).map(|e| e.why);
        assert_eq!(got, Some(HoldEnd::Withheld));
        assert_eq!(h.take_if_withheld(7, Some(900)), None, "taken out");
        h.remove(8);
        h.remove(9);
        assert!(h.is_empty());
    }

    #[test]
    fn the_size_property_is_a_little_endian_integer() {
        assert_eq!(size_property(&1234i64.to_le_bytes()), Some(1234));
        assert_eq!(size_property(&(-1i64).to_le_bytes()), None);
        assert_eq!(size_property(b"12"), None);
    }
}
