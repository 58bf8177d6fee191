//! The cache's byte counts: kept by the cache itself, next to the slot transitions they follow
//! (see invariant 4 in the module documentation).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Cache, Pages};

/// The cache's byte counts at one moment (each field read on its own, like every `Stats` field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CachedBytes {
    /// Every cached range, whatever its pages hold.
    pub(crate) total: u64,
    /// Of `total`, ranges whose pages are [`Pages::Resident`].
    pub(crate) resident: u64,
    /// Of `total`, ranges whose pages are [`Pages::Lazy`].
    pub(crate) lazy: u64,
}

/// The cached bytes by [`Pages`] (index: [`Pages::index`]), one relaxed read-modify-write per
/// change: the total is their sum. On a cache line of its own, so that counting does not make
/// the slots' lines bounce between threads.
#[repr(align(64))]
pub(super) struct Counts([AtomicU64; 3]);

impl Counts {
    pub(super) const fn new() -> Counts {
        Counts([const { AtomicU64::new(0) }; 3])
    }

    pub(super) fn add(&self, pages: Pages, len: usize) {
        self.0[pages.index()].fetch_add(len as u64, Relaxed);
    }

    pub(super) fn sub(&self, pages: Pages, len: usize) {
        let before = self.0[pages.index()].fetch_sub(len as u64, Relaxed);
        debug_assert!(before >= len as u64, "cached {pages:?} bytes underflow");
    }

    pub(super) fn get(&self, pages: Pages) -> u64 {
        self.0[pages.index()].load(Relaxed)
    }

    /// Sets the counts to `sums` (by [`Pages::index`]), for a cache no other thread uses (see
    /// `Cache::reset_busy`).
    pub(super) fn set(&self, sums: [u64; 3]) {
        for (count, sum) in self.0.iter().zip(sums) {
            count.store(sum, Relaxed);
        }
    }
}

impl Cache {
    /// The bytes cached now (see invariant 4: exact when no thread is inside the cache, else at
    /// most the ranges in flight above what the slots hold).
    pub(crate) fn bytes(&self) -> CachedBytes {
        let resident = self.counts.get(Pages::Resident);
        let lazy = self.counts.get(Pages::Lazy);
        CachedBytes {
            total: resident + lazy + self.counts.get(Pages::Zero),
            resident,
            lazy,
        }
    }
}
