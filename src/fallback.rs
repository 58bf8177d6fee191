//! Large blocks served by the inner allocator when the kernel refuses a mapping (issue #10).
//!
//! A process may hold more large blocks than it may have mappings (`vm.max_map_count`, 65530 by
//! default). Neighbouring mappings that agree in everything merge into one, but pagewise's do
//! not always agree: a block of 2 MiB and more is marked `MADV_HUGEPAGE`, a smaller one is not, so
//! a program alternating the two needs about one mapping per block (measured in
//! `tests/map_count.rs`: 1.5 MiB and 3 MiB blocks ran out after 65,530). glibc serves the same
//! program from 30 mappings, and where `mmap` fails it grows its heap instead. So when the engine
//! cannot map a block, `PageAlloc` asks its inner allocator (glibc's heap, with `System`).
//!
//! `dealloc` and `realloc` must then know whose block they hold, from the pointer and the layout
//! alone, and the common path may pay at most one atomic load for it:
//! - Blocks with an alignment below a page (nearly all of them: `Vec`, `HashMap`, `Box`) are
//!   placed at a fixed offset past a page boundary inside the inner allocation ([`offset`]): an
//!   offset the engine's blocks never have (they start on a page boundary or at a colour, see
//!   [`crate::colour`]). Telling them apart costs no load at all.
//! - Blocks that must be page-aligned or more are recorded in a small table of addresses
//!   ([`ALIGNED_SLOTS`] of them); the free path looks there only while the table holds any (one
//!   atomic load). When the table is full such a request returns null, as before this module.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::os::PAGE;

/// How many page-aligned fallback blocks may be live at once (the rare kind: see the module
/// documentation).
pub(crate) const ALIGNED_SLOTS: usize = 64;

static ALIGNED: [AtomicUsize; ALIGNED_SLOTS] = [const { AtomicUsize::new(0) }; ALIGNED_SLOTS];
static ALIGNED_LIVE: AtomicUsize = AtomicUsize::new(0);

/// Where a block of alignment `align` (below a page) starts inside its inner allocation, which
/// is page-aligned: a multiple of `align` (so the block is aligned) below a page (so it is not
/// page-aligned), and at least 16 so that small alignments keep malloc's. No block of the engine
/// starts at this offset in its page ([`crate::colour::pick`] avoids it).
pub(crate) const fn offset(align: usize) -> usize {
    if align < 16 {
        16
    } else {
        align
    }
}

/// The inner allocation behind a block of `size` bytes at `align`.
fn inner_layout(size: usize, align: usize) -> Option<Layout> {
    if align >= PAGE {
        Layout::from_size_align(size, align).ok()
    } else {
        Layout::from_size_align(size.checked_add(offset(align))?, PAGE).ok()
    }
}

/// Whether a large block (`layout.size()` at or over the threshold) came from the fallback.
#[inline]
pub(crate) fn owns(p: *mut u8, layout: Layout) -> bool {
    if layout.align() < PAGE {
        return p as usize & (PAGE - 1) == offset(layout.align());
    }
    ALIGNED_LIVE.load(Ordering::Acquire) != 0 && find(p as usize).is_some()
}

fn find(addr: usize) -> Option<&'static AtomicUsize> {
    ALIGNED.iter().find(|s| s.load(Ordering::Relaxed) == addr)
}

/// A block of `size` bytes at `align` from `inner`, or null.
///
/// # Safety
/// `size` is non-zero; `align` is a power of two (the caller holds a valid `Layout`).
pub(crate) unsafe fn alloc<A: GlobalAlloc>(
    inner: &A,
    size: usize,
    align: usize,
    zeroed: bool,
) -> *mut u8 {
    let Some(l) = inner_layout(size, align) else {
        return ptr::null_mut();
    };
    if align >= PAGE {
        // Reserve a table slot first: a block that could not be recorded could not be freed.
        let Some(slot) = ALIGNED.iter().find(|s| {
            s.load(Ordering::Relaxed) == 0
                && s.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
        }) else {
            return ptr::null_mut();
        };
        // SAFETY: l has a non-zero size (size is non-zero).
        let p = unsafe { alloc_inner(inner, l, zeroed) };
        slot.store(p as usize, Ordering::Relaxed);
        if !p.is_null() {
            ALIGNED_LIVE.fetch_add(1, Ordering::Release);
        }
        return p;
    }
    // SAFETY: l has a non-zero size.
    let base = unsafe { alloc_inner(inner, l, zeroed) };
    if base.is_null() {
        return base;
    }
    // SAFETY: the inner block holds offset + size bytes.
    unsafe { base.add(offset(align)) }
}

/// # Safety
/// As `GlobalAlloc::alloc`.
unsafe fn alloc_inner<A: GlobalAlloc>(inner: &A, l: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: forwarded with the caller's guarantees.
    unsafe {
        if zeroed {
            inner.alloc_zeroed(l)
        } else {
            inner.alloc(l)
        }
    }
}

/// Frees a fallback block.
///
/// # Safety
/// `p` came from [`alloc`] with `inner`, `layout.size()` and `layout.align()`, and is live.
pub(crate) unsafe fn dealloc<A: GlobalAlloc>(inner: &A, p: *mut u8, layout: Layout) {
    let (size, align) = (layout.size(), layout.align());
    // The layout was valid at allocation: it still is.
    let Some(l) = inner_layout(size, align) else {
        return;
    };
    if align >= PAGE {
        if let Some(slot) = find(p as usize) {
            slot.store(0, Ordering::Relaxed);
            ALIGNED_LIVE.fetch_sub(1, Ordering::Release);
        }
        // SAFETY: p is the inner allocation itself, made with l.
        return unsafe { inner.dealloc(p, l) };
    }
    // SAFETY: p was made `offset(align)` bytes into an inner allocation made with l.
    unsafe { inner.dealloc(p.sub(offset(align)), l) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn blocks_below_a_page_of_alignment_are_never_page_aligned() {
        for align in [1, 8, 16, 64, 2048] {
            let l = Layout::from_size_align(300 << 10, align).unwrap();
            // SAFETY: non-zero size; freed below.
            let p = unsafe { alloc(&System, l.size(), align, true) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            assert!(owns(p, l), "align {align}: {p:p} must be recognised");
            // SAFETY: p holds l.size() zeroed bytes.
            let s = unsafe { std::slice::from_raw_parts_mut(p, l.size()) };
            assert!(s.iter().all(|&b| b == 0));
            s.fill(7);
            // SAFETY: p came from alloc with this layout.
            unsafe { dealloc(&System, p, l) };
        }
        // Engine blocks start on a page or at a colour: never taken for a fallback one.
        let l = Layout::from_size_align(300 << 10, 8).unwrap();
        assert!(!owns(PAGE as *mut u8, l));
        for c in (0..PAGE).step_by(64).filter(|&c| c >= 128) {
            assert!(!owns((PAGE + c) as *mut u8, l), "colour {c}");
        }
    }

    #[test]
    fn page_aligned_blocks_are_recorded_while_live() {
        let l = Layout::from_size_align(1 << 20, PAGE).unwrap();
        let engine_block = (64 * PAGE) as *mut u8;
        // SAFETY: non-zero size; freed below.
        let p = unsafe { alloc(&System, l.size(), PAGE, false) };
        assert!(!p.is_null() && p as usize % PAGE == 0);
        assert!(owns(p, l));
        assert!(!owns(engine_block, l));
        // SAFETY: p came from alloc with this layout.
        unsafe { dealloc(&System, p, l) };
        assert!(!owns(p, l), "a freed block leaves the table");
    }
}
