//! The pure codec: frames from bytes and into a caller's buffer. No IO.

use super::{MAGIC, MAX_CONTROL, MAX_DATA, Message, PREAMBLE_LEN};

const KIND_CONTROL: u8 = 0x01;
const KIND_DATA: u8 = 0x02;
/// Length prefix plus kind byte.
const FRAME_HEAD: usize = 5;
/// Bytes of a data frame before its payload: length, kind, id, offset.
pub const DATA_HEADER_LEN: usize = FRAME_HEAD + 4 + 8;
/// The longest frame, header included.
pub const MAX_FRAME_LEN: usize = DATA_HEADER_LEN + MAX_DATA;

/// A decoded frame. Data frames borrow their payload from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A control message.
    Control(Message),
    /// A run of file bytes.
    Data(DataFrame<'a>),
}

/// File bytes answering (or, for uploads, belonging to) request `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// The request these bytes belong to.
    pub id: u32,
    /// Offset of the first byte within the file.
    pub offset: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// Why bytes are not a valid frame. Every variant is fatal for the
/// connection: framing cannot be recovered after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length prefix of zero.
    #[error("empty frame")]
    Empty,
    /// A frame longer than its kind allows.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Announced length (kind and body).
        len: usize,
        /// The limit for this kind.
        max: usize,
    },
    /// A kind byte that is neither control nor data.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A data frame too short to hold its id and offset.
    #[error("data frame shorter than its header")]
    ShortData,
    /// A control body that is not a valid message.
    #[error("malformed control message: {0}")]
    Malformed(String),
}

/// Why a control message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message is over [`MAX_CONTROL`].
    #[error("control message of {0} bytes is over the 1 MiB limit")]
    TooLarge(usize),
    /// serde refused the value.
    #[error("cannot encode message: {0}")]
    Serialize(String),
}

/// Why a preamble was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The other side is not speaking p2p at all.
    #[error("not a p2p peer (it opened with {first:02x?}){hint}")]
    BadMagic {
        /// The first bytes received.
        first: [u8; 4],
        /// A guess at what it is, for the error message.
        hint: &'static str,
    },
}

/// The total length of the frame at the start of `buf`, once its header is
/// there. Checks the limits, so an oversized frame is refused before its
/// body is read.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(head) = buf.get(..FRAME_HEAD) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let max = match head[4] {
        _ if len == 0 => return Err(DecodeError::Empty),
        KIND_CONTROL => 1 + MAX_CONTROL,
        KIND_DATA => MAX_FRAME_LEN - 4,
        other => return Err(DecodeError::UnknownKind(other)),
    };
    if len > max {
        return Err(DecodeError::TooLarge { len, max });
    }
    Ok(Some(4 + len))
}

/// Decodes the frame at the start of `buf`: the frame and the number of
/// bytes it used, or `None` if `buf` does not hold a whole frame yet.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let Some(total) = frame_len(buf)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let body = &frame[FRAME_HEAD..];
    let decoded = if frame[4] == KIND_CONTROL {
        let (msg, rest) =
            postcard::take_from_bytes::<Message>(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed(format!("{} bytes after the message", rest.len())));
        }
        Frame::Control(msg)
    } else {
        let (head, bytes) = body.split_at_checked(12).ok_or(DecodeError::ShortData)?;
        let (id, offset) = head.split_at(4);
        Frame::Data(DataFrame {
            id: u32::from_le_bytes(id.try_into().map_err(|_| DecodeError::ShortData)?),
            offset: u64::from_le_bytes(offset.try_into().map_err(|_| DecodeError::ShortData)?),
            bytes,
        })
    };
    Ok(Some((decoded, total)))
}

/// Appends a control frame carrying `msg` to `out`.
pub fn encode_control(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, KIND_CONTROL]);
    if let Err(e) = postcard::to_extend(msg, Sink(out)) {
        out.truncate(start);
        return Err(EncodeError::Serialize(e.to_string()));
    }
    let body = out.len() - start - FRAME_HEAD;
    if body > MAX_CONTROL {
        out.truncate(start);
        return Err(EncodeError::TooLarge(body));
    }
    let len = (body + 1) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Lets postcard append to a borrowed buffer.
struct Sink<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Sink<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// The header of a data frame whose payload of `len` bytes follows it.
/// Writing header and payload separately lets file bytes go from the read
/// buffer to the stream without being copied into a frame.
pub fn data_header(id: u32, offset: u64, len: usize) -> [u8; DATA_HEADER_LEN] {
    debug_assert!(len <= MAX_DATA);
    let mut h = [0u8; DATA_HEADER_LEN];
    h[..4].copy_from_slice(&((len + 13) as u32).to_le_bytes());
    h[4] = KIND_DATA;
    h[5..9].copy_from_slice(&id.to_le_bytes());
    h[9..17].copy_from_slice(&offset.to_le_bytes());
    h
}

/// Appends a whole data frame to `out`. `bytes` must be at most
/// [`MAX_DATA`] long.
pub fn encode_data(id: u32, offset: u64, bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&data_header(id, offset, bytes.len()));
    out.extend_from_slice(bytes);
}

/// The preamble announcing `version`.
pub fn encode_preamble(version: u16) -> [u8; PREAMBLE_LEN] {
    let mut p = [0u8; PREAMBLE_LEN];
    p[..4].copy_from_slice(&MAGIC);
    p[4..6].copy_from_slice(&version.to_le_bytes());
    p
}

/// The version a preamble announces.
pub fn decode_preamble(p: &[u8; PREAMBLE_LEN]) -> Result<u16, PreambleError> {
    if p[..4] != MAGIC {
        let first = [p[0], p[1], p[2], p[3]];
        let hint = match first {
            [0x16, 0x03, ..] => ": it looks like TLS; is this a TLS port?",
            [b'G', b'E', b'T', b' '] | [b'P', b'O', b'S', b'T'] | [b'H', b'T', b'T', b'P'] => ": it looks like HTTP",
            [b'S', b'S', b'H', b'-'] => ": it looks like SSH",
            _ => "",
        };
        return Err(PreambleError::BadMagic { first, hint });
    }
    Ok(u16::from_le_bytes([p[4], p[5]]))
}

#[cfg(test)]
mod tests;
