//! CIDRs: membership against reference masks.

use super::*;

/// A CIDR's text and what the reference makes of it (`None`: host bits set, refused).
fn cidr_text() -> impl Strategy<Value = (String, Option<RefNet>)> {
    let v4 = (any::<u32>(), 0u32..=32, any::<bool>(), any::<bool>()).prop_map(
        |(addr, p, clean, bare)| {
            let net = if clean { addr & v4_mask(p) } else { addr };
            let text = if bare && p == 32 {
                Ipv4Addr::from(net).to_string()
            } else {
                format!("{}/{p}", Ipv4Addr::from(net))
            };
            let ok = net & !v4_mask(p) == 0;
            (text, ok.then_some(RefNet::V4(net, p)))
        },
    );
    let mapped = (any::<u32>(), 0u32..=32, any::<bool>()).prop_map(|(addr, p, clean)| {
        let net = if clean { addr & v4_mask(p) } else { addr };
        let text = format!("::ffff:{}/{}", Ipv4Addr::from(net), 96 + p);
        let ok = net & !v4_mask(p) == 0;
        (text, ok.then_some(RefNet::V4(net, p)))
    });
    let v6_addr = prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|a| 0xffff_0000_0000 | u128::from(a)),
        (0u128..4),
        any::<u16>().prop_map(|a| u128::from(a) << 112),
    ];
    let v6 =
        (v6_addr, 0u32..=128, any::<bool>(), any::<bool>()).prop_map(|(addr, p, clean, bare)| {
            let net = if clean { addr & v6_mask(p) } else { addr };
            let text = if bare && p == 128 {
                Ipv6Addr::from(net).to_string()
            } else {
                format!("{}/{p}", Ipv6Addr::from(net))
            };
            let ok = net & !v6_mask(p) == 0;
            let is_mapped = net >> 32 == 0xffff;
            let want = match (ok, is_mapped && p >= 96) {
                (false, _) => None,
                (true, true) => Some(RefNet::V4(net as u32, p - 96)),
                (true, false) => Some(RefNet::V6(net, p)),
            };
            (text, want)
        });
    prop_oneof![v4, mapped, v6]
}

/// Addresses near `net` (inside it with random host bits) and anywhere.
fn addresses(net: Option<RefNet>, picks: &[(u128, u8)]) -> Vec<IpAddr> {
    picks
        .iter()
        .map(|&(r, how)| match (how % 5, net) {
            (0, Some(RefNet::V4(n, p))) => IpAddr::V4(Ipv4Addr::from(n | (r as u32 & !v4_mask(p)))),
            (1, Some(RefNet::V4(n, p))) => {
                IpAddr::V6(Ipv4Addr::from(n | (r as u32 & !v4_mask(p))).to_ipv6_mapped())
            }
            (0 | 1, Some(RefNet::V6(n, p))) => IpAddr::V6(Ipv6Addr::from(n | (r & !v6_mask(p)))),
            (2, _) => IpAddr::V4(Ipv4Addr::from(r as u32)),
            (3, _) => IpAddr::V6(Ipv4Addr::from(r as u32).to_ipv6_mapped()),
            _ => IpAddr::V6(Ipv6Addr::from(r)),
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Parsing agrees with the reference (host bits, IPv4-mapped networks), and membership of
    /// random addresses (IPv4, IPv6, IPv4-mapped) agrees with independent masks.
    #[test]
    fn cidr_membership_agrees_with_reference_masks(
        (text, want) in cidr_text(),
        picks in prop::collection::vec((any::<u128>(), any::<u8>()), 8),
    ) {
        let got = Cidr::parse(&text);
        prop_assert_eq!(got.ok(), want.map(RefNet::as_cidr), "{}", text);
        if let (Ok(cidr), Some(net)) = (got, want) {
            for ip in addresses(want, &picks) {
                prop_assert_eq!(cidr.contains(ip), net.contains(ip), "{} contains {}", text, ip);
            }
        }
    }

    /// A set contains an address exactly when one of its members does.
    #[test]
    fn cidr_set_is_the_union_of_its_members(
        nets in prop::collection::vec(cidr_text(), 0..6),
        picks in prop::collection::vec((any::<u128>(), any::<u8>()), 8),
    ) {
        let refs: Vec<RefNet> = nets.iter().filter_map(|n| n.1).collect();
        let set = CidrSet::new(refs.iter().map(|r| r.as_cidr()).collect());
        prop_assert_eq!(set.len(), refs.len());
        for ip in addresses(refs.first().copied(), &picks) {
            prop_assert_eq!(set.contains(ip), refs.iter().any(|r| r.contains(ip)), "{}", ip);
        }
    }

    /// Any text: never panics, and an accepted CIDR has no host bits and contains its network.
    #[test]
    fn cidr_parse_never_panics(text in prop_oneof!["\\PC{0,40}", "[0-9a-fA-F:./%\\[\\] ]{0,44}"]) {
        match Cidr::parse(&text) {
            Ok(Cidr::V4 { net, prefix }) => {
                prop_assert!(prefix <= 32 && net & !v4_mask(u32::from(prefix)) == 0);
                let cidr = Cidr::V4 { net, prefix };
                prop_assert!(cidr.contains(IpAddr::V4(net.into())));
            }
            Ok(Cidr::V6 { net, prefix }) => {
                prop_assert!(prefix <= 128 && net & !v6_mask(u32::from(prefix)) == 0);
                prop_assert!(net >> 32 != 0xffff || prefix < 96);
            }
            Err(m) => prop_assert!(!m.is_empty()),
        }
    }
}
