//! Turning a stream of received bytes into verified writes.

use std::ops::Range;
use std::sync::Arc;

use crate::manifest::Manifest;

/// Verified bytes are handed out for writing in runs of about this size,
/// so that small blocks do not mean small writes.
pub(crate) const WRITE_RUN: usize = 1 << 20;

/// Why received bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Bytes that do not continue where the last ones ended.
    #[error("data at offset {got}, expected offset {expected}")]
    OutOfOrder {
        /// Where the next bytes belong.
        expected: u64,
        /// Where the received bytes claim to be.
        got: u64,
    },
    /// Bytes past the end of the requested range.
    #[error("data past the end of the requested range")]
    PastEnd,
    /// A data frame with no bytes: it moves nothing, so a peer sending them
    /// could keep a transfer alive forever.
    #[error("empty data frame")]
    Empty,
    /// A block that does not match the manifest.
    #[error("block {block} (bytes {start}..{end}) does not match the file's hash")]
    Corrupt {
        /// Block index.
        block: u64,
        /// First byte of the block.
        start: u64,
        /// End of the block.
        end: u64,
        /// The value the bad data had as that block (evidence for a report).
        got: [u8; 32],
    },
}

/// Collects the bytes of a block-aligned range, in order, checks each
/// block against the manifest as soon as it is whole, and hands out only
/// verified bytes.
#[derive(Debug)]
pub struct BlockWriter {
    manifest: Arc<Manifest>,
    /// Offset of the next expected byte.
    next: u64,
    end: u64,
    /// Verified bytes not yet handed out, then the current block's bytes.
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Bytes of `buf` already verified.
    verified: usize,
    /// Size of the buffers: a run of verified bytes, at least a block.
    cap: usize,
    /// Buffers handed back after writing, reused for the next runs: fresh
    /// allocations of a MiB cost a page fault per 4 KiB.
    spare: Vec<Vec<u8>>,
}

impl BlockWriter {
    /// A writer for `range`, which must start on a block boundary and end on
    /// one or at the end of the file. For an empty file the one (empty)
    /// block is checked here.
    pub fn new(manifest: Arc<Manifest>, range: Range<u64>) -> Result<Self, VerifyError> {
        if manifest.size() == 0 && !manifest.verify_block(0, &[]) {
            let got = manifest.value_of(0, &[]).unwrap_or_default();
            return Err(VerifyError::Corrupt { block: 0, start: 0, end: 0, got });
        }
        let cap = (manifest.block_size() as usize).max(WRITE_RUN).min((range.end - range.start) as usize);
        Ok(Self {
            manifest,
            next: range.start,
            end: range.end,
            // Allocated on the first bytes, preferably from a spare.
            buf: Vec::new(),
            buf_start: range.start,
            verified: 0,
            cap,
            spare: Vec::new(),
        })
    }

    /// Whether every byte of the range arrived (and was verified).
    pub fn is_done(&self) -> bool {
        self.next == self.end
    }

    /// Where the next bytes belong.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Takes the next bytes. Returns verified runs `(offset, bytes)` ready
    /// to be written, in order.
    pub fn push(&mut self, offset: u64, mut bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, VerifyError> {
        if bytes.is_empty() {
            return Err(VerifyError::Empty);
        }
        if offset != self.next {
            return Err(VerifyError::OutOfOrder { expected: self.next, got: offset });
        }
        if bytes.len() as u64 > self.end - self.next {
            return Err(VerifyError::PastEnd);
        }
        if self.buf.capacity() == 0 {
            self.buf = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(self.cap));
        }
        let mut out = Vec::new();
        let bs = u64::from(self.manifest.block_size());
        while !bytes.is_empty() {
            let block = self.next / bs;
            let block_end = self.manifest.block_range(block).end;
            let take = ((block_end - self.next) as usize).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            self.next += take as u64;
            bytes = &bytes[take..];
            if self.next == block_end {
                let start = self.buf_start + self.verified as u64;
                let data = &self.buf[self.verified..];
                if !self.manifest.verify_block(block, data) {
                    let got = self.manifest.value_of(block, data).unwrap_or_default();
                    return Err(VerifyError::Corrupt { block, start, end: block_end, got });
                }
                self.verified = self.buf.len();
                if self.verified >= WRITE_RUN || self.next == self.end {
                    out.push(self.take_verified());
                }
            }
        }
        Ok(out)
    }

    /// Gives back a buffer from an earlier run, once written.
    pub fn give(&mut self, mut buf: Vec<u8>) {
        if self.spare.is_empty() && buf.capacity() >= self.cap {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// The buffers this writer holds, for the next writer.
    pub fn into_buffers(mut self) -> Vec<Vec<u8>> {
        if self.buf.capacity() >= self.cap {
            self.buf.clear();
            self.spare.push(self.buf);
        }
        self.spare
    }

    fn take_verified(&mut self) -> (u64, Vec<u8>) {
        let offset = self.buf_start;
        let next = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(self.cap));
        let run = std::mem::replace(&mut self.buf, next);
        self.buf_start += run.len() as u64;
        self.verified = 0;
        (offset, run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{MIN_BLOCK, manifest_of};

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn hands_out_only_verified_runs_in_order() {
        let data = sample(200 * MIN_BLOCK as usize + 123);
        let m = Arc::new(manifest_of(&data));
        let mut w = BlockWriter::new(m, 0..data.len() as u64).unwrap();
        let mut got = Vec::new();
        for piece in data.chunks(10_000) {
            for (off, run) in w.push(w.next_offset(), piece).unwrap() {
                assert_eq!(off as usize, got.len());
                got.extend_from_slice(&run);
            }
        }
        assert!(w.is_done());
        assert_eq!(got, data);
    }

    #[test]
    fn refuses_a_bad_block_before_handing_it_out() {
        let mut data = sample(3 * MIN_BLOCK as usize);
        let m = Arc::new(manifest_of(&data));
        data[MIN_BLOCK as usize + 5] ^= 1;
        let mut w = BlockWriter::new(m.clone(), 0..data.len() as u64).unwrap();
        assert_eq!(w.push(0, &data[..MIN_BLOCK as usize]).unwrap(), vec![]);
        let e = w.push(MIN_BLOCK as u64, &data[MIN_BLOCK as usize..]).unwrap_err();
        let got = m.value_of(1, &data[MIN_BLOCK as usize..2 * MIN_BLOCK as usize]).unwrap();
        assert_ne!(got, m.cvs()[1]);
        assert_eq!(e, VerifyError::Corrupt { block: 1, start: MIN_BLOCK as u64, end: 2 * MIN_BLOCK as u64, got });
    }

    #[test]
    fn order_and_bounds() {
        let data = sample(2 * MIN_BLOCK as usize);
        let m = Arc::new(manifest_of(&data));
        let bs = MIN_BLOCK as u64;
        let mut w = BlockWriter::new(m.clone(), bs..2 * bs).unwrap();
        assert_eq!(w.push(0, &data[..10]), Err(VerifyError::OutOfOrder { expected: bs, got: 0 }));
        assert_eq!(w.push(bs, &[]), Err(VerifyError::Empty));
        assert_eq!(w.push(bs, &data[..bs as usize + 1]), Err(VerifyError::PastEnd));
        let runs = w.push(bs, &data[bs as usize..]).unwrap();
        assert_eq!(runs, vec![(bs, data[bs as usize..].to_vec())]);
    }

    #[test]
    fn empty_file_is_checked() {
        let m = Arc::new(manifest_of(b""));
        assert!(BlockWriter::new(m, 0..0).unwrap().is_done());
        // An "empty file" whose claimed hash is not the hash of nothing.
        let fake = Arc::new(Manifest::from_parts(0, MIN_BLOCK, vec![[7; 32]], crate::hash::Hash([7; 32])).unwrap());
        assert!(BlockWriter::new(fake, 0..0).is_err());
    }
}
