//! Who the client is (from Envoy's downstream address or X-Forwarded-For counted from the
//! right) and whether that address is inside the allowlist. Unknown clients are never allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An IPv4 or IPv6 network. IPv4-mapped IPv6 networks are stored as IPv4 so that
/// `::ffff:a.b.c.d` clients and IPv4 entries meet in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, prefix: u8 },
    V6 { net: u128, prefix: u8 },
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n`, or a single address. Host bits must be zero, so a typo such as
    /// `10.0.0.1/8` is refused instead of silently meaning `10.0.0.0/8`.
    pub fn parse(s: &str) -> Result<Cidr, &'static str> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
                    return Err("prefix length must be a number");
                }
                (
                    a,
                    Some(
                        p.parse::<u8>()
                            .map_err(|_| "prefix length must be a number")?,
                    ),
                )
            }
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| "not an IP address")?;
        let cidr = match ip {
            IpAddr::V4(v4) => {
                let prefix = prefix.unwrap_or(32);
                if prefix > 32 {
                    return Err("IPv4 prefix length must be at most 32");
                }
                Cidr::V4 {
                    net: u32::from(v4),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return Err("IPv6 prefix length must be at most 128");
                }
                match v6.to_ipv4_mapped() {
                    Some(v4) if prefix >= 96 => Cidr::V4 {
                        net: u32::from(v4),
                        prefix: prefix - 96,
                    },
                    _ => Cidr::V6 {
                        net: u128::from(v6),
                        prefix,
                    },
                }
            }
        };
        if cidr.host_bits_set() {
            return Err("address has bits set beyond the prefix length");
        }
        Ok(cidr)
    }

    fn host_bits_set(&self) -> bool {
        match *self {
            Cidr::V4 { net, prefix } => net & !mask32(prefix) != 0,
            Cidr::V6 { net, prefix } => net & !mask128(prefix) != 0,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, canonical(ip)) {
            (Cidr::V4 { net, prefix }, IpAddr::V4(a)) => u32::from(a) & mask32(prefix) == net,
            (Cidr::V6 { net, prefix }, IpAddr::V6(a)) => u128::from(a) & mask128(prefix) == net,
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// IPv4-mapped IPv6 becomes IPv4; everything else is unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The allowlist, compiled once: every entry becomes an inclusive address range, and ranges
/// that overlap or touch are merged, so a lookup is one binary search whatever the list's
/// length (Genesys's ranges for several regions plus a customer's own run to thousands).
#[derive(Clone, Debug, Default)]
pub struct CidrSet {
    /// Entries as configured, before merging (what the startup summary reports).
    configured: usize,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl CidrSet {
    pub fn new(cidrs: Vec<Cidr>) -> CidrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in &cidrs {
            match *c {
                Cidr::V4 { net, prefix } => v4.push((net, net | !mask32(prefix))),
                Cidr::V6 { net, prefix } => v6.push((net, net | !mask128(prefix))),
            }
        }
        CidrSet {
            configured: cidrs.len(),
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.configured == 0
    }

    /// Entries as configured.
    pub fn len(&self) -> usize {
        self.configured
    }

    /// Ranges left after overlapping, duplicate and adjacent entries were merged.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => in_ranges(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6, u128::from(a)),
        }
    }
}

/// Sorted, disjoint, non-adjacent inclusive ranges covering exactly the input's union.
fn merged<T: Copy + Ord + CheckedNext>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            // Overlapping or adjacent (`start` right after `last.1`): extend.
            Some(last) if last.1.checked_next().is_none_or(|after| start <= after) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn in_ranges<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before `x` is the only one that can hold it.
    let after = ranges.partition_point(|r| r.0 <= x);
    after
        .checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|r| x <= r.1)
}

trait CheckedNext: Sized {
    fn checked_next(self) -> Option<Self>;
}

impl CheckedNext for u32 {
    fn checked_next(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl CheckedNext for u128 {
    fn checked_next(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// Where the client address comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIpRule {
    /// Envoy's `source.address`: the TCP peer when the connection manager has
    /// `use_remote_address: true`.
    Downstream,
    /// The N-th X-Forwarded-For entry from the right (N >= 1).
    ForwardedFor { trusted_hops: u8 },
}

/// Why a client could not be identified; logged, never shown to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    NoDownstreamAddress,
    /// `source.address` had port 0: Envoy took it from X-Forwarded-For because the connection
    /// manager runs with `use_remote_address: false`, so any caller could have chosen it.
    DownstreamFromHeader,
    TooFewForwardedEntries,
    UnparsableForwardedEntry,
}

impl Unknown {
    pub fn as_str(self) -> &'static str {
        match self {
            Unknown::NoDownstreamAddress => "no downstream address",
            Unknown::DownstreamFromHeader => {
                "downstream address came from X-Forwarded-For (set use_remote_address: true)"
            }
            Unknown::TooFewForwardedEntries => "too few X-Forwarded-For entries",
            Unknown::UnparsableForwardedEntry => "unparsable X-Forwarded-For entry",
        }
    }
}

impl ClientIpRule {
    /// `xff` holds every X-Forwarded-For value in arrival order; `downstream` is Envoy's
    /// `source.address` (`ip:port` or `[v6]:port`).
    pub fn client(&self, xff: &[&str], downstream: Option<&str>) -> Result<IpAddr, Unknown> {
        match *self {
            ClientIpRule::Downstream => {
                let addr: SocketAddr = downstream
                    .and_then(|d| d.parse().ok())
                    .ok_or(Unknown::NoDownstreamAddress)?;
                if addr.port() == 0 {
                    return Err(Unknown::DownstreamFromHeader);
                }
                Ok(canonical(addr.ip()))
            }
            ClientIpRule::ForwardedFor { trusted_hops } => {
                let entry = nth_from_right(xff, usize::from(trusted_hops))
                    .ok_or(Unknown::TooFewForwardedEntries)?;
                parse_forwarded_entry(entry)
                    .map(canonical)
                    .ok_or(Unknown::UnparsableForwardedEntry)
            }
        }
    }
}

/// The n-th comma-separated entry counted from the right across all values (n >= 1).
/// Empty entries count as entries, so padding with commas cannot shift trusted positions.
fn nth_from_right<'a>(values: &[&'a str], n: usize) -> Option<&'a str> {
    let mut left = n;
    for value in values.iter().rev() {
        for entry in value.rsplit(',') {
            left = left.checked_sub(1)?;
            if left == 0 {
                return Some(entry);
            }
        }
    }
    None
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
/// Zone ids, leading zeros and anything else are refused.
pub fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim_matches(|c| c == ' ' || c == '\t');
    if let Some(rest) = e.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(v6) = e.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    let (host, port) = match e.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (e, None),
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(list: &[&str]) -> CidrSet {
        CidrSet::new(list.iter().map(|c| Cidr::parse(c).unwrap()).collect())
    }

    #[test]
    fn overlapping_duplicate_and_adjacent_entries_merge() {
        let s = set(&[
            "10.0.0.0/8",
            "10.1.0.0/16",    // inside the /8
            "10.0.0.0/8",     // duplicate
            "11.0.0.0/8",     // adjacent: 10/8 and 11/8 become one range
            "192.168.1.0/24", // apart
            "2001:db8::/32",
            "2001:db8:1::/48", // inside
        ]);
        assert_eq!(s.len(), 7, "the summary counts entries as configured");
        assert_eq!(s.ranges(), 3);
        for (a, want) in [
            ("10.0.0.0", true),
            ("11.255.255.255", true),
            ("12.0.0.0", false),
            ("9.255.255.255", false),
            ("192.168.1.255", true),
            ("192.168.2.0", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("::ffff:11.1.2.3", true),
        ] {
            assert_eq!(s.contains(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn ranges_at_the_ends_of_the_address_space_do_not_wrap() {
        let s = set(&[
            "255.255.255.255/32",
            "0.0.0.0/32",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
            "::/128",
        ]);
        assert_eq!(s.ranges(), 4);
        assert!(s.contains(ip("255.255.255.255")) && s.contains(ip("0.0.0.0")));
        assert!(!s.contains(ip("255.255.255.254")) && !s.contains(ip("0.0.0.1")));
        assert!(s.contains(ip("::")) && !s.contains(ip("::2")));
        let all = set(&["0.0.0.0/0", "255.0.0.0/8", "::/0"]);
        assert_eq!(all.ranges(), 2);
        assert!(all.contains(ip("203.0.113.9")) && all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn an_empty_set_holds_nothing() {
        let s = set(&[]);
        assert!(s.is_empty() && !s.contains(ip("10.0.0.1")) && !s.contains(ip("::1")));
    }

    #[test]
    fn cidr_membership_table() {
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("34.200.73.250/32", "34.200.73.250", true),
            ("34.200.73.250/32", "34.200.73.251", false),
            ("34.200.73.250", "34.200.73.250", true),
            ("34.200.73.250/32", "::ffff:34.200.73.250", true),
            ("::ffff:34.200.73.0/120", "34.200.73.7", true),
            ("2600:1f18:4a3:6900::/56", "2600:1f18:4a3:69ff::1", true),
            ("2600:1f18:4a3:6900::/56", "2600:1f18:4a3:6a00::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "1.2.3.4", false),
            ("::/0", "::ffff:1.2.3.4", false),
            ("::1/128", "::1", true),
            ("::1", "::2", false),
            ("127.0.0.0/8", "127.0.0.5", true),
        ];
        for (c, a, want) in cases {
            let cidr = Cidr::parse(c).unwrap();
            assert_eq!(cidr.contains(ip(a)), want, "{c} contains {a}");
        }
    }

    #[test]
    fn malformed_cidrs_are_refused() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "010.0.0.0/8",
            "garbage",
            "10.0.0.0/-1",
            "fe80::1%eth0",
            "1.2.3.4:80",
            "[::1]",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_entries_parse_in_every_legal_shape_only() {
        let ok = [
            ("1.2.3.4", "1.2.3.4"),
            (" 1.2.3.4\t", "1.2.3.4"),
            ("1.2.3.4:8080", "1.2.3.4"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ];
        for (e, want) in ok {
            assert_eq!(parse_forwarded_entry(e), Some(ip(want)), "{e:?}");
        }
        for bad in [
            "",
            " ",
            "unknown",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:0x1",
            "1.2.3.4:99999",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "fe80::1%eth0",
            "[fe80::1%25eth0]",
            "1.2.3.4 5.6.7.8",
            "\"1.2.3.4\"",
            "1.2.3.4\0",
        ] {
            assert_eq!(parse_forwarded_entry(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_counts_from_the_right_across_joined_headers() {
        let r1 = ClientIpRule::ForwardedFor { trusted_hops: 1 };
        let r2 = ClientIpRule::ForwardedFor { trusted_hops: 2 };
        let r3 = ClientIpRule::ForwardedFor { trusted_hops: 3 };
        let xff = ["9.9.9.9, 1.1.1.1", "2.2.2.2"];
        assert_eq!(r1.client(&xff, None), Ok(ip("2.2.2.2")));
        assert_eq!(r2.client(&xff, None), Ok(ip("1.1.1.1")));
        assert_eq!(r3.client(&xff, None), Ok(ip("9.9.9.9")));
        let r4 = ClientIpRule::ForwardedFor { trusted_hops: 4 };
        assert_eq!(r4.client(&xff, None), Err(Unknown::TooFewForwardedEntries));
        assert_eq!(r1.client(&[], None), Err(Unknown::TooFewForwardedEntries));
        // Empty entries hold their place and are never a client.
        assert_eq!(
            r2.client(&["1.1.1.1,,2.2.2.2"], None),
            Err(Unknown::UnparsableForwardedEntry)
        );
        assert_eq!(
            r1.client(&["1.1.1.1,"], None),
            Err(Unknown::UnparsableForwardedEntry)
        );
        assert_eq!(r1.client(&["::ffff:1.2.3.4"], None), Ok(ip("1.2.3.4")));
    }

    #[test]
    fn downstream_with_port_zero_is_not_trusted() {
        let r = ClientIpRule::Downstream;
        assert_eq!(r.client(&[], Some("127.0.0.5:38452")), Ok(ip("127.0.0.5")));
        assert_eq!(r.client(&[], Some("[::1]:5000")), Ok(ip("::1")));
        assert_eq!(
            r.client(&[], Some("[::ffff:1.2.3.4]:5000")),
            Ok(ip("1.2.3.4"))
        );
        assert_eq!(
            r.client(&["1.1.1.1"], Some("1.1.1.1:0")),
            Err(Unknown::DownstreamFromHeader)
        );
        assert_eq!(r.client(&[], None), Err(Unknown::NoDownstreamAddress));
        assert_eq!(
            r.client(&[], Some("garbage")),
            Err(Unknown::NoDownstreamAddress)
        );
    }

    #[test]
    fn cidr_set_matches_any_member() {
        let set = CidrSet::new(vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap(),
        ]);
        assert!(set.contains(ip("10.1.1.1")));
        assert!(set.contains(ip("::ffff:10.1.1.1")));
        assert!(set.contains(ip("::1")));
        assert!(!set.contains(ip("127.0.0.1")));
        assert!(!CidrSet::default().contains(ip("10.1.1.1")));
    }
}
