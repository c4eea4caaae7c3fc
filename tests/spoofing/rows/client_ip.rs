//! Client address: the downstream peer, and X-Forwarded-For with one and two trusted hops.

use crate::config::*;
use crate::model::get;
use crate::model::Want::*;
use crate::model::*;

#[rustfmt::skip]
pub(super) fn push(r: &mut Vec<Row>) {
    use Group::*;
    let bots = "/botconnector/bots";

    // --- client address: downstream ----------------------------------------------------------
    let forged = [
        ("allowed address", "127.0.0.5"),
        ("allowed address with a port", "127.0.0.5:443"),
        ("allowed address bracketed, v4-mapped", "[::ffff:127.0.0.5]:443"),
        ("allowed address with a zone id", "127.0.0.5%lo"),
        ("garbage, then the allowed address", "garbage, 127.0.0.5"),
        ("empty entries around the allowed address", ",,127.0.0.5,,"),
    ];
    for (what, xff) in forged {
        r.push(row(Downstream, &format!("outside peer, XFF: {what} `{xff}`"),
            get(bots).key().from(OUTSIDE).xff(xff), Deny(403)));
    }
    r.push(row(Downstream, "outside peer, XFF: 300 entries of the allowed address",
        get(bots).key().from(OUTSIDE).xff(&vec!["127.0.0.5"; 300].join(", ")), Deny(403)));
    r.push(row(Downstream, "outside peer, two XFF headers naming the allowed address",
        get(bots).key().from(OUTSIDE).xff("127.0.0.5").xff("127.0.0.5"), Deny(403)));
    for h in ["x-real-ip", "true-client-ip", "x-client-ip", "x-envoy-external-address"] {
        r.push(row(Downstream, &format!("outside peer, `{h}: 127.0.0.5`"),
            get(bots).key().from(OUTSIDE).header(h, "127.0.0.5"), Deny(403)));
    }
    r.push(row(Downstream, "outside peer, `forwarded: for=127.0.0.5`",
        get(bots).key().from(OUTSIDE).header("forwarded", "for=127.0.0.5"), Deny(403)));
    r.push(row(Downstream, "outside peer, no key", get(bots).from(OUTSIDE), Deny(403))
        .note("the address is checked first: a refused address learns nothing about keys"));
    r.push(row(Downstream, "allowed peer, XFF of garbage, ports, zone ids, empty entries",
        get(bots).key().xff("garbage, [::1]:x, fe80::1%eth0, , 10.0.0.1:99999,,"), Pass)
        .up(Up::XffLast("127.0.0.5")));
    r.push(row(Downstream, "allowed peer, XFF of 300 entries", get(bots).key().xff(&xff_list(300, "203.0.113.7")), Pass)
        .up(Up::XffLast("127.0.0.5")));

    // --- client address: x-forwarded-for, trusted_hops 1, use_remote_address false ----------
    let xff1 = |name: &str, xff: &[&str], want: Want| {
        let mut q = get(bots).key();
        for x in xff { q = q.xff(x); }
        row(Xff1, name, q, want)
    };
    r.push(xff1("front end wrote an allowed client", &["203.0.113.7"], Pass));
    r.push(xff1("allowed address prepended by the caller", &["203.0.113.7, 198.51.100.9"], Deny(403)));
    r.push(xff1("allowed client with a port", &["198.51.100.9, 203.0.113.7:8443"], Pass));
    r.push(xff1("allowed v6 client, bracketed with a port", &["[2001:db8::7]:443"], Pass));
    r.push(xff1("allowed v6 client, bracketed", &["[2001:db8::7]"], Pass));
    r.push(xff1("v4-mapped v6 of an allowed client", &["::ffff:203.0.113.7"], Pass));
    r.push(xff1("zone id on an allowed v6 client", &["2001:db8::7%eth0"], Deny(403)));
    r.push(xff1("zone id, bracketed with a port", &["[2001:db8::7%25eth0]:443"], Deny(403)));
    r.push(xff1("zone id on an allowed v4 client", &["203.0.113.7%eth0"], Deny(403)));
    r.push(xff1("brackets around a v4 address", &["[203.0.113.7]"], Deny(403)));
    r.push(xff1("unclosed bracket", &["[2001:db8::7"], Deny(403)));
    r.push(xff1("port out of range", &["203.0.113.7:65536"], Deny(403)));
    r.push(xff1("empty port", &["203.0.113.7:"], Deny(403)));
    r.push(xff1("garbage", &["unknown"], Deny(403)));
    r.push(xff1("two addresses in one entry", &["203.0.113.7 203.0.113.8"], Deny(403)));
    r.push(xff1("quoted address", &["\"203.0.113.7\""], Deny(403)));
    r.push(xff1("hex octet", &["0xcb.0.113.7"], Deny(403)));
    r.push(xff1("leading zeros", &["203.0.113.007"], Deny(403)));
    r.push(xff1("integer form", &["3405803783"], Deny(403)));
    r.push(xff1("trailing dot", &["203.0.113.7."], Deny(403)));
    r.push(xff1("empty last entry", &["203.0.113.7,"], Deny(403)));
    r.push(xff1("only commas", &[",,,,"], Deny(403)));
    r.push(xff1("300 entries ending in an allowed client", &[&xff_list(300, "203.0.113.7")], Pass));
    r.push(xff1("300 allowed entries ending in garbage",
        &[&format!("{}, garbage", vec!["203.0.113.7"; 300].join(", "))], Deny(403)));
    r.push(xff1("two XFF headers, the allowed one last", &["198.51.100.9", "203.0.113.7"], Pass));
    r.push(xff1("two XFF headers, the allowed one first", &["203.0.113.7", "198.51.100.9"], Deny(403)));
    r.push(xff1("no XFF", &[], Deny(403)));
    r.push(row(Xff1, "`forwarded: for=` and `x-real-ip` name an allowed client",
        get(bots).key().xff("198.51.100.9").header("forwarded", "for=203.0.113.7").header("x-real-ip", "203.0.113.7"),
        Deny(403)));

    // --- client address: x-forwarded-for, trusted_hops 2, use_remote_address true -----------
    let xff2 = |name: &str, xff: &[&str], want: Want| {
        let mut q = get(bots).key();
        for x in xff { q = q.xff(x); }
        let mut rw = row(Xff2, name, q, want);
        if want == Pass { rw = rw.up(Up::XffLast("127.0.0.5")); }
        rw
    };
    r.push(xff2("front end wrote an allowed client", &["203.0.113.7"], Pass));
    r.push(xff2("allowed address prepended by the caller", &["203.0.113.7, 198.51.100.9"], Deny(403)));
    r.push(xff2("caller appends a fake peer entry", &["203.0.113.7, 127.0.0.5"], Deny(403)));
    r.push(xff2("empty entry shifts the list", &["203.0.113.7,"], Deny(403)));
    r.push(xff2("no XFF (only Envoy's entry)", &[], Deny(403)));
    r.push(xff2("allowed client with a port", &["203.0.113.7:8443"], Pass));
    r.push(xff2("bracketed v4-mapped client with a port", &["[::ffff:203.0.113.7]:443"], Pass));
    r.push(xff2("zone id", &["2001:db8::7%eth0"], Deny(403)));
    r.push(xff2("garbage", &["not-an-ip"], Deny(403)));
    r.push(xff2("300 entries ending in an allowed client", &[&xff_list(300, "203.0.113.7")], Pass));
    r.push(xff2("300 allowed entries ending in garbage",
        &[&format!("{}, garbage", vec!["203.0.113.7"; 300].join(", "))], Deny(403)));
    r.push(xff2("two XFF headers, the allowed one last", &["198.51.100.9", "203.0.113.7"], Pass));
    r.push(xff2("two XFF headers, the allowed one first", &["203.0.113.7", "198.51.100.9"], Deny(403)));
}
