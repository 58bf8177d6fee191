//! Resizing a large block: in place (same mapping length, a shrink, or growth into the cached
//! range right after it), by moving its pages with `mremap`, or by copying.

use core::ptr;

use crate::cache::Pages;

use super::{map_len, Engine, Why};
use crate::os::{self, Errno, HUGE, PAGE};
use crate::stats::Counters;

impl Engine {
    /// Resizes a large block to another large size, moving pages rather than bytes.
    ///
    /// With `zeroed` (growth only: `Allocator::grow_zeroed`, feature `allocator-api2`), bytes
    /// `old_size..new_size` read zero. Only what may hold old bytes is cleared: the old block's
    /// slack past `old_size` (less than a page, which the block may have held data in before a
    /// shrink, or carried from a cached range), and pages taken from the cache unless they are
    /// zero pages; pages that `mremap` adds are fresh and are not touched. A copy into a new
    /// block gets it from `alloc(zeroed)`, which clears the new block's cached pages whole, the
    /// copied head included.
    ///
    /// # Safety
    /// `p` must be a live block of this engine allocated with `old_size` and `align`; `zeroed`
    /// only if `new_size >= old_size`.
    pub(crate) unsafe fn realloc(
        &self,
        p: *mut u8,
        old_size: usize,
        align: usize,
        new_size: usize,
        zeroed: bool,
    ) -> *mut u8 {
        let (Some(old_len), Some(new_len)) = (map_len(old_size), map_len(new_size)) else {
            return ptr::null_mut();
        };
        let c = &self.counters;
        Counters::add(&c.reallocs, 1);
        let addr = p as usize;
        // Clears `old_size..upto` of the block (a no-op unless zeroed; `upto` never passes
        // `new_size`, nor the bytes the block has at that point).
        let clear = |upto: usize| {
            let upto = upto.min(new_size);
            if zeroed && upto > old_size {
                // SAFETY: the block holds at least `upto` bytes here (its old mapping length,
                // or its new size once grown) and is ours (the caller's live block).
                unsafe { ptr::write_bytes(p.add(old_size), 0, upto - old_size) };
            }
        };
        if new_len == old_len {
            Counters::add(&c.in_place_reallocs, 1);
            clear(new_size);
            return p;
        }
        if new_len < old_len {
            // Shrink in place; the tail is freed like a block.
            Counters::add(&c.in_place_reallocs, 1);
            Counters::sub(&c.live_bytes, (old_len - new_len) as u64);
            self.release_range(addr + new_len, old_len - new_len, os::now_ms());
            return p;
        }
        let extra = new_len - old_len;
        // Grow into the cached range right after the block: no syscall, no copy.
        if let Some((pages, rest)) = self.cache.take_at(addr + old_len, extra) {
            if let Some(rest) = rest {
                self.put_back(rest);
            }
            Counters::add(&c.in_place_reallocs, 1);
            self.add_live(extra as u64);
            // A run is taken in one page state: zero pages need no clearing.
            clear(if pages == Pages::Zero {
                old_len
            } else {
                new_size
            });
            return p;
        }
        // SAFETY: the caller gives us the live block p..p+old_len.
        if let Some(q) = unsafe { self.grow_moving_pages(p, old_len, new_len, align) } {
            if zeroed {
                // Only the old slack: the tail `mremap` added is fresh zero pages.
                // SAFETY: q is the grown block, new_len >= old_len bytes, ours.
                unsafe { ptr::write_bytes(q.add(old_size), 0, old_len.min(new_size) - old_size) };
            }
            return q;
        }
        // No move: the block needs more than page alignment, spans two mappings (blocks can grow
        // in place across the boundary of two adjacent mappings), or memory is short. Copy.
        let q = self.alloc(new_size, align, zeroed);
        if !q.is_null() {
            Counters::add(&c.copied_reallocs, 1);
            // SAFETY: both blocks are live, distinct, and at least old_size long.
            unsafe {
                ptr::copy_nonoverlapping(p, q, old_size);
                self.free(p, old_size);
            }
        }
        q
    }

    /// Grows the live block `p..p+old_len` with [`Engine::grow_by_moving`], giving the cache back
    /// and trying once more if the kernel is short of memory (as `alloc` does: the cache must
    /// not be what makes the kernel say no). `None` if the block could not move.
    ///
    /// # Safety
    /// `p..p+old_len` is a live block of this engine.
    unsafe fn grow_moving_pages(
        &self,
        p: *mut u8,
        old_len: usize,
        new_len: usize,
        align: usize,
    ) -> Option<*mut u8> {
        // SAFETY: the caller gives us the live block p..p+old_len.
        let mut moved = unsafe { self.grow_by_moving(p, old_len, new_len, align) };
        if moved == Err(Errno(libc::ENOMEM)) && !self.cache.is_empty() {
            self.release_cache(Why::Pressure);
            // SAFETY: as above; a failed move left the block untouched.
            moved = unsafe { self.grow_by_moving(p, old_len, new_len, align) };
        }
        let q = moved.ok()?;
        Counters::add(&self.counters.mremaps, 1);
        self.add_live((new_len - old_len) as u64);
        Some(q)
    }

    /// Grows the range `p..p+old_len` to `new_len` bytes by moving its pages with
    /// `mremap(MREMAP_MAYMOVE)` (never copying). The new tail is prepared like a fresh mapping
    /// (huge pages, populate).
    ///
    /// Only plain `MREMAP_MAYMOVE` is used: it fails with nothing moved or unmapped. Moving into
    /// a reservation with `MREMAP_FIXED` would be unsound here, because kernels before 6.10
    /// unmap the destination *before* checking the source, so after a failure the reservation
    /// may already be gone and reused by another thread. Linux 6.7+ places 2 MiB-multiple
    /// lengths at 2 MiB-aligned addresses (a test in `tests/kernel_facts.rs` checks this), so a
    /// huge block is moved at its length rounded up to 2 MiB and the slack unmapped: its huge
    /// pages still line up; a block that needs more than page alignment is grown by the caller
    /// with a copy instead (`Err(EINVAL)`).
    ///
    /// On failure (`EFAULT`: the range spans two mappings; `ENOMEM`) the range is untouched.
    ///
    /// # Safety
    /// `p..p+old_len` must be a range of this engine that nothing else uses during the call.
    pub(super) unsafe fn grow_by_moving(
        &self,
        p: *mut u8,
        old_len: usize,
        new_len: usize,
        align: usize,
    ) -> Result<*mut u8, Errno> {
        if align > PAGE {
            return Err(Errno(libc::EINVAL));
        }
        let c = &self.counters;
        let prefetch = self.prefetch();
        let huge = prefetch.huge_pages() && new_len >= HUGE;
        // A huge block is moved at its length rounded up to 2 MiB, which the kernel places on a
        // 2 MiB boundary, and the slack is unmapped at once (as `map_aligned` does for a fresh
        // one): a move to an unaligned address would split the block's huge pages.
        let whole = if huge {
            new_len
                .checked_next_multiple_of(HUGE)
                .ok_or(Errno(libc::ENOMEM))?
        } else {
            new_len
        };
        // SAFETY: the caller owns p..p+old_len, which lies in our mappings.
        let q = unsafe { os::remap(p, old_len, whole) }?;
        self.unmap_slack(q, new_len, whole);
        if huge {
            Counters::add(&c.madvise_calls, 1);
            // SAFETY: q..q+new_len is the grown range; MADV_HUGEPAGE only changes faulting.
            let _ = unsafe { os::advise(q, new_len, libc::MADV_HUGEPAGE) };
        }
        if prefetch.populates() {
            Counters::add(&c.populate_calls, 1);
            // SAFETY: the new tail is part of the range; populating keeps contents.
            unsafe { os::populate(q.add(old_len), new_len - old_len) };
        }
        Ok(q)
    }
}
