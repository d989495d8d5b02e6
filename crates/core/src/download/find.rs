//! Finding more sources while a download runs: the index, asked again when
//! the download is short of sources, at growing intervals.
//!
//! A crowd larger than a seed's places is told "busy" by it; the peers it
//! turned away find the partial sources that the index learned of since
//! they first asked, and the seed again once it has room.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::SourceSpec;
use crate::hash::Hash;
use crate::runtime::Time;

/// Where a download finds more sources while it runs (the index).
pub trait Finder: Send + Sync {
    /// Peers that hold `hash`, whole or in part. A question that fails
    /// finds nobody: a download never fails for it.
    fn find(&self, hash: Hash) -> Pin<Box<dyn Future<Output = Vec<SourceSpec>> + Send + '_>>;
}

/// The first wait before asking again; it doubles after each answer.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two questions.
const LONGEST: Duration = Duration::from_secs(30);
/// A download with fewer sources running than this asks for more.
pub(super) const FEW: usize = 8;

/// A question on its way.
type Asking<'a> = Pin<Box<dyn Future<Output = Vec<SourceSpec>> + Send + 'a>>;

/// When one download asks its [`Finder`], and the question on its way.
pub(super) struct Finding<'a> {
    finder: &'a dyn Finder,
    hash: Hash,
    every: Duration,
    next: Time,
    asking: Option<Asking<'a>>,
}

impl<'a> Finding<'a> {
    /// Starting at `now`: the first question comes [`FIRST`] later, when
    /// the sources given have had a moment to answer.
    pub(super) fn new(finder: &'a dyn Finder, hash: Hash, now: Time) -> Self {
        Self { finder, hash, every: FIRST, next: now + FIRST, asking: None }
    }

    /// Whether to ask now, with `running` sources: asks if so.
    pub(super) fn poll(&mut self, now: Time, running: usize) -> bool {
        if self.asking.is_some() || running >= FEW || now < self.next {
            return false;
        }
        self.asking = Some(self.finder.find(self.hash));
        true
    }

    /// A source is busy: the next question may come at once.
    pub(super) fn hurry(&mut self, now: Time) {
        self.next = self.next.min(now);
    }

    /// The last answer named peers not known before: while still short
    /// of sources, ask again soon rather than less and less often (in a
    /// crowd, each answer names another share of it).
    pub(super) fn found_new(&mut self, now: Time) {
        self.every = FIRST;
        self.next = self.next.min(now + FIRST);
    }

    /// When to look again, if a question may be due.
    pub(super) fn wake(&self, running: usize) -> Option<Time> {
        (self.asking.is_none() && running < FEW).then_some(self.next)
    }

    /// The answer to the question on its way (never, if none is).
    pub(super) async fn answer(&mut self, now: impl FnOnce() -> Time) -> Vec<SourceSpec> {
        let Some(asking) = self.asking.as_mut() else { return std::future::pending().await };
        let found = asking.await;
        self.asking = None;
        self.every = (self.every * 2).min(LONGEST);
        self.next = now() + self.every;
        found
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(AtomicUsize);

    impl Finder for Counting {
        fn find(&self, _: Hash) -> Pin<Box<dyn Future<Output = Vec<SourceSpec>> + Send + '_>> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { vec![SourceSpec { label: "p".into(), addr: "p:1".into() }] })
        }
    }

    fn t(ms: u64) -> Time {
        Time::from_epoch(Duration::from_millis(ms))
    }

    #[test]
    fn asks_when_short_of_sources_less_and_less_often() {
        let finder = Counting(AtomicUsize::new(0));
        let mut f = Finding::new(&finder, Hash::of(b"x"), t(0));
        assert!(!f.poll(t(500), 1), "the sources given answer first");
        assert!(!f.poll(t(1000), FEW), "enough sources: not asked");
        assert_eq!(f.wake(FEW), None);
        assert_eq!(f.wake(1), Some(t(1000)));
        assert!(f.poll(t(1000), 1));
        assert!(!f.poll(t(1001), 0), "one question at a time");
        let found = futures_lite::future::block_on(f.answer(|| t(1100)));
        assert_eq!(found.len(), 1);
        // The wait doubles after each answer, up to its longest.
        let mut at = 1100;
        for wait in [2000, 4000, 8000, 16_000, 30_000, 30_000] {
            assert_eq!(f.wake(0), Some(t(at + wait)));
            assert!(!f.poll(t(at + wait - 1), 0));
            assert!(f.poll(t(at + wait), 0));
            at += wait;
            futures_lite::future::block_on(f.answer(|| t(at)));
        }
        assert_eq!(finder.0.load(Ordering::Relaxed), 7);
        // A busy source: asked at once.
        f.hurry(t(at + 1));
        assert!(f.poll(t(at + 1), 0));
        // An answer with peers not known before: soon again.
        futures_lite::future::block_on(f.answer(|| t(at + 2)));
        assert_eq!(f.wake(0), Some(t(at + 2 + 30_000)));
        f.found_new(t(at + 2));
        assert_eq!(f.wake(0), Some(t(at + 2 + 1000)));
        assert!(f.poll(t(at + 1002), 0));
        futures_lite::future::block_on(f.answer(|| t(at + 1002)));
        assert_eq!(f.wake(0), Some(t(at + 1002 + 2000)), "then doubling again");
    }
}
