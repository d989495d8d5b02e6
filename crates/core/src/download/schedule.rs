//! Which byte ranges to ask which source for. A plain state machine: no
//! IO, no clock, tested on its own.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

/// Largest request.
pub(crate) const MAX_REQUEST: u64 = 4 << 20;

/// Hands out the ranges of a file to sources and takes back the ranges of
/// sources that fail.
#[derive(Debug)]
pub(crate) struct Schedule {
    pending: VecDeque<Range<u64>>,
    in_flight: HashMap<usize, Vec<Range<u64>>>,
    remaining: u64,
}

impl Schedule {
    /// Cuts `size` bytes into requests: whole blocks, at most
    /// [`MAX_REQUEST`], and small enough that each of `sources` gets
    /// several, so that every source takes part even in a small file.
    pub(crate) fn new(size: u64, block_size: u32, sources: usize) -> Self {
        let bs = u64::from(block_size);
        let share = size.div_ceil(4 * sources.max(1) as u64);
        let request = share.div_ceil(bs).max(1) * bs;
        let request = request.min(MAX_REQUEST.max(bs));
        let mut pending = VecDeque::new();
        let mut start = 0;
        while start < size {
            let end = (start + request).min(size);
            pending.push_back(start..end);
            start = end;
        }
        Self { pending, in_flight: HashMap::new(), remaining: size }
    }

    /// The next range for `source`, if any is left.
    pub(crate) fn take(&mut self, source: usize) -> Option<Range<u64>> {
        let r = self.pending.pop_front()?;
        self.in_flight.entry(source).or_default().push(r.clone());
        Some(r)
    }

    /// `source` delivered `range`.
    pub(crate) fn completed(&mut self, source: usize, range: &Range<u64>) {
        if let Some(list) = self.in_flight.get_mut(&source) {
            if let Some(i) = list.iter().position(|r| r == range) {
                list.swap_remove(i);
                self.remaining -= range.end - range.start;
            }
        }
    }

    /// `source` is gone: its unfinished ranges go back to the front.
    pub(crate) fn release(&mut self, source: usize) {
        if let Some(mut list) = self.in_flight.remove(&source) {
            list.sort_by_key(|r| std::cmp::Reverse(r.start));
            for r in list {
                self.pending.push_front(r);
            }
        }
    }

    /// Ranges `source` is working on.
    pub(crate) fn in_flight(&self, source: usize) -> usize {
        self.in_flight.get(&source).map_or(0, Vec::len)
    }

    /// Whether every byte has arrived.
    pub(crate) fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_file_once_and_spreads_over_sources() {
        let bs = 16 * 1024;
        let size = 10 * bs as u64 + 5;
        let mut s = Schedule::new(size, bs, 2);
        let mut got = Vec::new();
        let (mut a, mut b) = (0, 0);
        while let Some(r) = s.take(got.len() % 2) {
            assert_eq!(r.start % bs as u64, 0);
            if got.len() % 2 == 0 {
                a += 1
            } else {
                b += 1
            }
            got.push(r);
        }
        assert!(a >= 2 && b >= 2, "both sources get work: {a} {b}");
        assert_eq!(got.first().unwrap().start, 0);
        assert_eq!(got.last().unwrap().end, size);
        assert!(got.windows(2).all(|w| w[0].end == w[1].start));
        for (i, r) in got.iter().enumerate() {
            assert!(!s.is_done());
            s.completed(i % 2, r);
        }
        assert!(s.is_done());
    }

    #[test]
    fn failed_source_ranges_are_handed_out_again() {
        let mut s = Schedule::new(64 << 20, 1 << 20, 1);
        let r1 = s.take(0).unwrap();
        let r2 = s.take(0).unwrap();
        let r3 = s.take(1).unwrap();
        assert_eq!(r1.end - r1.start, MAX_REQUEST);
        s.completed(0, &r1);
        s.release(0);
        assert_eq!(s.in_flight(0), 0);
        assert_eq!(s.take(1), Some(r2));
        s.completed(1, &r3);
        // A completion reported twice (or by the wrong source) counts once.
        s.completed(1, &r3);
        s.completed(0, &r1);
        let mut left = 0;
        while let Some(r) = s.take(1) {
            left += r.end - r.start;
        }
        assert_eq!(left, (64 << 20) - 3 * MAX_REQUEST);
    }
}
