use std::collections::HashSet;

use super::*;

fn file(name: &str, content: &[u8]) -> FileInfo {
    FileInfo { name: FileName::new(name).unwrap(), size: content.len() as u64, hash: Hash::of(content) }
}

fn join(s: &mut IndexState, addr: &str, session: u64) {
    s.join(session, format!("p{session}"), addr.into(), None).unwrap();
}

fn addrs(found: &Sources) -> Vec<&str> {
    found.peers.iter().map(|p| p.addr.as_str()).collect()
}

#[test]
fn peers_publish_change_and_leave() {
    let mut s = IndexState::new(Limits::default());
    join(&mut s, "10.0.0.1:5000", 1);
    join(&mut s, "10.0.0.2:5000", 2);
    assert_eq!(s.publish(1, vec![file("a", b"A"), file("b", b"B")], vec![], true), Ok(2));
    assert_eq!(s.publish(2, vec![file("a", b"A")], vec![], true), Ok(1));
    let files = s.files();
    assert_eq!(files.len(), 2);
    assert_eq!((files[0].info.name.as_str(), files[0].sources), ("a", 2));
    // A change and a removal.
    let n = s.publish(1, vec![file("a", b"A2")], vec![FileName::new("b").unwrap()], false);
    assert_eq!(n, Ok(1));
    let located = s.locate(&FileRef::Name("a".into()), Time::ZERO, "me", false);
    assert_eq!(located.len(), 2, "two contents under one name: {located:?}");
    assert!(s.locate(&FileRef::Hash(Hash::of(b"B")), Time::ZERO, "me", false).is_empty());
    // Leaving forgets everything the peer served.
    s.leave(1);
    assert_eq!(s.peer_count(), 1);
    assert!(s.locate(&FileRef::Hash(Hash::of(b"A2")), Time::ZERO, "me", false).is_empty());
    assert_eq!(s.files().len(), 1);
    assert_eq!((s.files_total, s.bytes_total), (1, file_bytes(&FileName::new("a").unwrap())));
}

/// Over TCP a client could join with a victim's address: its entry is its
/// own, and leaves the victim's as it was. (Before, it replaced the
/// victim's entry, and when it left, the victim was gone.)
#[test]
fn a_session_never_replaces_another() {
    let mut s = IndexState::new(Limits::default());
    join(&mut s, "10.0.0.1:5000", 1);
    s.publish(1, vec![file("a", b"A")], vec![], true).unwrap();
    // The impostor, from the same host, claims the victim's port.
    join(&mut s, "10.0.0.1:5000", 2);
    s.publish(2, vec![file("x", b"X")], vec![], true).unwrap();
    assert_eq!(s.peer_count(), 2);
    s.leave(2);
    assert!(s.is_joined(1));
    assert_eq!(addrs(&s.locate(&FileRef::Name("a".into()), Time::ZERO, "me", false)[0]), ["10.0.0.1:5000"]);
    assert_eq!(s.publish(2, vec![file("y", b"Y")], vec![], false), Err(IndexError::NotJoined));
    // Over TLS, the same certificate at the same address is the same peer
    // come back: it takes its old entry's place. Another certificate does not.
    let (fp, other) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
    s.join(10, "p".into(), "10.0.0.3:5000".into(), Some(fp)).unwrap();
    s.join(11, "q".into(), "10.0.0.3:5000".into(), Some(other)).unwrap();
    s.join(12, "p".into(), "10.0.0.3:5000".into(), Some(fp)).unwrap();
    assert!(!s.is_joined(10));
    assert!(s.is_joined(11) && s.is_joined(12));
}

#[test]
fn limits_hold() {
    let limits = Limits { max_peers: 2, max_files_per_peer: 3, max_contents: 2, ..Limits::default() };
    let mut s = IndexState::new(limits);
    join(&mut s, "a:1", 1);
    join(&mut s, "b:1", 2);
    assert_eq!(s.join(3, "c".into(), "c:1".into(), None), Err(IndexError::Full(2)));
    let many: Vec<FileInfo> = (0..5).map(|i| file(&format!("f{i}"), &[i])).collect();
    assert_eq!(s.publish(1, many, vec![], true), Err(IndexError::TooManyFiles(3)));
    assert_eq!(s.files().len(), 3, "what fits is listed");
    let huge = FileInfo { size: MAX_FILE_SIZE + 1, ..file("huge", b"h") };
    assert!(matches!(s.publish(2, vec![huge], vec![], false), Err(IndexError::TooLarge(_))));
    // Three contents under one name: the two most served are named.
    s.publish(2, vec![file("f0", b"other")], vec![], false).unwrap();
    let named = s.locate(&FileRef::Name("f0".into()), Time::ZERO, "me", false);
    assert_eq!(named.len(), 2);
    assert!(s.locate(&FileRef::Name("../etc".into()), Time::ZERO, "me", false).is_empty());
}

#[test]
fn a_content_reported_bad_is_left_out_for_the_reporter_and_then_for_all() {
    let mut s = IndexState::new(Limits { suspect_for: Duration::from_secs(60), ..Limits::default() });
    join(&mut s, "a:1", 1);
    join(&mut s, "b:1", 2);
    for session in [1, 2] {
        s.publish(session, vec![file("x", b"X")], vec![], true).unwrap();
    }
    let t = |secs| Time::ZERO + Duration::from_secs(secs);
    let x = FileRef::Hash(Hash::of(b"X"));
    let at = |s: &IndexState, asker: &str, secs| -> Vec<String> {
        s.locate(&x, t(secs), asker, false)[0].peers.iter().map(|p| p.addr.clone()).collect()
    };
    s.suspect("a:1", Hash::of(b"X"), "r1", t(10));
    assert_eq!(at(&s, "r1", 20), ["b:1"], "left out for the reporter");
    assert_eq!(at(&s, "someone", 20), ["a:1", "b:1"], "one report hides nobody from the others");
    s.suspect("a:1", Hash::of(b"X"), "r2", t(11));
    s.suspect("a:1", Hash::of(b"X"), "r2", t(12));
    assert_eq!(at(&s, "someone", 20), ["a:1", "b:1"], "a reporter counts once");
    s.suspect("a:1", Hash::of(b"X"), "r3", t(13));
    assert_eq!(at(&s, "someone", 20), ["b:1"], "three reporters: left out for all");
    assert_eq!(at(&s, "someone", 75), ["a:1", "b:1"], "forgiven after a while");
    // A report about a peer or content the index does not list is dropped.
    s.suspect("nobody:1", Hash::of(b"X"), "r1", t(80));
    s.suspect("a:1", Hash::of(b"nothing"), "r1", t(80));
    assert_eq!(s.reports, 0, "the old reports expired and no new one was kept");
}

#[test]
fn hosts_and_the_whole_index_are_bounded_in_files_and_bytes() {
    let limits = Limits { max_peers_per_host: 2, max_files: 3, ..Limits::default() };
    let mut s = IndexState::new(limits);
    join(&mut s, "10.0.0.1:1", 1);
    join(&mut s, "10.0.0.1:2", 2);
    let third = s.join(3, "x".into(), "10.0.0.1:3".into(), None);
    assert_eq!(third, Err(IndexError::HostFull(2)));
    join(&mut s, "10.0.0.2:1", 4);
    let two: Vec<FileInfo> = (0..2).map(|i| file(&format!("f{i}"), &[i])).collect();
    s.publish(1, two.clone(), vec![], true).unwrap();
    assert_eq!(s.publish(4, two, vec![], true), Err(IndexError::FilesFull(3)));
    assert_eq!(s.files_total, 3);
    // Leaving gives the room back.
    s.leave(1);
    assert_eq!(s.files_total, 1);
    join(&mut s, "10.0.0.1:3", 5);

    // Bytes: long names from many sessions of one host fill that host's
    // share, not the index; another host still publishes.
    let name = |i: usize| format!("{i:06}{}", "n".repeat(249));
    let per_file = file_bytes(&FileName::new(&name(0)).unwrap());
    let limits = Limits { max_bytes_per_host: 10 * per_file, max_bytes: 15 * per_file, ..Limits::default() };
    let mut s = IndexState::new(limits);
    for session in 1..=4 {
        join(&mut s, &format!("10.9.9.9:{session}"), session);
        let files = (0..4).map(|i| file(&name(session as usize * 10 + i), &[i as u8])).collect();
        let r = s.publish(session, files, vec![], true);
        assert_eq!(r.is_err(), session == 3 || session == 4, "session {session}: {r:?}");
    }
    assert_eq!(s.files_total, 10, "the host's share");
    join(&mut s, "10.0.0.7:1", 9);
    let files: Vec<_> = (0..8).map(|i| file(&name(900 + i), &[i as u8])).collect();
    assert_eq!(s.publish(9, files, vec![], true), Err(IndexError::BytesFull(15 * per_file)));
    assert_eq!(s.files_total, 15, "the whole index's");
    assert!(s.bytes_total <= 15 * per_file);
}

#[test]
fn the_listing_stays_within_what_a_client_accepts() {
    let name = |i: usize| format!("{i:06}{}", "n".repeat(249));
    let per = listed_bytes(&FileName::new(&name(0)).unwrap());
    let mut s = IndexState::new(Limits { max_listing_bytes: 5 * per, ..Limits::default() });
    join(&mut s, "10.0.0.1:1", 1);
    join(&mut s, "10.0.0.2:1", 2);
    let files: Vec<_> = (0..8).map(|i| file(&name(i), &[i as u8])).collect();
    assert!(s.publish(1, files.clone(), vec![], true).is_err());
    assert_eq!(s.file_count(), 5);
    // The same files from another peer take no more room in the listing.
    assert!(s.publish(2, files[..5].to_vec(), vec![], true).is_ok());
    assert_eq!(s.file_count(), 5);
}

/// 16 made-up contents for one name, each from two fake peers of one
/// host, do not push the real content out of the answer: a host counts
/// for its first two contents of a name only, and among contents served
/// from as many hosts the one there first ranks first. (Before, the 16
/// made-up contents, served by more peer entries, filled the 16 places.)
#[test]
fn a_name_squatted_from_one_host_still_names_the_real_content_first() {
    let mut s = IndexState::new(Limits::default());
    join(&mut s, "10.0.0.1:5000", 1);
    s.publish(1, vec![file("game.zip", b"the real one")], vec![], true).unwrap();
    for fake in 0..32u64 {
        join(&mut s, &format!("10.6.6.6:{}", 6000 + fake), 100 + fake);
        let content = format!("fake {}", fake / 2);
        s.publish(100 + fake, vec![file("game.zip", content.as_bytes())], vec![], true).unwrap();
    }
    let found = s.locate(&FileRef::Name("game.zip".into()), Time::ZERO, "me", false);
    assert_eq!(found[0].info.hash, Hash::of(b"the real one"), "{found:?}");
    assert_eq!(found.len(), 3, "the real one and the squatter's first two");
    // A content served from more hosts ranks above it.
    for h in 0..2u64 {
        join(&mut s, &format!("10.1.{h}.1:5000"), 200 + h);
        s.publish(200 + h, vec![file("game.zip", b"v2")], vec![], true).unwrap();
    }
    let found = s.locate(&FileRef::Name("game.zip".into()), Time::ZERO, "me", false);
    assert_eq!(found[0].info.hash, Hash::of(b"v2"));
    assert_eq!(found[1].info.hash, Hash::of(b"the real one"));
}

#[test]
fn sources_take_hosts_in_turn() {
    let mut s = IndexState::new(Limits::default());
    for i in 0..300u64 {
        join(&mut s, &format!("10.6.6.6:{}", 1000 + i), i);
        s.publish(i, vec![file("x", b"X")], vec![], true).unwrap();
    }
    join(&mut s, "10.0.0.1:5000", 999);
    s.publish(999, vec![file("x", b"X")], vec![], true).unwrap();
    let found = s.locate(&FileRef::Hash(Hash::of(b"X")), Time::ZERO, "me", false);
    assert_eq!(found[0].peers.len(), MAX_SOURCES);
    assert!(found[0].peers.iter().any(|p| p.addr == "10.0.0.1:5000"), "the other host is named");
}

/// A downloader that serves what it has is named, after the whole sources,
/// to askers that swarm only, and never listed as a file; over TLS a
/// `serve` and a `download` of one identity are two entries.
#[test]
fn peers_downloading_a_content_are_partial_sources() {
    let mut s = IndexState::new(Limits::default());
    let fp = Fingerprint([7; 32]);
    s.join(1, "seed".into(), "10.0.0.1:5000".into(), None).unwrap();
    s.publish(1, vec![file("a", b"A")], vec![], true).unwrap();
    // The same identity serves a folder and downloads: two ports.
    s.join(2, "p".into(), "10.0.0.2:5000".into(), Some(fp)).unwrap();
    s.join(3, "p".into(), "10.0.0.2:41234".into(), Some(fp)).unwrap();
    assert_eq!(s.fetch(3, file("a", b"A")), Ok(1));
    assert_eq!(s.fetch(4, file("a", b"A")), Err(IndexError::NotJoined));
    assert_eq!(s.peer_count(), 3);
    let by_name = FileRef::Name("a".into());
    assert_eq!(addrs(&s.locate(&by_name, Time::ZERO, "me", true)[0]), ["10.0.0.1:5000", "10.0.0.2:41234"]);
    assert_eq!(addrs(&s.locate(&by_name, Time::ZERO, "me", false)[0]), ["10.0.0.1:5000"]);
    assert_eq!(s.files().len(), 1);
    assert_eq!(s.files()[0].sources, 1);
    // Only downloaders have it now: found by hash and by name, by askers
    // that swarm.
    s.leave(1);
    let by_hash = FileRef::Hash(Hash::of(b"A"));
    assert_eq!(addrs(&s.locate(&by_hash, Time::ZERO, "me", true)[0]), ["10.0.0.2:41234"]);
    assert_eq!(addrs(&s.locate(&by_name, Time::ZERO, "me", true)[0]), ["10.0.0.2:41234"]);
    assert!(s.locate(&by_hash, Time::ZERO, "me", false).is_empty());
    assert!(s.files().is_empty());
    // A partial source can be reported bad, and is left out for the reporter.
    s.suspect("10.0.0.2:41234", Hash::of(b"A"), "me", Time::ZERO);
    assert!(s.locate(&by_hash, Time::ZERO, "me", true).is_empty());
    assert_eq!(s.locate(&by_hash, Time::ZERO, "other", true).len(), 1);
    // Bounded per session; the session's end forgets it.
    for i in 0..MAX_FETCHING as u8 {
        let r = s.fetch(2, file("b", &[i]));
        assert_eq!(r, Ok(usize::from(i) + 1));
    }
    assert_eq!(s.fetch(2, file("b", b"more")), Err(IndexError::TooManyFetching(MAX_FETCHING)));
    s.leave(3);
    assert!(s.locate(&by_hash, Time::ZERO, "other", true).is_empty());
    s.leave(2);
    assert!(s.fetching.is_empty() && s.fetching_by_name.is_empty());
}

/// A crowd of downloaders larger than one answer: each asker (and each
/// moment) is named a different share of them, so that newcomers spread
/// over the whole crowd instead of all going to the same few.
#[test]
fn a_crowd_larger_than_an_answer_is_spread_over_the_askers() {
    let mut s = IndexState::new(Limits::default());
    s.join(0, "seed".into(), "10.0.0.1:5000".into(), None).unwrap();
    s.publish(0, vec![file("a", b"A")], vec![], true).unwrap();
    let n = 3 * MAX_SOURCES as u64;
    for i in 1..=n {
        join(&mut s, &format!("10.1.{}.{}:5000", i / 256, i % 256), i);
        assert_eq!(s.fetch(i, file("a", b"A")), Ok(1));
    }
    let by_hash = FileRef::Hash(Hash::of(b"A"));
    let mut named: HashSet<String> = HashSet::new();
    let mut answers = Vec::new();
    for asker in 0..20 {
        let found = s.locate(&by_hash, Time::ZERO, &format!("10.2.0.{asker}"), true);
        let peers = addrs(&found[0]).into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(peers.len(), MAX_SOURCES);
        assert_eq!(peers[0], "10.0.0.1:5000", "the whole source first");
        named.extend(peers.iter().cloned());
        answers.push(peers);
    }
    assert!(answers.windows(2).any(|w| w[0] != w[1]), "askers are named different peers");
    assert!(named.len() as u64 > n * 9 / 10, "nearly every downloader is named to someone: {}", named.len());
    // The same asker at the same moment gets the same answer.
    let again = s.locate(&by_hash, Time::ZERO, "10.2.0.0", true);
    assert_eq!(addrs(&again[0]), answers[0].iter().map(String::as_str).collect::<Vec<_>>());
}
