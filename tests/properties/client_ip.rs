//! Client IP: X-Forwarded-For entries and the downstream rule.

use super::*;

/// One X-Forwarded-For entry in one of many shapes, and the address it stands for
/// (`None`: not an address, so never a client).
fn xff_entry() -> impl Strategy<Value = (String, Option<IpAddr>)> {
    let v4 = any::<u32>().prop_map(Ipv4Addr::from);
    let v6 = prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|a| 0xffff_0000_0000 | u128::from(a)),
        (0u128..4),
    ]
    .prop_map(Ipv6Addr::from);
    let port_ok = prop_oneof![
        (0u32..=65535).prop_map(|p| p.to_string()),
        (0u32..=65535).prop_map(|p| format!("{p:05}")),
    ];
    let port_bad = prop_oneof![
        Just(String::new()),
        (65536u32..1_000_000).prop_map(|p| p.to_string()),
        (0u32..=65535).prop_map(|p| format!("{p:06}")),
        select(&["123456", "0x1f", "-1", "8a", " 80", "+80", "8 0"][..]).prop_map(str::to_owned),
    ];
    let shape = prop_oneof![
        v4.clone()
            .prop_map(|a| (a.to_string(), Some(IpAddr::V4(a)))),
        (v4.clone(), port_ok.clone()).prop_map(|(a, p)| (format!("{a}:{p}"), Some(IpAddr::V4(a)))),
        (v4.clone(), port_bad.clone()).prop_map(|(a, p)| (format!("{a}:{p}"), None)),
        v6.clone()
            .prop_map(|a| (a.to_string(), Some(IpAddr::V6(a)))),
        v6.clone()
            .prop_map(|a| (format!("[{a}]"), Some(IpAddr::V6(a)))),
        (v6.clone(), port_ok).prop_map(|(a, p)| (format!("[{a}]:{p}"), Some(IpAddr::V6(a)))),
        (v6.clone(), port_bad).prop_map(|(a, p)| (format!("[{a}]:{p}"), None)),
        v6.clone().prop_map(|a| (format!("[{a}"), None)),
        v6.clone().prop_map(|a| (format!("[{a}]x"), None)),
        v6.clone().prop_map(|a| (format!("{a}%eth0"), None)),
        v6.prop_map(|a| (format!("[{a}%25eth0]:80"), None)),
        v4.clone().prop_map(|a| (format!("[{a}]"), None)),
        (v4, 0u8..100).prop_map(|(a, o)| {
            let [_, b, c, d] = a.octets();
            (format!("0{o}.{b}.{c}.{d}"), None)
        }),
        select(
            &[
                "",
                " ",
                "unknown",
                "_hidden",
                "1.2.3",
                "1.2.3.4.5",
                "1.2.3.256",
                "1.2.3.4 5.6.7.8",
                "\"1.2.3.4\"",
                "1.2.3.4\0",
                "1.2.3.4\r",
                "\n",
                "::ffff:1.2.3.4.5",
                "1::2::3",
                "[]",
                "[::1]]",
                "1.2.3.4:80:80",
            ][..]
        )
        .prop_map(|g| (g.to_owned(), None)),
        "[g-z_\"!;]{1,8}".prop_map(|g| (g, None)),
    ];
    (shape, "[ \t]{0,2}", "[ \t]{0,2}").prop_map(|((text, ip), l, r)| (format!("{l}{text}{r}"), ip))
}

pub(super) type XffValues = Vec<Vec<(String, Option<IpAddr>)>>;

pub(super) fn xff_values() -> impl Strategy<Value = XffValues> {
    prop::collection::vec(prop::collection::vec(xff_entry(), 1..6), 0..4)
}

pub(super) fn joined(values: &XffValues) -> Vec<String> {
    values
        .iter()
        .map(|v| v.iter().map(|e| e.0.as_str()).collect::<Vec<_>>().join(","))
        .collect()
}

/// The rule as documented: the N-th entry from the right across all values, empty entries
/// included; an entry that is not an address makes the client unknown.
pub(super) fn reference_xff(values: &XffValues, n: usize) -> Result<IpAddr, Unknown> {
    let all: Vec<Option<IpAddr>> = values.iter().flatten().map(|e| e.1).collect();
    if n > all.len() {
        return Err(Unknown::TooFewForwardedEntries);
    }
    all[all.len() - n]
        .map(unmap)
        .ok_or(Unknown::UnparsableForwardedEntry)
}

/// `source.address` text and its expected outcome under the downstream rule.
pub(super) fn downstream() -> impl Strategy<Value = (Option<String>, Result<IpAddr, Unknown>)> {
    let v4 = any::<u32>().prop_map(|a| IpAddr::V4(a.into()));
    let v6 = prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|a| 0xffff_0000_0000 | u128::from(a)),
    ]
    .prop_map(|a| IpAddr::V6(a.into()));
    let show = |ip: IpAddr, port: u16| match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    prop_oneof![
        (prop_oneof![v4.clone(), v6.clone()], 1u16..=65535)
            .prop_map(move |(ip, port)| (Some(show(ip, port)), Ok(unmap(ip)))),
        prop_oneof![v4.clone(), v6]
            .prop_map(move |ip| (Some(show(ip, 0)), Err(Unknown::DownstreamFromHeader))),
        v4.prop_map(|ip| (Some(ip.to_string()), Err(Unknown::NoDownstreamAddress))),
        Just((None, Err(Unknown::NoDownstreamAddress))),
        "\\PC{0,12}"
            .prop_filter("not an address", |s| s
                .parse::<std::net::SocketAddr>()
                .is_err())
            .prop_map(|s| (Some(s), Err(Unknown::NoDownstreamAddress))),
    ]
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Each entry shape parses to exactly the address it was made from, or to nothing.
    #[test]
    fn forwarded_entries_parse_to_the_address_they_were_made_from(entry in xff_entry()) {
        prop_assert_eq!(parse_forwarded_entry(&entry.0), entry.1, "{:?}", entry.0);
    }

    /// Any text: never panics, and an accepted entry is an address the standard library reads
    /// from the trimmed entry (bare, `ip:port`, `[v6]` or `[v6]:port`).
    #[test]
    fn forwarded_entry_parse_never_panics(text in prop_oneof!["\\PC{0,48}", "[0-9a-f:.\\[\\] %\t]{0,48}"]) {
        if let Some(ip) = parse_forwarded_entry(&text) {
            let t = text.trim_matches([' ', '\t']);
            let reread = t.parse::<IpAddr>().ok()
                .or_else(|| t.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                .or_else(|| t.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(IpAddr::V6));
            prop_assert_eq!(reread, Some(ip), "{:?}", text);
        }
    }

    /// X-Forwarded-For lists of random entries over random header values: the selected client
    /// is the reference's, for every trusted_hops.
    #[test]
    fn client_ip_from_forwarded_for_agrees_with_the_rule(
        values in xff_values(),
        hops in prop_oneof![1u8..=4, 1u8..=32],
    ) {
        let texts = joined(&values);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rule = ClientIpRule::ForwardedFor { trusted_hops: hops };
        prop_assert_eq!(rule.client(&refs, None), reference_xff(&values, usize::from(hops)), "{:?}", texts);
    }

    /// The downstream rule: the peer address, unless the port is 0 (taken from a header) or
    /// there is none; X-Forwarded-For is never read.
    #[test]
    fn client_ip_from_downstream_agrees_with_the_rule(
        (text, want) in downstream(),
        values in xff_values(),
    ) {
        let texts = joined(&values);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        prop_assert_eq!(ClientIpRule::Downstream.client(&refs, text.as_deref()), want);
    }
}
