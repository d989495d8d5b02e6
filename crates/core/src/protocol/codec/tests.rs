use proptest::prelude::*;

use super::*;
use crate::hash::Hash;
use crate::name::FileName;
use crate::protocol::{
    BadBlock, ErrorCode, FileInfo, FileRef, Hello, IndexedFile, LIST_PAGE, MANIFEST_PAGE, MAX_PEER_ID, PeerInfo,
    Sources, StoreOutcome, VERSION,
};
use crate::transport::Fingerprint;

fn name() -> impl Strategy<Value = FileName> {
    "[a-zA-Z0-9_][a-zA-Z0-9_ .-]{0,40}[a-zA-Z0-9_]".prop_filter_map("valid names", |s| FileName::new(&s).ok())
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn info() -> impl Strategy<Value = FileInfo> {
    (name(), any::<u64>(), hash()).prop_map(|(name, size, hash)| FileInfo { name, size, hash })
}

/// Every error code, found by decoding each variant index until one is
/// unknown: a code added later is in the round trip without a word here.
fn all_codes() -> Vec<ErrorCode> {
    (0u8..=127).map_while(|i| postcard::from_bytes::<ErrorCode>(&[i]).ok()).collect()
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(all_codes())
}

#[test]
fn every_error_code_is_in_the_round_trip() {
    let codes = all_codes();
    assert!(codes.contains(&ErrorCode::NotFound) && codes.contains(&ErrorCode::NotYet), "{codes:?}");
    for c in codes {
        assert!(!c.describe().is_empty());
    }
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![file_message(), index_message()]
}

fn peer_info() -> impl Strategy<Value = PeerInfo> {
    (".{0,12}", ".{0,24}", prop::option::of(any::<[u8; 32]>().prop_map(Fingerprint)), any::<u32>())
        .prop_map(|(id, addr, fingerprint, files)| PeerInfo { id, addr, fingerprint, files })
}

/// The index's messages.
fn index_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(id, port)| Message::Join { id, port }),
        (any::<u32>(), any::<u32>()).prop_map(|(id, ttl_secs)| Message::Joined { id, ttl_secs }),
        (any::<u32>(), prop::collection::vec(info(), 0..4), prop::collection::vec(name(), 0..4), any::<bool>())
            .prop_map(|(id, files, removed, reset)| Message::Publish { id, files, removed, reset }),
        (any::<u32>(), any::<u32>()).prop_map(|(id, files)| Message::Published { id, files }),
        any::<u32>().prop_map(|id| Message::Ping { id }),
        any::<u32>().prop_map(|id| Message::Pong { id }),
        any::<u32>().prop_map(|id| Message::IndexList { id }),
        (any::<u32>(), prop::collection::vec((info(), any::<u32>()), 0..4), any::<bool>()).prop_map(
            |(id, files, last)| Message::IndexFiles {
                id,
                files: files.into_iter().map(|(info, sources)| IndexedFile { info, sources }).collect(),
                last
            }
        ),
        (any::<u32>(), prop_oneof![".{0,30}".prop_map(FileRef::Name), hash().prop_map(FileRef::Hash)])
            .prop_map(|(id, file)| Message::Locate { id, file }),
        (any::<u32>(), prop::collection::vec((info(), prop::collection::vec(peer_info(), 0..3)), 0..3)).prop_map(
            |(id, found)| Message::Located {
                id,
                found: found.into_iter().map(|(info, peers)| Sources { info, peers }).collect()
            }
        ),
        any::<u32>().prop_map(|id| Message::ListPeers { id }),
        (any::<u32>(), prop::collection::vec(peer_info(), 0..4), any::<bool>())
            .prop_map(|(id, peers, last)| Message::PeerPage { id, peers, last }),
        (any::<u32>(), hash(), ".{0,24}").prop_map(|(id, hash, addr)| Message::Suspect { id, hash, addr }),
        any::<u32>().prop_map(|id| Message::Noted { id }),
        (
            any::<u32>(),
            hash(),
            ".{0,24}",
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<[u8; 32]>(), 0..3)
        )
            .prop_map(|(id, hash, addr, block, got, proof)| Message::Report {
                id,
                hash,
                addr,
                bad: Box::new(BadBlock { block, got, want: [9; 32], proof })
            }),
    ]
}

/// The messages between peers.
fn file_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (".{0,20}", ".{0,20}", any::<u32>()).prop_map(|(peer_id, agent, capabilities)| Message::Hello(Hello {
            peer_id,
            agent,
            capabilities
        })),
        any::<u32>().prop_map(|id| Message::List { id }),
        (any::<u32>(), prop::collection::vec(info(), 0..5), any::<bool>())
            .prop_map(|(id, files, last)| Message::Files { id, files, last }),
        (any::<u32>(), prop_oneof![".{0,30}".prop_map(FileRef::Name), hash().prop_map(FileRef::Hash)])
            .prop_map(|(id, file)| Message::GetManifest { id, file }),
        (
            any::<u32>(),
            info(),
            any::<u32>(),
            any::<u64>(),
            prop::collection::vec(any::<[u8; 32]>(), 0..4),
            any::<bool>()
        )
            .prop_map(|(id, info, block_size, first_block, cvs, last)| Message::ManifestPage {
                id,
                info,
                block_size,
                first_block,
                cvs,
                last
            }),
        (any::<u32>(), hash(), any::<u64>(), any::<u64>()).prop_map(|(id, hash, offset, len)| Message::Read {
            id,
            hash,
            offset,
            len
        }),
        any::<u32>().prop_map(|id| Message::Cancel { id }),
        (any::<u32>(), ".{0,30}", any::<u64>(), hash()).prop_map(|(id, name, size, hash)| Message::Offer {
            id,
            name,
            size,
            hash
        }),
        any::<u32>().prop_map(|id| Message::Accept { id }),
        (any::<u32>(), prop::sample::select(vec![StoreOutcome::Stored, StoreOutcome::Unchanged]))
            .prop_map(|(id, outcome)| Message::Stored { id, outcome }),
        (any::<u32>(), code(), ".{0,40}").prop_map(|(id, code, message)| Message::Error { id, code, message }),
        any::<u32>().prop_map(|id| Message::Working { id }),
        (any::<u32>(), hash(), any::<u16>()).prop_map(|(id, hash, port)| Message::Subscribe { id, hash, port }),
        (
            any::<u32>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(".{0,21}", 0..3)
        )
            .prop_map(|(id, complete, bits, peers)| Message::Holding { id, complete, bits, peers }),
        (any::<u32>(), prop::collection::vec(any::<u32>(), 0..10), prop::collection::vec(".{0,21}", 0..3))
            .prop_map(|(id, blocks, peers)| Message::Have { id, blocks, peers }),
        (any::<u32>(), info()).prop_map(|(id, info)| Message::Fetching { id, info }),
        (any::<u32>(), any::<bool>()).prop_map(|(id, choked)| Message::Choke { id, choked }),
        (any::<u32>(), any::<bool>()).prop_map(|(id, interested)| Message::Interest { id, interested }),
        (any::<u32>(), prop::collection::vec(any::<u32>(), 0..10)).prop_map(|(id, blocks)| Message::Got { id, blocks }),
        any::<u32>().prop_map(|id| Message::Showing { id }),
        (any::<u32>(), info(), prop::collection::vec(".{0,21}", 0..3))
            .prop_map(|(id, info, peers)| Message::Elsewhere { id, info, peers }),
    ]
}

proptest! {
    #[test]
    fn control_round_trips(msg in message(), junk in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut buf = vec![0xAA; 3];
        encode_control(&msg, &mut buf).unwrap();
        let framed = buf.len() - 3;
        buf.extend_from_slice(&junk);
        let (frame, used) = decode(&buf[3..]).unwrap().unwrap();
        prop_assert_eq!(used, framed);
        prop_assert_eq!(frame_len(&buf[3..]).unwrap(), Some(framed));
        prop_assert_eq!(frame, Frame::Control(msg));
    }

    #[test]
    fn data_round_trips(id: u32, offset: u64, bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let mut buf = Vec::new();
        encode_data(id, offset, &bytes, &mut buf);
        prop_assert_eq!(buf.len(), DATA_HEADER_LEN + bytes.len());
        let (frame, used) = decode(&buf).unwrap().unwrap();
        prop_assert_eq!(used, buf.len());
        prop_assert_eq!(frame, Frame::Data(DataFrame { id, offset, bytes: &bytes }));
    }

    #[test]
    fn every_prefix_needs_more(msg in message()) {
        let mut buf = Vec::new();
        encode_control(&msg, &mut buf).unwrap();
        for cut in 0..buf.len() {
            prop_assert_eq!(decode(&buf[..cut]), Ok(None));
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    /// Random bodies behind valid frame headers, with a plausible message
    /// variant first: what gets past the header to the message decoder.
    /// Whatever decodes re-encodes to the same message.
    #[test]
    fn framed_garbage_never_panics_and_what_decodes_round_trips(
        kind in prop_oneof![Just(1u8), Just(2u8)],
        variant in 0u8..32,
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = Vec::new();
        let len = 2 + body.len() as u32;
        frame.extend_from_slice(&len.to_le_bytes());
        frame.push(kind);
        frame.push(variant);
        frame.extend_from_slice(&body);
        if let Ok(Some((Frame::Control(m), used))) = decode(&frame) {
            prop_assert_eq!(used, frame.len());
            let mut again = Vec::new();
            encode_control(&m, &mut again).unwrap();
            let Ok(Some((Frame::Control(m2), _))) = decode(&again) else { panic!("re-encoded {m:?} does not decode") };
            prop_assert_eq!(m, m2);
        }
    }
}

#[test]
fn oversized_refused_from_the_header_alone() {
    let mut head = Vec::new();
    head.extend_from_slice(&((MAX_CONTROL as u32) + 2).to_le_bytes());
    head.push(0x01);
    assert_eq!(decode(&head), Err(DecodeError::TooLarge { len: MAX_CONTROL + 2, max: MAX_CONTROL + 1 }));
    let mut head = Vec::new();
    head.extend_from_slice(&u32::MAX.to_le_bytes());
    head.push(0x02);
    assert!(matches!(decode(&head), Err(DecodeError::TooLarge { .. })));
    assert_eq!(decode(&[0, 0, 0, 0, 1]), Err(DecodeError::Empty));
    assert_eq!(decode(&[1, 0, 0, 0, 9]), Err(DecodeError::UnknownKind(9)));
    assert_eq!(decode(&[3, 0, 0, 0, 2, 0, 0]), Err(DecodeError::ShortData));
    // A valid message followed by bytes inside the same frame.
    let mut buf = Vec::new();
    encode_control(&Message::List { id: 1 }, &mut buf).unwrap();
    buf.push(0);
    buf[0] += 1;
    assert!(matches!(decode(&buf), Err(DecodeError::Malformed(_))));
}

/// The pages sized by LIST_PAGE and MANIFEST_PAGE must fit a control frame
/// even at their worst.
#[test]
fn largest_pages_fit() {
    let longest = FileName::new(&"n".repeat(255)).unwrap();
    let files = vec![FileInfo { name: longest.clone(), size: u64::MAX, hash: Hash([0xff; 32]) }; LIST_PAGE];
    let mut buf = Vec::new();
    encode_control(&Message::Files { id: u32::MAX, files, last: true }, &mut buf).unwrap();
    assert!(buf.len() <= MAX_CONTROL, "list page is {} bytes", buf.len());

    let page = Message::ManifestPage {
        id: u32::MAX,
        info: FileInfo { name: longest, size: u64::MAX, hash: Hash([0xff; 32]) },
        block_size: u32::MAX,
        first_block: u64::MAX,
        cvs: vec![[0xff; 32]; MANIFEST_PAGE],
        last: true,
    };
    buf.clear();
    encode_control(&page, &mut buf).unwrap();
    assert!(buf.len() <= MAX_CONTROL, "manifest page is {} bytes", buf.len());

    let hello =
        Message::Hello(Hello { peer_id: "p".repeat(MAX_PEER_ID), agent: "a".repeat(64), capabilities: u32::MAX });
    buf.clear();
    encode_control(&hello, &mut buf).unwrap();
    assert!(buf.len() < 256);

    let too_big = Message::Error { id: 0, code: ErrorCode::Internal, message: "x".repeat(MAX_CONTROL) };
    buf.clear();
    assert!(matches!(encode_control(&too_big, &mut buf), Err(EncodeError::TooLarge(_))));
    assert!(buf.is_empty(), "a refused message leaves the buffer as it was");
}

#[test]
fn preamble() {
    let p = encode_preamble(VERSION);
    assert_eq!(&p, b"p2p\0\x01\0\0\0");
    assert_eq!(decode_preamble(&p), Ok(1));
    assert_eq!(decode_preamble(&encode_preamble(7)), Ok(7));
    let tls = [0x16, 0x03, 0x01, 0x02, 0, 0, 0, 0];
    assert!(decode_preamble(&tls).unwrap_err().to_string().contains("looks like TLS"));
    assert!(decode_preamble(b"GET / HT").unwrap_err().to_string().contains("HTTP"));
}

/// Prints a frame with its header fields named and its body in hex.
fn annotate(label: &str, frame: &[u8]) -> String {
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap());
    let kind = match frame[4] {
        1 => "control",
        2 => "data",
        _ => "?",
    };
    let mut s = format!("{label}\n  length {:02x?} = {len}\n  kind   {:02x} = {kind}\n", &frame[..4], frame[4]);
    let body = &frame[5..];
    if frame[4] == 2 {
        s += &format!("  id     {:02x?}\n  offset {:02x?}\n", &body[..4], &body[4..12]);
        s += &format!("  bytes  {:02x?}\n", &body[12..]);
    } else {
        s += &format!("  variant {:02x}\n", body[0]);
        for chunk in body[1..].chunks(16) {
            s += &format!("  {chunk:02x?}\n");
        }
    }
    s
}

/// Wire snapshots: any change to the bytes of a message shows up here, and
/// a change to the encoding is a protocol version change.
#[test]
fn wire_snapshots() {
    let name = FileName::new("notes.txt").unwrap();
    let hash = Hash::of(b"hello");
    let info = FileInfo { name: name.clone(), size: 5, hash };
    let samples = vec![
        ("Hello", Message::Hello(Hello { peer_id: "peer1".into(), agent: "p2p/0.1".into(), capabilities: 3 })),
        ("List", Message::List { id: 1 }),
        ("Files", Message::Files { id: 1, files: vec![info.clone()], last: true }),
        ("GetManifest by name", Message::GetManifest { id: 2, file: FileRef::Name(name.to_string()) }),
        ("GetManifest by hash", Message::GetManifest { id: 3, file: FileRef::Hash(hash) }),
        (
            "ManifestPage",
            Message::ManifestPage {
                id: 2,
                info: info.clone(),
                block_size: 16384,
                first_block: 0,
                cvs: vec![*hash.as_bytes()],
                last: true,
            },
        ),
        ("Read", Message::Read { id: 300, hash, offset: 1 << 20, len: 1 << 20 }),
        ("Cancel", Message::Cancel { id: 300 }),
        ("Offer", Message::Offer { id: 4, name: info.name.to_string(), size: info.size, hash }),
        ("Accept", Message::Accept { id: 4 }),
        ("Stored", Message::Stored { id: 4, outcome: StoreOutcome::Unchanged }),
        ("Error", Message::Error { id: 5, code: ErrorCode::AlreadyUploading, message: "busy".into() }),
        ("Working", Message::Working { id: 6 }),
        ("Join", Message::Join { id: 7, port: 5000 }),
        ("Joined", Message::Joined { id: 7, ttl_secs: 30 }),
        (
            "Publish",
            Message::Publish {
                id: 8,
                files: vec![info.clone()],
                removed: vec![FileName::new("old.txt").unwrap()],
                reset: true,
            },
        ),
        ("Published", Message::Published { id: 8, files: 1 }),
        ("Ping", Message::Ping { id: 9 }),
        ("Pong", Message::Pong { id: 9 }),
        ("IndexList", Message::IndexList { id: 10 }),
        (
            "IndexFiles",
            Message::IndexFiles { id: 10, files: vec![IndexedFile { info: info.clone(), sources: 2 }], last: true },
        ),
        ("Locate", Message::Locate { id: 11, file: FileRef::Name(name.to_string()) }),
        (
            "Located",
            Message::Located {
                id: 11,
                found: vec![Sources {
                    info: info.clone(),
                    peers: vec![PeerInfo {
                        id: "peer1".into(),
                        addr: "10.0.0.1:5000".into(),
                        fingerprint: Some(Fingerprint([7; 32])),
                        files: 3,
                    }],
                }],
            },
        ),
        ("ListPeers", Message::ListPeers { id: 12 }),
        (
            "PeerPage",
            Message::PeerPage {
                id: 12,
                peers: vec![PeerInfo { id: "peer2".into(), addr: "[::1]:5001".into(), fingerprint: None, files: 0 }],
                last: true,
            },
        ),
        ("Suspect", Message::Suspect { id: 13, hash, addr: "10.0.0.1:5000".into() }),
        ("Noted", Message::Noted { id: 13 }),
        ("Subscribe", Message::Subscribe { id: 15, hash, port: 5001 }),
        (
            "Holding",
            Message::Holding {
                id: 15,
                complete: false,
                bits: vec![0b1010_0101, 0x01],
                peers: vec!["10.0.0.2:5000".into()],
            },
        ),
        ("Have", Message::Have { id: 15, blocks: vec![1, 3, 4096], peers: vec![] }),
        ("Fetching", Message::Fetching { id: 16, info: info.clone() }),
        ("Elsewhere", Message::Elsewhere { id: 17, info: info.clone(), peers: vec!["198.18.0.2:5000".into()] }),
        (
            "Report",
            Message::Report {
                id: 14,
                hash,
                addr: "10.0.0.1:5000".into(),
                bad: Box::new(BadBlock { block: 3, got: [1; 32], want: [2; 32], proof: vec![[3; 32]] }),
            },
        ),
    ];
    let mut out = String::new();
    for (label, msg) in samples {
        let mut buf = Vec::new();
        encode_control(&msg, &mut buf).unwrap();
        out += &annotate(label, &buf);
    }
    let mut buf = Vec::new();
    encode_data(300, 1 << 20, b"hello", &mut buf);
    out += &annotate("Data", &buf);
    out += &format!("Preamble\n  {:02x?}\n", encode_preamble(VERSION));
    insta::assert_snapshot!(out);
}
