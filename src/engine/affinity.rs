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

use core::cell::Cell;

use crate::cache::Range;

std::thread_local! {
    /// The start and the length of the block this thread freed last (0, 0 if none or used).
    static LAST_FREED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Notes that this thread freed the block `addr..addr+len`.
#[inline]
pub(super) fn note_freed(addr: usize, len: usize) {
    // `try_with`: a free from a thread-local destructor after this one is gone just skips.
    let _ = LAST_FREED.try_with(|c| c.set((addr, len)));
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
    /// Takes the first `need` bytes of the cached range (or run) at `addr`, the start of the
    /// range this thread freed last, at `align`; the rest stays cached. If the range and the
    /// ranges after it are too short, the hint stays for [`Engine::take_own_extent`].
    pub(super) fn take_own(&self, need: usize, align: usize) -> Option<Range> {
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
    /// with the cached ranges after it: that range and those after it, merged, to be grown
    /// (`grow_smaller_range`), if the range alone is at least half the request (a thread
    /// churning buffers of similar sizes; a table doubling from a far smaller one keeps the
    /// layout it replays, `tests/engine_paths.rs`). Growing its own range keeps a thread's range
    /// and tail together; growing the largest smaller range instead took another thread's, whose
    /// next request then missed in turn (measured on `mixed_threads8`: 11% of the hints failed,
    /// and nearly every failure became a grown hit or a miss).
    pub(super) fn take_own_extent(&self, need: usize) -> Option<Range> {
        let (addr, len) = LAST_FREED.try_with(|c| c.replace((0, 0))).ok()?;
        if addr == 0 || len < need / 2 {
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
}
