//! `ipranges`: the `genesys_ip_ranges` snippet from a saved Genesys `GET /api/v2/ipranges`
//! response, selected and checked with the filter's own rules.

use crate::args::{read_input, Args};
use bcsp_guard::config::genesys::{self, DEFAULT_SERVICE};
use bcsp_guard::config::raw::RawIpDocument;
use serde_json::{json, Value};

pub fn run(argv: &[String]) -> Result<u8, String> {
    let args = Args::parse(argv, &["region", "service"], &[])?;
    let file = args.single_positional("a saved Genesys ipranges response (FILE or -)")?;
    let regions: Vec<String> = args.all("region").into_iter().map(str::to_owned).collect();
    if regions.is_empty() {
        return Err("--region is required (repeat it for several regions)".into());
    }
    let mut services: Vec<String> = args.all("service").into_iter().map(str::to_owned).collect();
    if services.is_empty() {
        services.push(DEFAULT_SERVICE.to_owned());
    }
    let bytes = read_input(file)?;
    let raw: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{file}: not JSON: {e}"))?;
    let doc: RawIpDocument = serde_json::from_value(raw.clone()).map_err(|e| {
        format!("{file}: not a Genesys ipranges response ({{\"entities\": [{{\"cidr\", \"service\", \"region\"}}]}}): {e}")
    })?;
    genesys::selected_cidrs(&doc, &services, &regions).map_err(|(path, m)| {
        if path.is_empty() {
            format!("{file}: {m}")
        } else {
            format!("{file}: {path}: {m}")
        }
    })?;
    let picked = genesys::select(&doc, &services, &regions);
    // The selected entries verbatim (fields the filter does not use included), so the snippet
    // stays a faithful excerpt of what Genesys published.
    let entities: Vec<Value> = picked
        .iter()
        .filter_map(|s| raw.get("entities")?.get(s.index).cloned())
        .collect();
    let snippet = json!({
        "genesys_ip_ranges": {
            "document": {"entities": entities},
            "services": services,
            "regions": regions,
        }
    });
    let text = serde_json::to_string_pretty(&snippet).map_err(|e| e.to_string())?;
    println!("{text}");
    eprintln!(
        "selected {} of {} entries (services {}; regions {}); merge \"genesys_ip_ranges\" into the filter configuration",
        picked.len(),
        doc.entities.len(),
        services.join(","),
        regions.join(",")
    );
    Ok(0)
}
