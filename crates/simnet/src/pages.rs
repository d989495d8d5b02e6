//! File content in memory, as pages shared by every file and every peer of
//! a simulation that holds the same bytes.
//!
//! A crowd of peers downloading one file would otherwise hold a copy each
//! (200 peers and a 16 MiB file: 3.2 GB, twice that with the copies that
//! model what a sync made durable). Pages are interned by their BLAKE3
//! hash, so each distinct page is in memory once, and a snapshot of a
//! file is a copy of its page list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Bytes per page: the smallest block of a manifest, so the engine's
/// verified writes cover whole pages.
const PAGE: usize = 16 * 1024;

/// The interned pages of one simulation. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct PagePool(Arc<Mutex<Interned>>);

#[derive(Debug, Default)]
struct Interned {
    pages: HashMap<[u8; 32], Weak<[u8]>>,
    /// Size at which dead entries are swept out next.
    sweep_at: usize,
}

impl PagePool {
    /// The shared page holding exactly `bytes`.
    fn intern(&self, bytes: &[u8]) -> Arc<[u8]> {
        let key = *blake3::hash(bytes).as_bytes();
        let mut i = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(page) = i.pages.get(&key).and_then(Weak::upgrade) {
            return page;
        }
        let page: Arc<[u8]> = Arc::from(bytes);
        i.pages.insert(key, Arc::downgrade(&page));
        if i.pages.len() >= i.sweep_at {
            i.pages.retain(|_, p| p.strong_count() > 0);
            i.sweep_at = (2 * i.pages.len()).max(4096);
        }
        page
    }
}

/// The bytes of one file.
#[derive(Debug, Clone, Default)]
pub struct Content {
    pages: Vec<Arc<[u8]>>,
    len: usize,
}

impl Content {
    /// `data`, in pages of `pool`.
    pub fn new(data: &[u8], pool: &PagePool) -> Self {
        Self { pages: data.chunks(PAGE).map(|p| pool.intern(p)).collect(), len: data.len() }
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize, pool: &PagePool) -> Self {
        let zero = vec![0u8; PAGE.min(len)];
        let full = pool.intern(&zero);
        let mut pages = vec![full; len / PAGE];
        if !len.is_multiple_of(PAGE) {
            pages.push(pool.intern(&zero[..len % PAGE]));
        }
        Self { pages, len }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `start..end`, appended to `out`; `None` past the end.
    pub fn read_into(&self, start: usize, end: usize, out: &mut Vec<u8>) -> Option<()> {
        if start > end || end > self.len {
            return None;
        }
        let mut pos = start;
        while pos < end {
            let page = &self.pages[pos / PAGE];
            let from = pos % PAGE;
            let to = (end - pos + from).min(page.len());
            out.extend_from_slice(&page[from..to]);
            pos += to - from;
        }
        Some(())
    }

    /// Every byte, in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for p in &self.pages {
            out.extend_from_slice(p);
        }
        out
    }

    /// Writes `data` at `start`; `None` past the end.
    pub fn write(&mut self, start: usize, data: &[u8], pool: &PagePool) -> Option<()> {
        let end = start.checked_add(data.len()).filter(|&e| e <= self.len)?;
        let mut pos = start;
        while pos < end {
            let index = pos / PAGE;
            let from = pos % PAGE;
            let page = &self.pages[index];
            let to = (end - pos + from).min(page.len());
            let src = &data[pos - start..pos - start + (to - from)];
            self.pages[index] = if from == 0 && to == page.len() {
                pool.intern(src)
            } else {
                let mut bytes = page.to_vec();
                bytes[from..to].copy_from_slice(src);
                pool.intern(&bytes)
            };
            pos += to - from;
        }
        Some(())
    }

    /// Whether both hold the same bytes, known from shared pages without
    /// reading them where they are shared.
    pub fn same_as(&self, other: &Content) -> bool {
        self.len == other.len && self.pages.iter().zip(&other.pages).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_shared_and_writes_land_where_they_should() {
        let pool = PagePool::default();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let a = Content::new(&data, &pool);
        let mut b = Content::zeroed(data.len(), &pool);
        assert_eq!(b.to_vec(), vec![0; data.len()]);
        // In odd pieces, crossing page edges.
        for (s, e) in [(0, 5), (5, 40_000), (40_000, 40_001), (40_001, 99_999), (99_999, 100_000)] {
            b.write(s, &data[s..e], &pool).unwrap();
        }
        assert_eq!(b.to_vec(), data);
        assert!(b.same_as(&a));
        assert!(a.pages.iter().zip(&b.pages).all(|(x, y)| Arc::ptr_eq(x, y)), "one copy of each page");
        let mut part = Vec::new();
        a.read_into(16_380, 32_800, &mut part).unwrap();
        assert_eq!(part, &data[16_380..32_800]);
        assert!(a.read_into(0, 100_001, &mut part).is_none());
        assert!(b.write(99_999, b"xy", &pool).is_none());
        b.write(7, b"!", &pool).unwrap();
        assert!(!b.same_as(&a));
        assert_eq!(Content::zeroed(0, &pool).to_vec(), Vec::<u8>::new());
    }
}
