//! Thread affinity: a thread's next large allocation is served first from the range it freed
//! last, with the cached range that follows it, rather than by the cache's best fit (issue #20).
//!
//! Best fit hands a 4.2 MiB request the smallest range that fits, which is often the range
//! another thread has just freed, and the tail left when that range is carved lies next to a
//! block of another thread. With 8 threads each churning one 4–5 MiB buffer (`mixed_threads8`),
//! the ranges and their tails are shuffled between threads until a request finds no range and
//! no run long enough: a miss, a fresh mapping, and its pages faulted in and cleared by the
//! kernel (11% of the run's profile in `clear_page_erms`). A thread that takes back its own range
//! finds its tail still behind it (the tail was carved from its own block), so the range it holds
//! grows to the largest size it asks for and stays there, as glibc's per-thread arenas do.
//!
//! Only an address and a length are kept per thread, in a `const`-initialised thread-local of
//! plain integers: no destructor is registered, so no allocation, and a thread that exits leaves
//! nothing behind (the range itself stays in the shared cache, visible to the budget, decay and
//! purge). A stale hint is harmless: the range at that address is taken only if it is cached.
//!
//! Affinity applies only while more than one thread frees large blocks on the engine
//! ([`Sharing`]). A single thread has no one to lose its ranges to, and best fit then keeps the
//! cache leaner: with affinity on one thread, `random`'s peak went from 216.2 to 232.0 MiB and
//! `malloc_large`'s from 376.4 to 378.3 (medians of 3, side by side with the library before
//! this issue); without it both are back at 216.3 and 376.1, and the threaded rows unchanged.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::cache::Range;
use crate::map_count;
use crate::os::{self, HUGE};
use crate::stats::Counters;

std::thread_local! {
    /// The start and the length of the block this thread freed last (0, 0 if none or used).
    static LAST_FREED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// How long after two threads last freed on an engine in turn affinity stays on: a thread that
/// frees once a second still has its range kept for it.
const SHARED_MS: u64 = 1000;
/// While threads take turns, how long a range stays held from the cache's budget after it was
/// freed (see [`Engine::budget_freed_by`](super::Engine::budget_freed_by)). Longer than a thread
/// that has been switched out waits to run again (with more threads than cores, the others'
/// slices of a few ms each), shorter than the 1 s decay, and the idle time after which a miss may
/// recycle a range (`RECYCLE_IDLE_MS`). On `mixed_threads8`, 30 ms still left 6–16 MB of budget
/// releases per run, 100 ms none to 0.3 MB.
const HOLD_MS: u64 = 100;

/// Whether more than one thread has lately been freeing large blocks on an engine.
pub(super) struct Sharing {
    /// The thread that freed last: the address of its [`LAST_FREED`] (unique among live threads).
    last: AtomicUsize,
    /// When a thread freed after another one did (`os::now_ms`; 0: never).
    since_ms: AtomicU64,
}

impl Sharing {
    pub(super) const fn new() -> Sharing {
        Sharing {
            last: AtomicUsize::new(0),
            since_ms: AtomicU64::new(0),
        }
    }

    /// Forgets the threads seen (a new owner adopts the engine).
    pub(super) fn reset(&self) {
        self.last.store(0, Relaxed);
        self.since_ms.store(0, Relaxed);
    }

    /// Notes that the calling thread freed a block at `now`. One load when the same thread frees
    /// again; a swap and a store when threads take turns.
    #[inline]
    fn note(&self, now: u64) {
        let Ok(me) = LAST_FREED.try_with(|c| c as *const _ as usize) else {
            return;
        };
        if self.last.load(Relaxed) != me && self.last.swap(me, Relaxed) != 0 {
            self.since_ms.store(now, Relaxed);
        }
    }

    /// Whether two threads freed in turn during the last [`SHARED_MS`].
    #[inline]
    fn shared(&self, now: u64) -> bool {
        let since = self.since_ms.load(Relaxed);
        since != 0 && now.saturating_sub(since) < SHARED_MS
    }
}

/// The range this thread freed last, if a block of `need` bytes at `align` should be carved from
/// its start. Not for a request under half its length: best fit keeps a big range whole for big
/// requests.
#[inline]
fn own_range(need: usize, align: usize) -> Option<usize> {
    let (addr, len) = LAST_FREED.try_with(Cell::get).ok()?;
    (addr != 0 && addr % align == 0 && need >= len / 2).then_some(addr)
}

/// Forgets the range this thread freed last: it is used, or gone.
#[inline]
fn forget() -> usize {
    LAST_FREED.try_with(|c| c.replace((0, 0)).0).unwrap_or(0)
}

impl super::Engine {
    /// Notes that this thread freed the block `addr..addr+len` at `now`.
    #[inline]
    pub(super) fn note_freed(&self, addr: usize, len: usize, now: u64) {
        // `try_with`: a free from a thread-local destructor after this one is gone just skips.
        let _ = LAST_FREED.try_with(|c| c.set((addr, len)));
        self.sharing.note(now);
    }

    /// The latest time (`os::now_ms`) a resident range may have been freed at for the cache's
    /// budget to give it back now: any time while one thread frees, and [`HOLD_MS`] ago while
    /// threads take turns. The budget follows the peak of the live bytes, and with more threads
    /// than cores many threads sit switched out between their free and their next allocation:
    /// on `mixed_threads8` (8 threads, 2 cores) no more than 10–18 MiB of the 8 threads' 4–5 MiB
    /// blocks were ever live at once, so the budget (a tenth over that) kept giving back the
    /// ranges of the threads waiting to run, which each of them then faulted in again when it
    /// ran: 50–170 MB of releases and 1,600–9,000 faults per run, for no lower peak (42.2–43.4
    /// MiB with them, 42.3–43.1 without, the 8 ranges being there at once either way). Held,
    /// 0–0.3 MB and 80–380 faults; a range its thread does not take back within [`HOLD_MS`]
    /// goes at the next free or miss as before.
    #[inline]
    pub(super) fn budget_freed_by(&self, now: u64) -> u64 {
        if self.sharing.shared(now) {
            now.saturating_sub(HOLD_MS)
        } else {
            u64::MAX
        }
    }

    /// Takes the first `need` bytes of the cached range (or run) at `addr`, the start of the
    /// range this thread freed last, at `align`; the rest stays cached. If the range and the
    /// ranges after it are too short, the hint stays for [`Engine::take_own_extent`].
    pub(super) fn take_own(&self, need: usize, align: usize, now: u64) -> Option<Range> {
        if !self.sharing.shared(now) {
            return None;
        }
        let addr = own_range(need, align)?;
        let (pages, rest) = self.cache.take_at(addr, need)?;
        forget();
        if let Some(rest) = rest {
            self.put_back(rest);
        }
        Some(Range {
            addr,
            len: need,
            pages,
            since_ms: 0, // unused: the range becomes a block
        })
    }

    /// For a request of `need` bytes that the range this thread freed last does not fit even
    /// with the cached ranges after it: that range and those after it, merged, to be grown at
    /// `align` (`grow_smaller_range`), if the range alone is at least half the request (a thread
    /// churning buffers of similar sizes; a table doubling from a far smaller one keeps the
    /// layout it replays, `tests/engine_paths.rs`). Growing its own range keeps a thread's range
    /// and tail together; growing the largest smaller range instead took another thread's, whose
    /// next request then missed in turn (measured on `mixed_threads8`: 11% of the hints failed,
    /// and nearly every failure became a grown hit or a miss).
    pub(super) fn take_own_extent(&self, need: usize, align: usize, now: u64) -> Option<Range> {
        if !self.sharing.shared(now) {
            return None;
        }
        let (addr, len) = LAST_FREED.try_with(|c| c.replace((0, 0))).ok()?;
        if addr == 0 || addr % align != 0 || len < need / 2 {
            return None;
        }
        let mut r = self.cache.take_starting_at(addr)?;
        while r.len < need {
            let Some(next) = self.cache.take_starting_at(r.addr + r.len) else {
                break;
            };
            if next.pages != r.pages {
                self.put_back(next);
                break;
            }
            r.len += next.len;
        }
        if r.len >= need || r.len < need / 2 {
            self.put_back(r); // another thread freed a neighbour meanwhile, or replaced it
            return None;
        }
        Some(r)
    }

    /// Grows this thread's own range `r`, just taken out of the cache, to `len` bytes where it
    /// lies: fresh pages mapped right after it (`MAP_FIXED_NOREPLACE`), if that address space is
    /// free. The block is then two mappings or more, which the issue allows (`tests/map_count.rs`
    /// counts them). `mremap` cannot do this for a range whose pages were moved in from other
    /// ranges (several mappings: `EFAULT`), which is most ranges under many threads: each such
    /// failure was a miss that mapped a block afresh and moved other threads' ranges into it
    /// (on `mixed_threads8`, 180 failed `mremap` calls in one run of 2,880 allocations).
    /// `None` if the address space after `r` is taken.
    pub(super) fn map_tail(&self, r: &Range, len: usize) -> Option<*mut u8> {
        if !map_count::may_map() {
            return None; // a mapping more: not near vm.max_map_count
        }
        let (end, extra) = (r.addr + r.len, len - r.len);
        let c = &self.counters;
        Counters::add(&c.mmap_calls, 1);
        let q = os::map_at(end, extra).ok()?;
        if q as usize != end {
            // A kernel before 4.17 took the address as a hint only.
            // SAFETY: q..q+extra was just mapped for us and is not handed out.
            unsafe { self.unmap_part(q, extra) };
            return None;
        }
        map_count::note_mapped();
        let prefetch = self.prefetch();
        if prefetch.huge_pages() && len >= HUGE {
            Counters::add(&c.madvise_calls, 1);
            // SAFETY: q..q+extra was just mapped for this block; the advice only changes faulting.
            let _ = unsafe { os::advise(q, extra, libc::MADV_HUGEPAGE) };
        }
        if prefetch.populates() {
            Counters::add(&c.populate_calls, 1);
            // SAFETY: as above; populating keeps the (zero) contents.
            unsafe { os::populate(q, extra) };
        }
        // SAFETY: as above; naming only labels the VMA.
        unsafe { os::name(q, extra) };
        Some(r.addr as *mut u8)
    }
}
