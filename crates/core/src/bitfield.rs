//! A set of blocks of one file: which a peer has, which are in place.

/// One bit per block, least significant first (bit `i % 8` of byte `i / 8`
/// for block `i`), as [`Message::Holding`](crate::protocol::Message::Holding)
/// carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bits: Vec<u8>,
    count: u64,
    ones: u64,
}

impl Bitfield {
    /// No block of `count`.
    pub fn new(count: u64) -> Self {
        Self { bits: vec![0; count.div_ceil(8) as usize], count, ones: 0 }
    }

    /// Every block of `count`.
    pub fn full(count: u64) -> Self {
        let mut b = Self::new(count);
        for i in 0..count {
            b.set(i);
        }
        b
    }

    /// The blocks `bytes` names, for a file of `count` blocks; `None` if it
    /// is not that file's length (bits past the last block are ignored).
    pub fn from_bytes(bytes: &[u8], count: u64) -> Option<Self> {
        if bytes.len() as u64 != count.div_ceil(8) {
            return None;
        }
        let mut b = Self::new(count);
        for i in 0..count {
            if bytes[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                b.set(i);
            }
        }
        Some(b)
    }

    /// Whether some block is in both sets (of the same file).
    pub fn intersects(&self, other: &Bitfield) -> bool {
        self.first_common(other).is_some()
    }

    /// The first block in both sets (of the same file), if any.
    pub fn first_common(&self, other: &Bitfield) -> Option<u64> {
        if self.ones == 0 || other.ones == 0 {
            return None;
        }
        // Eight bytes at a time: a crowd's downloads ask this very often.
        let word = |c: &[u8]| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        };
        let found = self.bits.chunks(8).zip(other.bits.chunks(8)).enumerate().find_map(|(i, (x, y))| {
            let common = word(x) & word(y);
            (common != 0).then(|| i as u64 * 64 + u64::from(common.trailing_zeros()))
        });
        found.filter(|&b| b < self.count)
    }

    /// Adds block `i`; whether it was new.
    pub fn set(&mut self, i: u64) -> bool {
        if i >= self.count || self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] |= 1 << (i % 8);
        self.ones += 1;
        true
    }

    /// Takes block `i` out of the set; returns whether it was in.
    pub fn unset(&mut self, i: u64) -> bool {
        if !self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] &= !(1 << (i % 8));
        self.ones -= 1;
        true
    }

    /// Whether block `i` is in the set.
    pub fn get(&self, i: u64) -> bool {
        i < self.count && self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Whether any block of `range` is in the set (a byte at a time where
    /// the range covers whole bytes).
    pub fn any_in(&self, range: std::ops::Range<u64>) -> bool {
        let (mut i, end) = (range.start, range.end.min(self.count));
        if self.ones == 0 {
            return false;
        }
        while i < end {
            if i % 8 == 0 && i + 8 <= end {
                if self.bits[(i / 8) as usize] != 0 {
                    return true;
                }
                i += 8;
            } else {
                if self.get(i) {
                    return true;
                }
                i += 1;
            }
        }
        false
    }

    /// Blocks of the file.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Blocks in the set.
    pub fn ones(&self) -> u64 {
        self.ones
    }

    /// Whether every block is in the set.
    pub fn is_full(&self) -> bool {
        self.ones == self.count
    }

    /// The bits, as sent.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// The blocks in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.count).filter(|&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersects_and_first_common_find_a_common_block_anywhere() {
        for count in [1u64, 7, 8, 63, 64, 65, 200] {
            let mut a = Bitfield::new(count);
            let mut b = Bitfield::new(count);
            assert!(!a.intersects(&b));
            for i in 0..count {
                a.set(i);
                b.set(i);
                assert!(a.intersects(&b), "{count} {i}");
                assert_eq!(a.first_common(&b), Some(i), "{count} {i}");
                if i + 1 < count {
                    // A later common block does not hide the first.
                    a.set(count - 1);
                    b.set(count - 1);
                    assert_eq!(a.first_common(&b), Some(i), "{count} {i}");
                    a.unset(count - 1);
                    b.unset(count - 1);
                }
                b.unset(i);
                assert_eq!(a.first_common(&b), None, "{count} {i}");
                assert!(!a.intersects(&b), "{count} {i}");
                a.unset(i);
            }
        }
    }

    #[test]
    fn any_in_a_range() {
        let mut b = Bitfield::new(40);
        assert!(!b.any_in(0..40));
        b.set(21);
        for (range, want) in
            [(0..21, false), (0..22, true), (21..22, true), (22..40, false), (16..24, true), (8..16, false)]
        {
            assert_eq!(b.any_in(range.clone()), want, "{range:?}");
        }
        assert!(!b.any_in(30..100), "past the end is empty");
        assert!(Bitfield::full(40).any_in(39..40));
    }

    #[test]
    fn bits_round_trip_and_count() {
        let mut b = Bitfield::new(11);
        assert!(b.set(0) && b.set(10) && !b.set(10) && !b.set(11));
        assert_eq!((b.ones(), b.count(), b.is_full()), (2, 11, false));
        assert_eq!(b.as_bytes(), [0b0000_0001, 0b0000_0100]);
        let again = Bitfield::from_bytes(b.as_bytes(), 11).unwrap();
        assert_eq!(again, b);
        assert_eq!(again.iter().collect::<Vec<_>>(), [0, 10]);
        assert!(Bitfield::from_bytes(&[0], 11).is_none(), "wrong length");
        // Bits past the end are ignored.
        assert_eq!(Bitfield::from_bytes(&[0, 0xff], 11).unwrap().ones(), 3);
        assert!(Bitfield::full(11).is_full());
        assert!(Bitfield::full(0).is_full());
    }
}
