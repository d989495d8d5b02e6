//! Any bytes, as they might arrive on a connection: decoding never panics,
//! never claims more bytes than it was given, and whatever decodes encodes
//! again to a frame that decodes to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_core::protocol::codec::{self, Frame};
use p2p_core::protocol::PREAMBLE_LEN;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = <[u8; PREAMBLE_LEN]>::try_from(data.get(..PREAMBLE_LEN).unwrap_or_default()) {
        let _ = codec::decode_preamble(&p);
    }
    let mut rest = data;
    while let Ok(Some((frame, used))) = codec::decode(rest) {
        assert!(used > 0 && used <= rest.len(), "used {used} of {}", rest.len());
        assert_eq!(codec::frame_len(rest), Ok(Some(used)));
        let mut again = Vec::new();
        match &frame {
            Frame::Control(m) => {
                if codec::encode_control(m, &mut again).is_err() {
                    break;
                }
            }
            Frame::Data(d) => codec::encode_data(d.id, d.offset, d.bytes, &mut again),
        }
        match codec::decode(&again) {
            Ok(Some((same, n))) => {
                assert_eq!(n, again.len());
                match (&frame, &same) {
                    (Frame::Control(a), Frame::Control(b)) => assert_eq!(a, b),
                    (Frame::Data(a), Frame::Data(b)) => {
                        assert_eq!((a.id, a.offset, a.bytes), (b.id, b.offset, b.bytes));
                    }
                    _ => panic!("a frame changed kind when encoded again"),
                }
            }
            other => panic!("a decoded frame, encoded again, does not decode: {other:?}"),
        }
        rest = &rest[used..];
    }
});
