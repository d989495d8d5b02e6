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

use crate::hash::Hash;
use crate::transport::host_of;

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
