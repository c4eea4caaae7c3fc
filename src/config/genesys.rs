//! Genesys's published egress ranges (`GET /api/v2/ipranges`), pasted verbatim: selecting the
//! entries for some services and regions. Shared by the filter and the operator CLI.

use super::fields::printable;
use super::raw::RawIpDocument;
use crate::policy::client_ip::Cidr;

pub const DEFAULT_SERVICE: &str = "bot-connector";

/// One selected entry, with its index in `document.entities` for error paths.
pub struct Selected<'d> {
    pub index: usize,
    pub cidr: &'d str,
}

/// The entries whose `service` is one of `services` and whose `region` is one of `regions`.
pub fn select<'d>(
    doc: &'d RawIpDocument,
    services: &[String],
    regions: &[String],
) -> Vec<Selected<'d>> {
    doc.entities
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.service.as_ref().is_some_and(|s| services.contains(s))
                && e.region.as_ref().is_some_and(|r| regions.contains(r))
        })
        .map(|(index, e)| Selected {
            index,
            cidr: e.cidr.as_str(),
        })
        .collect()
}

/// The selected entries parsed as CIDRs; the error names the entry (`document.entities[3].cidr`)
/// relative to the `genesys_ip_ranges` object.
pub fn selected_cidrs(
    doc: &RawIpDocument,
    services: &[String],
    regions: &[String],
) -> Result<Vec<Cidr>, (String, String)> {
    let picked = select(doc, services, regions);
    if picked.is_empty() {
        return Err((String::new(), nothing_selected(doc, services, regions)));
    }
    picked
        .iter()
        .map(|s| {
            Cidr::parse(s.cidr).map_err(|m| {
                (
                    format!("document.entities[{}].cidr", s.index),
                    format!("`{}`: {m}", printable(s.cidr)),
                )
            })
        })
        .collect()
}

/// Why nothing matched, with what the document does offer (bounded).
fn nothing_selected(doc: &RawIpDocument, services: &[String], regions: &[String]) -> String {
    let mut offered: Vec<&str> = doc
        .entities
        .iter()
        .filter(|e| e.service.as_ref().is_some_and(|s| services.contains(s)))
        .filter_map(|e| e.region.as_deref())
        .collect();
    offered.sort_unstable();
    offered.dedup();
    let offered: Vec<String> = offered.iter().take(24).map(|r| printable(r)).collect();
    let want = |l: &[String]| {
        l.iter()
            .map(|s| printable(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "selects no entries for services [{}] in regions [{}] (Genesys would be locked out); \
         regions the document has for these services: [{}]",
        want(services),
        want(regions),
        offered.join(", ")
    )
}
