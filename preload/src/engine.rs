//! Large blocks: one `pagewise::PageAlloc` (the engine of every Rust program that uses pagewise,
//! with the same `PAGEWISE_*` variables, policies and counters), reached only through its
//! `GlobalAlloc` contract, and the table of its blocks (`owners`).
//!
//! Every block is allocated with the layout that [`Block`] records (its length in whole pages,
//! which `malloc_usable_size` reports, and its alignment), and freed and resized with exactly
//! that layout. The `PageAlloc`'s inner allocator refuses everything ([`Refuse`]), so every
//! block it hands out is one of its mappings: where the kernel refuses a mapping, the caller
//! (`abi`) asks glibc instead, and that block is glibc's, never recorded, freed by glibc.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use pagewise::{Config, PageAlloc, Prefetch, Stats};

use crate::owners::{Block, Moving, OWNERS, PAGE};
use crate::{glibc, start};

/// The inner allocator of [`ENGINE`]: refuses every request, so that the engine's fallback (a
/// block of the inner allocator where the kernel refuses a mapping) never happens inside it.
#[derive(Debug)]
pub(crate) struct Refuse;

// SAFETY: `alloc` always fails (null), which GlobalAlloc allows; `dealloc` can then never be
// called with a block of ours, and does nothing.
unsafe impl GlobalAlloc for Refuse {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

/// The engine, with one default changed from a Rust program's: `PAGEWISE_PREFETCH=none`. C
/// programs allocate big buffers that they touch sparsely or fill by `read(2)`: with `hugepage`,
/// each touched 2 MiB faults a whole huge page (xz -9: 213 MiB peak against glibc's 154; `none`:
/// 154) and sort's `read` calls took 0.13-0.15 s of faulting against 0.03 s (`strace -c`, 64 MiB
/// of input). Measured with `scripts/preload_bench.py --variant` (README, "Any program"). The
/// environment still decides: `PAGEWISE_PREFETCH=hugepage` brings huge pages back.
static ENGINE: PageAlloc<Refuse> =
    PageAlloc::with_inner(Refuse).with_config(Config::DEFAULT.prefetch(Prefetch::None));

/// Large requests glibc served because the engine could not (counted as `fallback_allocs`).
static GLIBC_FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Resolves the configuration (environment, cgroup) and adopts the engine; returns the
/// configuration in force. Prints `PAGEWISE_VERBOSE`'s lines and registers `PAGEWISE_STATS`'s
/// exit hook, as for any `PageAlloc`.
pub(crate) fn start() -> Config {
    ENGINE.config()
}

/// The layout of a large request: `size` rounded up to whole pages, and at least the threshold
/// (a small request with a big alignment is large too: the engine maps its alignment's worth of
/// address space and keeps one page); `None` on overflow. Whole pages also keep every block
/// page-aligned: `PageAlloc` colours a block (starts it past its page boundary) only within the
/// slack of its last page, and there is none, while `free` looks up only page-aligned pointers
/// (`owners.rs`).
fn layout(size: usize, align: usize, threshold: usize) -> Option<Layout> {
    let len = size.max(threshold).checked_next_multiple_of(PAGE)?;
    Layout::from_size_align(len, align).ok()
}

/// A new pagewise block for `size` bytes at `align` (a power of two), recorded in the table;
/// `None` if the engine or the table cannot serve it (the caller asks glibc).
pub(crate) fn alloc(size: usize, align: usize, zeroed: bool, threshold: usize) -> Option<*mut u8> {
    let l = layout(size, align, threshold)?;
    // SAFETY: l has a non-zero size (at least the threshold).
    let p = unsafe {
        if zeroed {
            ENGINE.alloc_zeroed(l)
        } else {
            ENGINE.alloc(l)
        }
    };
    if p.is_null() {
        return None;
    }
    if !OWNERS.record(p, Block::from_layout(l)) {
        // SAFETY: p was just allocated with l and never handed out.
        unsafe { ENGINE.dealloc(p, l) };
        return None;
    }
    Some(p)
}

/// Frees `p` if it is a pagewise block; false if it is not (it is glibc's).
///
/// # Safety
/// `p` is a live block of this library (pagewise's or glibc's).
#[inline]
pub(crate) unsafe fn free(p: *mut u8) -> bool {
    let Some(b) = OWNERS.take(p) else {
        return false;
    };
    // SAFETY: p is a live pagewise block allocated with b's layout, now out of the table.
    unsafe { ENGINE.dealloc(p, b.layout()) };
    true
}

/// Resizes the pagewise block `p` (taken out of the table by the caller as `m`) to `new_size`
/// bytes, at least the threshold, in place or by moving its pages; null if it cannot (the block
/// is then unchanged and back in the table).
///
/// # Safety
/// `p` is a live pagewise block, which the caller took with `OWNERS.begin_move(p)` as `m`.
pub(crate) unsafe fn realloc(p: *mut u8, m: Moving, new_size: usize, threshold: usize) -> *mut u8 {
    let b = m.block;
    let Some(l) = layout(new_size, b.align, threshold) else {
        OWNERS.end_move(p, m, Some(b));
        return ptr::null_mut();
    };
    // SAFETY: p is a live block of ENGINE with b's layout; l.size() is non-zero and within
    // isize::MAX once rounded to b.align (a valid Layout).
    let q = unsafe { ENGINE.realloc(p, b.layout(), l.size()) };
    if q.is_null() {
        OWNERS.end_move(p, m, Some(b));
        return q;
    }
    let nb = Block::from_layout(l);
    if q == p {
        OWNERS.end_move(p, m, Some(nb));
        return q;
    }
    OWNERS.end_move(p, m, None);
    if OWNERS.record(q, nb) {
        return q;
    }
    // No leaf and no spill slot for the new address (the kernel refused a 2 MiB mapping and 64
    // blocks are spilled already): hand the content to glibc. The caller's old pointer is gone,
    // so if glibc refuses too there is no block to leave it in: stop, as glibc does on heap
    // corruption, rather than return a block free() would give to glibc.
    // SAFETY: q is a live engine block with layout l, not handed out.
    unsafe { move_to_glibc(q, l, new_size) }
}

/// Copies the unrecordable engine block `q` into a glibc block of `size` bytes and frees it.
///
/// # Safety
/// `q` is a live engine block with layout `l`, not in the table, not handed out.
#[cold]
unsafe fn move_to_glibc(q: *mut u8, l: Layout, size: usize) -> *mut u8 {
    let g = glibc::malloc(size);
    if g.is_null() {
        const MSG: &[u8] = b"pagewise: out of memory for the table of its blocks during realloc\n";
        // SAFETY: MSG is a valid buffer; abort has no preconditions.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::abort();
        }
    }
    // SAFETY: q holds l.size() >= size bytes (size was rounded up); g holds size; distinct.
    unsafe {
        ptr::copy_nonoverlapping(q, g, size.min(l.size()));
        ENGINE.dealloc(q, l);
    }
    g
}

/// Notes a large request that glibc served because the engine or the table could not.
pub(crate) fn note_glibc_fallback() {
    GLIBC_FALLBACKS.fetch_add(1, Ordering::Relaxed);
}

/// The engine's counters, with glibc's fallbacks as `fallback_allocs`, and the threshold.
pub(crate) fn stats() -> (Stats, u64, usize) {
    let threshold = start::start().unwrap_or(0);
    (
        ENGINE.stats(),
        GLIBC_FALLBACKS.load(Ordering::Relaxed),
        threshold,
    )
}

/// Gives every cached range back to the kernel now.
pub(crate) fn purge() {
    if start::start().is_some() {
        ENGINE.purge();
    }
}
