//! Genesys's published IP ranges, pasted verbatim as `genesys_ip_ranges.document`: the entries
//! of the chosen services and regions join `allow_cidrs`; selecting nothing stops Envoy.

mod harness;

use harness::*;
use serde_json::{json, Value};

const KEY: &str = "k3y-ipranges-suite-5be2";

/// A `GET /api/v2/ipranges` response as Genesys publishes it (with a field we do not use).
fn document() -> Value {
    json!({"entities": [
        {"cidr": "127.0.0.5/32", "service": "bot-connector", "region": "us-east-1", "direction": "outbound"},
        {"cidr": "127.0.0.6/32", "service": "bot-connector", "region": "eu-central-1", "direction": "outbound"},
        {"cidr": "127.0.0.7/32", "service": "web-services", "region": "us-east-1", "direction": "outbound"}
    ]})
}

#[test]
fn the_chosen_services_and_regions_join_allow_cidrs() {
    let filter = json!({
        "keys": [key("k1", KEY)],
        "allow_cidrs": ["127.0.0.9/32"],
        "genesys_ip_ranges": {"document": document(), "regions": ["us-east-1"]},
    });
    let stack = Stack::start(&EnvoyConfig::new(filter));
    for (from, want) in [(5, 200), (9, 200), (6, 403), (7, 403)] {
        let id = rid("ipr");
        let r = stack
            .request("/botconnector/bots")
            .from(lo(from))
            .header("x-bcsp-key", KEY)
            .header("x-request-id", &id)
            .send();
        if want == 200 {
            assert_eq!(r.status, 200, "from 127.0.0.{from}: {}", r.text());
        } else {
            assert_denied(&r, 403, &id);
        }
    }
    let log = stack.envoy.settled_log();
    assert!(
        log.contains("ip allowlist: 2 CIDRs (1 from genesys_ip_ranges (services bot-connector; regions us-east-1); 2 ranges once merged)"),
        "{log}"
    );
}

#[test]
fn selecting_no_entry_stops_envoy_and_names_the_regions_on_offer() {
    let filter = json!({
        "keys": [key("k1", KEY)],
        "genesys_ip_ranges": {"document": document(), "regions": ["ap-south-9"]},
    });
    let (code, log) = Envoy::expect_config_failure(&EnvoyConfig::new(filter));
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains(
            "bcsp-guard: invalid configuration: genesys_ip_ranges: selects no entries for services \
             [bot-connector] in regions [ap-south-9]"
        ),
        "{log}"
    );
    assert!(log.contains("[eu-central-1, us-east-1]"), "{log}");
}
