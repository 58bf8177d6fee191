//! Maintenance: decay (ranges idle past the decay time are unmapped), the pressure signal (the
//! whole cache is unmapped while the kernel is reclaiming) and purge. Run by the background
//! thread (`crate::background`), or on the allocation path when that thread is off.

use core::ptr;
use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicBool, AtomicPtr};

use super::Engine;
use crate::cache::Range;
use crate::config::NEVER;
use crate::os::HUGE;
use crate::pressure;
use crate::stats::Counters;

/// The background thread's start function, registered by the allocator (`lib.rs`) before its
/// first engine is adopted. The thread (`crate::background`) sits above the engines, walks them
/// and imports this room; the engine never imports it back (issue #20): it only calls what was
/// registered here, and reads [`BACKGROUND_RUNNING`], which the thread sets.
static BACKGROUND_START: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());
/// Whether the background thread runs in this process (a `fork` child starts without it).
static BACKGROUND_RUNNING: AtomicBool = AtomicBool::new(false);

/// Registers the function that starts the background thread (idempotent, never blocks).
pub(crate) fn set_background_start(start: fn()) {
    BACKGROUND_START.store(start as *mut (), Relaxed);
}

/// Said by the background thread's owner: the thread runs (or, in a `fork` child, does not).
pub(crate) fn set_background_running(running: bool) {
    BACKGROUND_RUNNING.store(running, Relaxed);
}

/// Starts the background thread if a start function was registered.
pub(super) fn start_background() {
    let p = BACKGROUND_START.load(Relaxed);
    if !p.is_null() {
        // SAFETY: the only non-null value is a `fn()` stored by `set_background_start`.
        let start = unsafe { core::mem::transmute::<*mut (), fn()>(p) };
        start();
    }
}

/// Why a cached range leaves the cache; each reason has its own counter in `Stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Idle past the decay time.
    Decay,
    /// The pressure signal is on, or the kernel refused a mapping.
    Pressure,
    /// `purge()` or `reconfigure()`.
    Purge,
    /// A miss is about to map fresh pages (see `Engine::recycle`).
    Recycle,
    /// Usage is at or over the soft limit, or a fresh mapping would take it over.
    Limit,
    /// The cache's resident bytes are over its budget (`budget.rs`).
    Budget,
}

impl Engine {
    /// Runs decay and the pressure check from the allocation path when the background thread is
    /// off, at most once per interval.
    #[inline]
    pub(super) fn maintain_if_due(&self, now: u64) {
        if self.background_enabled() && BACKGROUND_RUNNING.load(Relaxed) {
            return;
        }
        let last = self.last_maintenance_ms.load(Relaxed);
        if now.saturating_sub(last) < pressure::READ_INTERVAL_MS {
            return;
        }
        if self
            .last_maintenance_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
        {
            self.maintain(now);
        }
    }

    /// Releases ranges idle past the decay time, and the whole cache while pressure is on.
    /// Returns when the next cached range will be due for decay, if any.
    pub(crate) fn maintain(&self, now: u64) -> Option<u64> {
        if self.cache.is_empty() {
            return None;
        }
        self.enforce_limit(0, now);
        if self.pressure_on(now) {
            self.release_cache(Why::Pressure);
            return None;
        }
        let decay = self.decay();
        if decay == NEVER {
            return None;
        }
        let mut next: Option<u64> = None;
        self.cache.drain(
            |r| {
                let due = r.since_ms.saturating_add(decay);
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
                due <= now
            },
            |r| {
                self.evict(r, Why::Decay);
            },
        );
        next
    }

    /// Whether the pressure signal is on (reads it at most every few milliseconds).
    pub(crate) fn pressure_on(&self, now: u64) -> bool {
        let on = self.pressure.is_on(
            self.pressure_path(),
            self.pressure_threshold.load(Relaxed),
            now,
        );
        self.counters.pressure_on.store(on as u64, Relaxed);
        on
    }

    /// Releases every cached range now.
    pub(crate) fn purge(&self) {
        self.release_cache(Why::Purge);
    }

    /// Releases every cached range, counting it under `why`.
    pub(super) fn release_cache(&self, why: Why) {
        self.cache.drain(
            |_| true,
            |r| {
                self.evict(r, why);
            },
        );
    }

    /// Unmaps a range taken out of the cache, counting it under `why` (its pages are released
    /// either way). Returns false if the kernel refused the unmap and the range went back to the
    /// cache as zero pages (see `unmap_range`): a caller looping until the cache shrinks must
    /// stop then.
    pub(super) fn evict(&self, r: Range, why: Why) -> bool {
        let c = &self.counters;
        let counter = match why {
            Why::Decay => &c.decay_releases,
            Why::Pressure => &c.pressure_releases,
            Why::Purge => &c.purge_releases,
            Why::Recycle => &c.recycle_releases,
            Why::Limit => &c.limit_releases,
            Why::Budget => &c.budget_releases,
        };
        Counters::add(counter, 1);
        self.unmap_range(&r)
    }
}

/// The one loop behind recycling, the cache's budget and the soft limit (issue #20): while
/// `excess(released)` says that bytes must still go (`released`: bytes given back so far), takes
/// the oldest resident cached range (`take`: from one engine or from any, with the engine that
/// held it) and gives it back, counted under `why` by that engine. With `split`, only what must
/// go of a bigger range goes: its end, cut at a 2 MiB boundary (no huge page is split), while its
/// head stays cached. Stops when nothing resident is left, or when a range could not be unmapped
/// (it is back in the cache as zero pages: taking it again would not help). Returns `released`.
pub(super) fn evict_oldest_resident<'e>(
    why: Why,
    split: bool,
    mut take: impl FnMut() -> Option<(&'e Engine, Range)>,
    mut excess: impl FnMut(usize) -> usize,
) -> usize {
    let mut released = 0;
    loop {
        let must_go = excess(released);
        if must_go == 0 {
            return released;
        }
        let Some((e, r)) = take() else {
            return released;
        };
        let keep_end = (r.addr + r.len - must_go.min(r.len)) & !(HUGE - 1);
        let gone = if split && keep_end > r.addr {
            e.put_back(Range {
                len: keep_end - r.addr,
                ..r
            });
            Range {
                addr: keep_end,
                len: r.addr + r.len - keep_end,
                ..r
            }
        } else {
            r
        };
        released += gone.len;
        if !e.evict(gone, why) {
            return released;
        }
    }
}
