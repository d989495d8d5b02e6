//! Which content a download accepts. A download is for one content, fixed
//! before the first byte is fetched: the hash the request names (`--hash`,
//! or the index's answer), or else the content offered by sources on the
//! most distinct hosts. Every other source is dropped and named.
//!
//! Hosts, not sources, are counted: a hostile machine may run any number of
//! peers, on as many ports as it likes, but it is one vote. An IPv6 host is
//! its /64 (one customer's network), since an attacker with one prefix has
//! more addresses than anyone could list.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::hash::Hash;

/// The host of a source at `addr` (`host:port`), for counting votes: the IP
/// address (IPv4) or its /64 (IPv6), else the host name as written.
pub(crate) fn host_of(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(a) => match a.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = ip.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        },
        Err(_) => addr.rsplit_once(':').map_or(addr, |(host, _)| host).trim_matches(['[', ']']).to_ascii_lowercase(),
    }
}

/// The content a download by name accepts, from the sources' offers (in
/// the order the sources were given; `None` for a source that offered
/// nothing): the one offered from the most distinct hosts; among equals,
/// the one the first-named source offered.
pub(crate) fn majority<'a>(offers: impl IntoIterator<Item = Option<(&'a str, Hash)>>) -> Option<Hash> {
    let offers: Vec<(String, Hash)> = offers.into_iter().flatten().map(|(addr, hash)| (host_of(addr), hash)).collect();
    let mut hosts: HashMap<Hash, Vec<&str>> = HashMap::new();
    for (host, hash) in &offers {
        let seen = hosts.entry(*hash).or_default();
        if !seen.contains(&host.as_str()) {
            seen.push(host);
        }
    }
    let best = hosts.values().map(Vec::len).max()?;
    offers.iter().map(|(_, hash)| *hash).find(|h| hosts[h].len() == best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_addresses_without_ports_and_ipv6_networks() {
        for (addr, host) in [
            ("10.0.0.1:5000", "10.0.0.1"),
            ("10.0.0.1:5001", "10.0.0.1"),
            ("[::ffff:10.0.0.1]:5000", "10.0.0.1"),
            ("[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"),
            ("[2001:db8:1:2:ffff::1]:6000", "2001:db8:1:2::/64"),
            ("Build-Box.lan:5000", "build-box.lan"),
            ("peer7:1", "peer7"),
        ] {
            assert_eq!(host_of(addr), host, "{addr}");
        }
    }

    #[test]
    fn the_content_of_the_most_hosts_wins_and_the_first_named_breaks_ties() {
        let (a, b) = (Hash::of(b"real"), Hash::of(b"fake"));
        type Offers<'a> = &'a [Option<(&'a str, Hash)>];
        let cases: &[(Offers<'_>, Option<Hash>, &str)] = &[
            (&[], None, "no offers"),
            (&[None, None], None, "nobody had it"),
            (&[Some(("10.0.0.1:1", a))], Some(a), "one source"),
            // Three liars on one machine are one vote: a tie, and the
            // first-named source's content wins it.
            (
                &[Some(("10.0.0.1:1", a)), Some(("10.0.0.9:1", b)), Some(("10.0.0.9:2", b)), Some(("10.0.0.9:3", b))],
                Some(a),
                "many ports of one host",
            ),
            (
                &[Some(("10.0.0.9:1", b)), Some(("10.0.0.1:1", a)), Some(("10.0.0.2:1", a))],
                Some(a),
                "two hosts beat one, whoever is named first",
            ),
            (&[None, Some(("10.0.0.9:1", b)), Some(("10.0.0.1:1", a))], Some(b), "a tie: the first offer"),
            (
                &[Some(("[2001:db8::1]:1", b)), Some(("[2001:db8::2]:1", b)), Some(("10.0.0.1:1", a))],
                Some(b),
                "one IPv6 /64 is one host, so this is a tie",
            ),
        ];
        for (offers, want, why) in cases {
            assert_eq!(majority(offers.iter().copied()), *want, "{why}");
        }
    }
}
