//! Manifests: a file cut into blocks, each with its BLAKE3 chaining value.
//!
//! A file's identity is its BLAKE3 hash (what `b3sum` prints). BLAKE3 is a
//! tree hash, and every aligned power-of-two block of a file is a subtree of
//! that tree, so the chaining values of the blocks merge into the root with
//! `blake3::hazmat`. That gives two checks, both cheap:
//!
//! * a manifest received from anyone is checked against the root before it
//!   is used ([`Manifest::from_parts`]);
//! * every block is checked against the manifest before it is written
//!   ([`Manifest::verify_block`]).
//!
//! The block size is a function of the file size ([`block_size_for`]) so
//! that a manifest stays small: at most 4096 entries (128 KiB) up to 16 GiB.

use std::ops::Range;

use blake3::hazmat::{ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::hash::Hash;

/// Smallest block: 16 KiB.
pub const MIN_BLOCK: u32 = 16 * 1024;
/// Largest block: 4 MiB. A receiver buffers one block per source before it
/// can verify it, so this bounds memory.
pub const MAX_BLOCK: u32 = 4 * 1024 * 1024;
/// Largest file the protocol moves: 4 TiB (1 Mi blocks of 4 MiB, a 32 MiB
/// manifest).
pub const MAX_FILE_SIZE: u64 = 1 << 42;
/// Files up to `TARGET_BLOCKS * MAX_BLOCK` bytes get at most this many blocks.
const TARGET_BLOCKS: u64 = 4096;

/// The block size used for a file of `size` bytes: the smallest power of two
/// that keeps the block count at or under 4096, within 16 KiB..=4 MiB.
pub fn block_size_for(size: u64) -> u32 {
    let wanted = size.div_ceil(TARGET_BLOCKS).next_power_of_two();
    // The clamp keeps the value within u32.
    wanted.clamp(u64::from(MIN_BLOCK), u64::from(MAX_BLOCK)) as u32
}

/// Number of blocks of a file: at least one (an empty file has one empty
/// block, so that every file has something to verify).
pub fn block_count(size: u64, block_size: u32) -> u64 {
    size.div_ceil(u64::from(block_size)).max(1)
}

/// A file's block list, checked against the file's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    size: u64,
    block_size: u32,
    root: Hash,
    /// One chaining value per block. For a single-block file this is the
    /// root itself: such a block is the whole tree, so it has no chaining
    /// value distinct from the root.
    cvs: Vec<ChainingValue>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("the file is {0} bytes; the limit is 4 TiB")]
    TooLarge(u64),
    /// The block size is not the one [`block_size_for`] gives for the size.
    #[error("block size {got} does not match the {want} this file size calls for")]
    BlockSize {
        /// The block size offered.
        got: u32,
        /// The block size expected.
        want: u32,
    },
    /// The number of chaining values does not match the size.
    #[error("{got} block hashes for a file that has {want} blocks")]
    BlockCount {
        /// Entries offered.
        got: u64,
        /// Entries expected.
        want: u64,
    },
    /// The block hashes do not merge into the file's hash.
    #[error("the block hashes do not add up to the file hash {0}")]
    RootMismatch(Hash),
    /// A builder was fed a different number of bytes than announced.
    #[error("expected {want} bytes of content, got {got}: the file changed while it was read")]
    LengthMismatch {
        /// Bytes announced.
        want: u64,
        /// Bytes fed.
        got: u64,
    },
}

impl Manifest {
    /// Builds a manifest from its parts and checks it against `root`.
    pub fn from_parts(size: u64, block_size: u32, cvs: Vec<ChainingValue>, root: Hash) -> Result<Self, ManifestError> {
        if size > MAX_FILE_SIZE {
            return Err(ManifestError::TooLarge(size));
        }
        let want = block_size_for(size);
        if block_size != want {
            return Err(ManifestError::BlockSize { got: block_size, want });
        }
        let count = block_count(size, block_size);
        if cvs.len() as u64 != count {
            return Err(ManifestError::BlockCount { got: cvs.len() as u64, want: count });
        }
        if merge_root(&cvs, size, block_size) != root {
            return Err(ManifestError::RootMismatch(root));
        }
        Ok(Self { size, block_size, root, cvs })
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The file's BLAKE3 hash.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Number of blocks.
    pub fn block_count(&self) -> u64 {
        self.cvs.len() as u64
    }

    /// The chaining values, one per block.
    pub fn cvs(&self) -> &[ChainingValue] {
        &self.cvs
    }

    /// Byte range of block `index` within the file.
    pub fn block_range(&self, index: u64) -> Range<u64> {
        let start = index * u64::from(self.block_size);
        let end = (start + u64::from(self.block_size)).min(self.size);
        start..end
    }

    /// The block that starts at `offset`, if a block starts there.
    pub fn block_at(&self, offset: u64) -> Option<u64> {
        let bs = u64::from(self.block_size);
        (offset.is_multiple_of(bs) && (offset < self.size || offset == 0)).then_some(offset / bs)
    }

    /// Whether `data` is exactly block `index` of this file.
    pub fn verify_block(&self, index: u64, data: &[u8]) -> bool {
        let want = usize::try_from(index).ok().and_then(|i| self.cvs.get(i));
        want.is_some_and(|want| self.value_of(index, data) == Some(*want))
    }

    /// The value `data` has as block `index` of this file (what
    /// [`verify_block`](Self::verify_block) compares with the manifest),
    /// or `None` if it is not the block's length.
    pub fn value_of(&self, index: u64, data: &[u8]) -> Option<ChainingValue> {
        let range = self.block_range(index);
        (index < self.block_count() && data.len() as u64 == range.end - range.start)
            .then(|| block_cv(self.cvs.len() == 1, range.start, data))
    }

    /// The chaining values that, merged with block `index`'s own, give the
    /// file's hash: one per level of BLAKE3's tree, from the top. With it,
    /// anyone who knows only the file's hash and size can check that a
    /// value is block `index`'s ([`verify_proof`]). Empty for a file of one
    /// block.
    pub fn proof(&self, index: u64) -> Option<Vec<ChainingValue>> {
        if index >= self.block_count() {
            return None;
        }
        let bs = u64::from(self.block_size);
        let mut proof = Vec::new();
        for step in path(self.size, bs, index) {
            let sibling = if step.left {
                merge_subtree(&self.cvs[step.split..step.hi], step.len - step.left_len, bs)
            } else {
                merge_subtree(&self.cvs[step.lo..step.split], step.left_len, bs)
            };
            proof.push(sibling);
        }
        Some(proof)
    }
}

/// Whether `value` is the chaining value of block `index` of the file of
/// `size` bytes whose hash is `root`, by `proof` (from
/// [`Manifest::proof`]).
pub fn verify_proof(size: u64, root: Hash, index: u64, value: &ChainingValue, proof: &[ChainingValue]) -> bool {
    if size > MAX_FILE_SIZE || index >= block_count(size, block_size_for(size)) {
        return false;
    }
    let steps = path(size, u64::from(block_size_for(size)), index);
    if steps.len() != proof.len() {
        return false;
    }
    if steps.is_empty() {
        return Hash(*value) == root;
    }
    let mut acc = *value;
    for (i, (step, sibling)) in steps.iter().zip(proof).enumerate().rev() {
        let (l, r) = if step.left { (&acc, sibling) } else { (sibling, &acc) };
        if i == 0 {
            return Hash::from(merge_subtrees_root(l, r, Mode::Hash)) == root;
        }
        acc = merge_subtrees_non_root(l, r, Mode::Hash);
    }
    false
}

/// One level of the way from the root to a block: the node holds blocks
/// `lo..hi` (`len` bytes), its left child `lo..split` (`left_len` bytes),
/// and the way goes `left` or right.
struct Step {
    lo: usize,
    split: usize,
    hi: usize,
    len: u64,
    left_len: u64,
    left: bool,
}

/// The way from the root of the tree of a file of `size` bytes (blocks of
/// `bs`) down to block `index`: empty for a file of one block.
fn path(size: u64, bs: u64, index: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    let (mut lo, mut hi, mut len) = (0usize, block_count(size, bs as u32) as usize, size);
    while len > bs {
        let left_len = blake3::hazmat::left_subtree_len(len);
        let split = lo + (left_len / bs) as usize;
        let left = (index as usize) < split;
        steps.push(Step { lo, split, hi, len, left_len, left });
        if left {
            hi = split;
            len = left_len;
        } else {
            lo = split;
            len -= left_len;
        }
    }
    steps
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("size", &self.size)
            .field("block_size", &self.block_size)
            .field("root", &self.root)
            .field("blocks", &self.cvs.len())
            .finish()
    }
}

/// The value a block is checked against: its chaining value, or the root
/// when the block is the whole file.
fn block_cv(whole_file: bool, offset: u64, data: &[u8]) -> ChainingValue {
    if whole_file {
        *blake3::hash(data).as_bytes()
    } else {
        let mut h = blake3::Hasher::new();
        h.set_input_offset(offset);
        h.update(data);
        h.finalize_non_root()
    }
}

/// Merges block chaining values into the file's root hash, following
/// BLAKE3's tree shape: the left subtree of `len` bytes holds the largest
/// power-of-two number of chunks that is less than the whole.
fn merge_root(cvs: &[ChainingValue], size: u64, block_size: u32) -> Hash {
    if cvs.len() == 1 {
        return Hash(cvs[0]);
    }
    let bs = u64::from(block_size);
    let left = blake3::hazmat::left_subtree_len(size);
    let split = (left / bs) as usize;
    let l = merge_subtree(&cvs[..split], left, bs);
    let r = merge_subtree(&cvs[split..], size - left, bs);
    merge_subtrees_root(&l, &r, Mode::Hash).into()
}

fn merge_subtree(cvs: &[ChainingValue], len: u64, bs: u64) -> ChainingValue {
    if len <= bs {
        return cvs[0];
    }
    // `len > bs >= 16 KiB`, so the left part is a power of two >= bs and the
    // split falls on a block boundary.
    let left = blake3::hazmat::left_subtree_len(len);
    let split = (left / bs) as usize;
    let l = merge_subtree(&cvs[..split], left, bs);
    let r = merge_subtree(&cvs[split..], len - left, bs);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

/// Computes a manifest from a file's bytes, fed in order in any pieces.
#[derive(Debug)]
pub struct ManifestBuilder {
    size: u64,
    block_size: u32,
    fed: u64,
    hasher: blake3::Hasher,
    cvs: Vec<ChainingValue>,
}

impl ManifestBuilder {
    /// A builder for a file of `size` bytes.
    pub fn new(size: u64) -> Self {
        let block_size = block_size_for(size);
        let count = block_count(size, block_size);
        Self {
            size,
            block_size,
            fed: 0,
            hasher: blake3::Hasher::new(),
            cvs: Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20)),
        }
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        let bs = u64::from(self.block_size);
        while !data.is_empty() {
            let in_block = self.fed % bs;
            let take = ((bs - in_block) as usize).min(data.len());
            self.hasher.update(&data[..take]);
            self.fed += take as u64;
            data = &data[take..];
            if self.fed.is_multiple_of(bs) && self.fed < self.size {
                self.finish_block();
            }
        }
    }

    fn finish_block(&mut self) {
        let whole_file = self.size <= u64::from(self.block_size);
        let cv = if whole_file { *self.hasher.finalize().as_bytes() } else { self.hasher.finalize_non_root() };
        self.cvs.push(cv);
        if self.fed < self.size {
            // The next block starts here, on a block (so chunk) boundary.
            self.hasher = blake3::Hasher::new();
            self.hasher.set_input_offset(self.fed);
        }
    }

    /// Finishes the last block and returns the manifest.
    pub fn finish(mut self) -> Result<Manifest, ManifestError> {
        if self.fed != self.size {
            return Err(ManifestError::LengthMismatch { want: self.size, got: self.fed });
        }
        if self.size > MAX_FILE_SIZE {
            return Err(ManifestError::TooLarge(self.size));
        }
        self.finish_block();
        let root = merge_root(&self.cvs, self.size, self.block_size);
        Ok(Manifest { size: self.size, block_size: self.block_size, root, cvs: self.cvs })
    }
}

/// The manifest of `data` (the whole file in memory).
pub fn manifest_of(data: &[u8]) -> Manifest {
    let mut b = ManifestBuilder::new(data.len() as u64);
    b.update(data);
    // The builder was fed exactly `data.len()` bytes, and a slice in memory
    // is far below the 4 TiB limit.
    #[allow(clippy::expect_used)]
    b.finish().expect("length matches by construction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_value_is_proven_against_the_file_hash_alone() {
        for size in [0u64, 100, 16 * 1024, 16 * 1024 + 1, 5 * 16 * 1024 + 7, 4096 * 16 * 1024 + 1] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 1000) as u8).collect();
            let m = manifest_of(&data);
            for index in [0, m.block_count() / 2, m.block_count() - 1] {
                let proof = m.proof(index).unwrap();
                let cv = m.cvs()[index as usize];
                assert!(verify_proof(size, m.root(), index, &cv, &proof), "size {size} block {index}");
                let mut wrong = cv;
                wrong[0] ^= 1;
                assert!(!verify_proof(size, m.root(), index, &wrong, &proof), "a wrong value");
                if let Some(first) = proof.first() {
                    let mut bad = proof.clone();
                    bad[0] = [first[0] ^ 1; 32];
                    assert!(!verify_proof(size, m.root(), index, &cv, &bad), "a wrong proof");
                }
            }
            assert!(m.proof(m.block_count()).is_none());
        }
    }
    use proptest::prelude::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ (i >> 10) as u8)).collect()
    }

    #[test]
    fn block_sizes() {
        assert_eq!(block_size_for(0), MIN_BLOCK);
        assert_eq!(block_size_for(64 << 20), MIN_BLOCK);
        assert_eq!(block_size_for((64 << 20) + 1), 32 * 1024);
        assert_eq!(block_size_for(1 << 30), 256 * 1024);
        assert_eq!(block_size_for(16 << 30), MAX_BLOCK);
        assert_eq!(block_size_for(1 << 40), MAX_BLOCK);
        assert_eq!(block_count(0, MIN_BLOCK), 1);
        assert_eq!(block_count(1 << 30, 256 * 1024), 4096);
    }

    #[test]
    fn root_matches_blake3_at_boundaries() {
        let bs = MIN_BLOCK as usize;
        for len in [0, 1, 1024, 1025, bs - 1, bs, bs + 1, 2 * bs, 3 * bs + 7, 5 * bs, 17 * bs - 1] {
            let d = data(len, 7);
            let m = manifest_of(&d);
            assert_eq!(m.root(), Hash::of(&d), "len {len}");
            for i in 0..m.block_count() {
                let r = m.block_range(i);
                assert!(m.verify_block(i, &d[r.start as usize..r.end as usize]), "len {len} block {i}");
            }
            let again = Manifest::from_parts(m.size(), m.block_size(), m.cvs().to_vec(), m.root());
            assert_eq!(again.as_ref(), Ok(&m));
        }
    }

    #[test]
    fn refuses_tampering() {
        let d = data(5 * MIN_BLOCK as usize + 3, 1);
        let m = manifest_of(&d);
        let mut cvs = m.cvs().to_vec();
        cvs[2][0] ^= 1;
        assert_eq!(
            Manifest::from_parts(m.size(), m.block_size(), cvs, m.root()),
            Err(ManifestError::RootMismatch(m.root()))
        );
        assert!(matches!(
            Manifest::from_parts(m.size(), m.block_size(), m.cvs()[1..].to_vec(), m.root()),
            Err(ManifestError::BlockCount { got: 5, want: 6 })
        ));
        assert!(matches!(
            Manifest::from_parts(m.size(), 2 * m.block_size(), m.cvs().to_vec(), m.root()),
            Err(ManifestError::BlockSize { .. })
        ));
        let mut bad = d[..MIN_BLOCK as usize].to_vec();
        bad[100] ^= 0xff;
        assert!(!m.verify_block(0, &bad));
        // The right bytes at the wrong position are not the block.
        assert!(!m.verify_block(1, &d[..MIN_BLOCK as usize]));
        assert!(!m.verify_block(99, &d[..MIN_BLOCK as usize]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_split_gives_blake3(len in 0usize..300_000, seed: u8, cuts in proptest::collection::vec(1usize..70_000, 0..8)) {
            let d = data(len, seed);
            let mut b = ManifestBuilder::new(len as u64);
            let mut rest = &d[..];
            for c in cuts {
                let c = c.min(rest.len());
                b.update(&rest[..c]);
                rest = &rest[c..];
            }
            b.update(rest);
            let m = b.finish().unwrap();
            prop_assert_eq!(m.root(), Hash::of(&d));
            prop_assert!(Manifest::from_parts(m.size(), m.block_size(), m.cvs().to_vec(), m.root()).is_ok());
        }
    }
}
