//! What a peer or someone else on the same machine can do to the files
//! here: links planted in p2p's state, offers bigger than the disk, names
//! that collide elsewhere or look like paths, text that drives terminals.

use p2p_core::hash::Hash;
use p2p_core::protocol::{ErrorCode, Message};

use crate::common::fake::{FakePeer, Fault};
use crate::common::raw::Raw;
use crate::common::{Mode, Net, content, partials};

/// Someone who can write the download folder plants links where p2p keeps
/// its resume state, pointing at a file elsewhere. The download refuses
/// them, names them, and never writes through them. (Before the fix the
/// resume file had a predictable name and was opened following links: the
/// download overwrote the file outside the folder.)
fn links_planted_in_the_resume_state_are_refused(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let data = content(2 << 20, 31);
    net.put("peer1", "big.bin", &data);
    let outside = net.root.path().join("precious.txt");
    std::fs::write(&outside, b"precious").unwrap();
    let resume = net.served("client").join(".p2p/resume");
    std::fs::create_dir_all(&resume).unwrap();
    let hash = Hash::of(&data).to_string();
    let of_name = Hash::of(b"big.bin").to_string();
    // Where the earlier code put it, and where this code looks for it.
    let old = resume.join(format!("{hash}{}.part", &of_name[..16]));
    let new = resume.join(format!("{}{hash}.planted.part", &of_name[..16]));
    for link in [&old, &new] {
        std::os::unix::fs::symlink(&outside, link).unwrap();
    }
    let run = net.p2p(&["download", "big.bin", "peer1"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("planted.part is a link; p2p did not make it"), "{}", run.stderr);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    // Once it is gone, the download works.
    std::fs::remove_file(&new).unwrap();
    let run = net.p2p(&["download", "big.bin", "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("client", "big.bin"), data);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");

    // p2p's state folder itself as a link elsewhere is refused too.
    std::fs::remove_dir_all(net.served("client").join(".p2p")).unwrap();
    std::os::unix::fs::symlink(net.root.path(), net.served("client").join(".p2p")).unwrap();
    std::fs::remove_file(net.served("client").join("big.bin")).unwrap();
    let run = net.p2p(&["download", "big.bin", "peer1"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains(".p2p is a link or not a folder"), "{}", run.stderr);
}

/// An offer larger than the receiver's free space is refused at once, in
/// words; no sparse file of that size is made. (Before the fix a 4 TiB
/// offer was accepted and made a 4 TiB sparse file.)
fn an_offer_larger_than_the_free_space_is_refused(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let mut raw = Raw::connect(&net, &net.peer("peer1").addr);
    let size = 3u64 << 40;
    raw.send(&Message::Offer { id: 1, name: "huge.bin".into(), size, hash: Hash::of(b"x") });
    match raw.recv() {
        Some(Message::Error { id: 1, code: ErrorCode::TooLarge, message }) => {
            assert!(message.contains("huge.bin needs 3.0 TiB, and the receiving peer has"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(partials(&net.served("peer1")), 0);
}

/// Names that arrive are written composed (NFC), and one that would be
/// the same file as another on Windows or macOS (case, or Unicode form)
/// is refused, by a receiving peer and by a download; names made with
/// look-alikes of `/` and `.` are refused everywhere. (Before the fix,
/// `README.md` and `readme.md`, or the two forms of `café`, were accepted
/// side by side, and `..∕..∕etc∕passwd` was a name.)
fn names_are_composed_and_collisions_refused(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    let nfd = "cafe\u{301}.txt";
    net.put("client", nfd, b"decomposed\n");
    let run = net.p2p(&["upload", nfd, "peer1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(net.read("peer1", "caf\u{e9}.txt"), b"decomposed\n", "stored composed");
    assert!(!net.served("peer1").join(nfd).exists());

    net.put("peer1", "README.md", b"upper\n");
    net.put("client", "readme.md", b"lower\n");
    let run = net.p2p(&["upload", "readme.md", "peer1"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("readme.md would be the same file as README.md"), "{}", run.stderr);
    assert!(!net.served("peer1").join("readme.md").exists());
    let run = net.p2p(&["download", "README.md", "peer1"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("README.md would be the same file as readme.md"), "{}", run.stderr);

    let run = net.p2p(&["download", "..\u{2215}..\u{2215}etc\u{2215}passwd", "peer1"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("looks like a path separator or a dot"), "{}", run.stderr);
    let mut raw = Raw::connect(&net, &net.peer("peer1").addr);
    raw.send(&Message::Offer { id: 1, name: "a\u{FF0F}b".into(), size: 1, hash: Hash::of(b"x") });
    assert!(matches!(raw.recv(), Some(Message::Error { id: 1, code: ErrorCode::InvalidName, .. })));
}

/// A dangling link where the download would go is named as what it is.
/// (Before the fix the error said the file there had "blake3 0000…".)
fn a_dangling_link_at_the_target_is_named(mode: Mode) {
    let net = Net::start(mode, &["peer1"]);
    net.put("peer1", "a.txt", b"a\n");
    std::os::unix::fs::symlink("/nonexistent/target", net.served("client").join("a.txt")).unwrap();
    let run = net.p2p(&["download", "a.txt", "peer1"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("is not a readable file (a folder, or a link to nothing?)"), "{}", run.stderr);
    assert!(!run.stderr.contains("0000000000"), "{}", run.stderr);
}

/// A peer's words reach the terminal without the characters that could
/// drive it or reorder what it shows. (Before the fix a right-to-left
/// override in a peer's error went to the terminal as it was.)
fn a_peer_s_text_cannot_drive_the_terminal(mode: Mode) {
    let net = Net::start(mode, &[]);
    let liar = FakePeer::start(mode, "other.bin", Vec::new(), Fault::Says("denied\u{202E}txt.exe\u{1b}[2J"));
    let run = net.p2p(&["download", "x.bin", &liar.addr]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("denied?txt.exe?[2J"), "{:?}", run.stderr);
    assert!(!run.stderr.contains('\u{202E}') && !run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
}

both_modes!(
    links_planted_in_the_resume_state_are_refused,
    an_offer_larger_than_the_free_space_is_refused,
    names_are_composed_and_collisions_refused,
    a_dangling_link_at_the_target_is_named,
    a_peer_s_text_cannot_drive_the_terminal,
);
