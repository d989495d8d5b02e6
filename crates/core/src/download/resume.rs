//! Resume records: which blocks of a partial file are in place.
//!
//! A record is saved beside its partial file, and only after the partial
//! file is synced, so it never claims bytes that a crash could lose. On
//! the next try every block it claims is read back and checked against the
//! manifest before it counts: a record is a hint, the hash is the truth.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::bitfield::Bitfield;
use crate::hash::Hash;
use crate::manifest::Manifest;
use crate::store::ReadAt;

const VERSION: u8 = 1;
/// Bytes read back at a time while checking a partial file.
const CHECK_READ: u64 = 4 << 20;

#[derive(Serialize, Deserialize)]
struct Record {
    version: u8,
    hash: Hash,
    size: u64,
    block_size: u32,
    /// One bit per block, least significant first.
    done: Vec<u8>,
}

/// The blocks of one file that are in place.
#[derive(Debug, Clone)]
pub(crate) struct Blocks {
    bits: Bitfield,
}

impl Blocks {
    pub(crate) fn new(count: u64) -> Self {
        Self { bits: Bitfield::new(count) }
    }

    pub(crate) fn set(&mut self, block: u64) {
        self.bits.set(block);
    }

    pub(crate) fn get(&self, block: u64) -> bool {
        self.bits.get(block)
    }

    /// The blocks, as a set.
    pub(crate) fn bits(&self) -> &Bitfield {
        &self.bits
    }

    /// Marks the blocks `range` covers, which starts on a block boundary
    /// and ends on one or at the end of the file.
    pub(crate) fn set_range(&mut self, manifest: &Manifest, range: &Range<u64>) {
        let bs = u64::from(manifest.block_size());
        for b in range.start / bs..range.end.div_ceil(bs) {
            self.set(b);
        }
    }

    /// The record to save for `manifest`.
    pub(crate) fn encode(&self, manifest: &Manifest) -> Vec<u8> {
        let r = Record {
            version: VERSION,
            hash: manifest.root(),
            size: manifest.size(),
            block_size: manifest.block_size(),
            done: self.bits.as_bytes().to_vec(),
        };
        postcard::to_allocvec(&r).unwrap_or_default()
    }

    /// The blocks a saved record claims, if it is a record of this file.
    pub(crate) fn decode(data: &[u8], manifest: &Manifest) -> Option<Self> {
        let r: Record = postcard::from_bytes(data).ok()?;
        let ok = r.version == VERSION
            && r.hash == manifest.root()
            && r.size == manifest.size()
            && r.block_size == manifest.block_size();
        let bits = Bitfield::from_bytes(&r.done, manifest.block_count())?;
        ok.then_some(Self { bits })
    }

    /// Reads back the blocks this set claims and keeps those that match the
    /// manifest. Returns them, as ranges, and their bytes.
    pub(crate) async fn verify(&self, file: &impl ReadAt, manifest: &Manifest) -> (Self, Vec<Range<u64>>, u64) {
        let mut good = Self::new(self.bits.count());
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let mut bytes = 0;
        let per_read = (CHECK_READ / u64::from(manifest.block_size())).max(1);
        let mut buf = Vec::new();
        let mut b = 0;
        while b < self.bits.count() {
            if !self.get(b) {
                b += 1;
                continue;
            }
            // A run of claimed blocks, read in large pieces.
            let mut end = b;
            while end < self.bits.count() && self.get(end) && end - b < per_read {
                end += 1;
            }
            let start = manifest.block_range(b).start;
            let stop = manifest.block_range(end - 1).end;
            // A block that cannot be read back is simply fetched again.
            buf = file.read_at(start, (stop - start) as usize, std::mem::take(&mut buf)).await.unwrap_or_default();
            if buf.len() as u64 == stop - start {
                for block in b..end {
                    let r = manifest.block_range(block);
                    let data = &buf[(r.start - start) as usize..(r.end - start) as usize];
                    if manifest.verify_block(block, data) {
                        good.set(block);
                        bytes += r.end - r.start;
                        match ranges.last_mut() {
                            Some(last) if last.end == r.start => last.end = r.end,
                            _ => ranges.push(r),
                        }
                    }
                }
            }
            b = end;
        }
        (good, ranges, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::manifest_of;

    struct Bytes(Vec<u8>);

    impl ReadAt for Bytes {
        async fn read_at(&self, offset: u64, len: usize, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
            let start = offset as usize;
            let data = self.0.get(start..start + len).ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.clear();
            buf.extend_from_slice(data);
            Ok(buf)
        }
    }

    #[test]
    fn a_record_counts_only_blocks_that_verify() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let m = manifest_of(&data);
        assert_eq!(m.block_size(), 16 * 1024);
        let mut claimed = Blocks::new(m.block_count());
        for b in [0, 1, 2, 5, m.block_count() - 1] {
            claimed.set(b);
        }
        let saved = claimed.encode(&m);
        let back = Blocks::decode(&saved, &m).expect("a record of this file");
        // Block 1 on disk is damaged: it does not count.
        let mut disk = data.clone();
        disk[20_000] ^= 1;
        let (good, ranges, bytes) = futures_lite::future::block_on(back.verify(&Bytes(disk), &m));
        let bs = 16 * 1024;
        assert_eq!(ranges, vec![0..bs, 2 * bs..3 * bs, 5 * bs..6 * bs, 12 * bs..200_000]);
        assert_eq!(bytes, 3 * bs + (200_000 - 12 * bs));
        assert!(good.get(0) && !good.get(1) && good.get(2));
        // A record of other content, or garbage, is no record.
        let other = manifest_of(&data[..100_000]);
        assert!(Blocks::decode(&saved, &other).is_none());
        assert!(Blocks::decode(b"junk", &m).is_none());
    }
}
