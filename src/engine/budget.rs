//! The cache's budget: how many resident bytes the cache may hold, following the program's live
//! large bytes rather than a fixed size (issue #12).
//!
//! A cached range whose pages are resident (retained or lazily freed) is RSS the program does
//! not use. What matters to an operator is the peak: the cache may hold pages only as long as
//! the process stays within a share of the most it has recently had live. So the budget is
//!
//! ```text
//! budget = max(BUDGET_FLOOR, peak + peak / BUDGET_SHARE_DIV - live)
//! ```
//!
//! where `live` is the bytes in live large blocks and `peak` the most of them live during the
//! last one to two [`PEAK_WINDOW_MS`]. While the program is at its peak the cache holds at most
//! a tenth of it (Go's scavenger keeps retained memory to about 10% over the heap goal); below
//! the peak, what the program freed may stay cached up to that same total, because holding it
//! does not raise the peak: a program that frees its one 64 MiB buffer and allocates it again
//! keeps it, one that has moved on to other sizes gives the old ones back. `PAGEWISE_CACHE`
//! still caps the cache as a whole, and zero pages (dropped, or never touched) cost no RSS and
//! do not count.
//!
//! Ranges go oldest first ([`Why::Budget`]), at a free that takes the cache over the budget and
//! when a miss has mapped fresh pages and moved what it could into them, before anything touches
//! them (counting the new block as live already, so the kernel hands the released pages to it
//! and the process does not hold both). While threads take turns, a range freed in the last
//! 100 ms is held for the thread that will take it back (`Engine::budget_freed_by`): the peak of
//! the live bytes misses the blocks of threads switched out between a free and an allocation.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::maintain::evict_oldest_resident;
use super::{Engine, Why};

/// The budget's floor: what may always stay cached, whatever the live bytes (two huge pages).
/// Small on purpose: a program that frees and allocates again is covered by the peak term, and
/// one that always holds nearly its peak gets only this beside its tenth. 8 threads churning
/// 4–5 MiB buffers (`mixed_threads8` in the report) hold about 36 MiB, and issue #12's target,
/// 1.10x jemalloc's peak + 8 MiB, leaves about 4 MiB for the cache there.
const BUDGET_FLOOR: u64 = 4 << 20;
/// The share of the recent peak the cache may add to it: `1 / BUDGET_SHARE_DIV`.
const BUDGET_SHARE_DIV: u64 = 10;
/// The window of the recent peak: the peak is the most live during the current window and the
/// one before, so a program's phase of larger blocks is remembered for one to two windows. As
/// long as the default decay time (ranges idle that long go anyway).
pub(super) const PEAK_WINDOW_MS: u64 = 1000;

/// The recent peak of the live large bytes, as a max over a sliding window of two halves.
pub(super) struct Peak {
    /// The most live during the current window.
    current: AtomicU64,
    /// The most live during the window before.
    previous: AtomicU64,
    /// When the current window started (`os::now_ms`).
    since_ms: AtomicU64,
}

impl Peak {
    pub(super) const fn new() -> Peak {
        Peak {
            current: AtomicU64::new(0),
            previous: AtomicU64::new(0),
            since_ms: AtomicU64::new(0),
        }
    }

    /// Forgets the peak (a new owner adopts the engine).
    pub(super) fn reset(&self) {
        self.current.store(0, Relaxed);
        self.previous.store(0, Relaxed);
        self.since_ms.store(0, Relaxed);
    }

    /// Notes that `live` bytes are live now.
    #[inline]
    fn note(&self, live: u64) {
        self.current.fetch_max(live, Relaxed);
    }

    /// The most live in the last one to two windows, `live` included; starts a new window if
    /// the current one is over (the thread that wins the swap of `since_ms` moves it).
    fn get(&self, live: u64, now: u64) -> u64 {
        let since = self.since_ms.load(Relaxed);
        if now.saturating_sub(since) >= PEAK_WINDOW_MS
            && self
                .since_ms
                .compare_exchange(since, now, Relaxed, Relaxed)
                .is_ok()
        {
            let ended = self.current.swap(live, Relaxed);
            self.previous.store(ended, Relaxed);
        }
        self.current
            .load(Relaxed)
            .max(self.previous.load(Relaxed))
            .max(live)
    }
}

impl Engine {
    /// Adds `n` bytes to the live large bytes (a new block, or one grown) and to the peak.
    #[inline]
    pub(super) fn add_live(&self, n: u64) {
        let live = self.counters.live_bytes.fetch_add(n, Relaxed) + n;
        self.peak.note(live);
    }

    /// The resident bytes the cache may hold once `coming` more bytes are live (see the module
    /// documentation).
    pub(super) fn cache_budget(&self, coming: u64, now: u64) -> u64 {
        let live = self.counters.live_bytes.load(Relaxed) + coming;
        let peak = self.peak.get(live, now);
        (peak + peak / BUDGET_SHARE_DIV)
            .saturating_sub(live)
            .max(BUDGET_FLOOR)
    }

    /// Gives back resident cached ranges, oldest first, until the cache is within its budget
    /// once `coming` more bytes are live. A range bigger than what must go is split: its end
    /// goes back to the kernel, cut at a 2 MiB boundary (so no huge page is split), and its head
    /// stays cached, so the budget is used, not left idle by giving back a whole 20 MiB range to
    /// make room for one more.
    pub(super) fn fit_budget(&self, coming: u64, now: u64) {
        let budget = self.cache_budget(coming, now);
        let freed_by = self.budget_freed_by(now);
        let oldest = || Some(self).zip(self.cache.take_oldest_resident(freed_by));
        let over = |_| {
            let cached = self.cache.bytes();
            (cached.resident + cached.lazy).saturating_sub(budget) as usize
        };
        evict_oldest_resident(Why::Budget, true, oldest, over);
    }
}
