//! `allocator_api2::alloc::Allocator` for [`PageAlloc`] (feature `allocator-api2`), so that one
//! collection can have its own allocator, policy, cache and counters (user-facing documentation:
//! `PageAlloc` in `lib.rs`, and the README's "One collection at a time").
//!
//! The paths are those of the `GlobalAlloc` impl (`lib.rs`), with these differences:
//!
//! - **Routing**: a request goes to the engine when its size *or its alignment* reaches the
//!   threshold, else to the inner allocator. `GlobalAlloc` looks at the size only. A 64-byte block
//!   at 1 GiB alignment costs glibc 1 GiB of address space for as long as it lives (measured:
//!   `posix_memalign` grew `VmSize` by the alignment, from 1 MiB to 1 GiB); the engine maps
//!   `align` more than the block and unmaps the excess at once, keeping one page. The decision
//!   depends only on the layout and the threshold (fixed after first use), so `deallocate`, `grow`
//!   and `shrink` reach whoever made the block. A block must be freed through the trait that
//!   allocated it.
//! - **Zero size**: `allocate` of size 0 returns a dangling pointer at the layout's alignment
//!   (nothing is allocated); `deallocate` of size 0 does nothing; growing from size 0 allocates,
//!   shrinking to size 0 frees.
//! - **`grow_zeroed`**: the engine clears only bytes that may hold old data (the block's slack
//!   past its old size, pages taken from the cache that are not zero pages); pages added by
//!   `mremap` are fresh and are not touched (`Engine::realloc_zeroed`).
//! - **A new alignment** in `grow` or `shrink` (the contract allows one): a new block, a copy and
//!   a free.
//!
//! The returned slice is exactly `layout.size()` long (never the mapping's rounded length), so
//! the layout a caller frees with is the one it asked for. Every refusal (the kernel's, or the
//! inner allocator's null) is `Err(AllocError)`; a failed `grow` or `shrink` leaves the block as
//! it was. Nothing here allocates, panics or locks.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::{fallback, PageAlloc};

/// A well-aligned dangling pointer for a zero-size block.
#[inline]
fn dangling(align: usize) -> Result<NonNull<[u8]>, AllocError> {
    // `align` is a power of two, never zero: an address without provenance, never dereferenced.
    block(ptr::null_mut::<u8>().wrapping_add(align), 0)
}

/// `p` as a block of `len` bytes, or the error if it is null.
#[inline]
fn block(p: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(p)
        .map(|p| NonNull::slice_from_raw_parts(p, len))
        .ok_or(AllocError)
}

impl<A: GlobalAlloc> PageAlloc<A> {
    /// Whether the engine serves `layout` (see the module documentation: size or alignment).
    #[inline]
    fn engine_serves(&self, layout: Layout) -> bool {
        layout.size().max(layout.align()) >= self.threshold()
    }

    /// `allocate` and `allocate_zeroed`.
    #[inline]
    fn allocate_api(&self, layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return dangling(layout.align());
        }
        let p = if self.engine_serves(layout) {
            self.alloc_large(layout.size(), layout.align(), zeroed)
        } else if zeroed {
            // SAFETY: a valid layout of non-zero size.
            unsafe { self.inner.alloc_zeroed(layout) }
        } else {
            // SAFETY: a valid layout of non-zero size.
            unsafe { self.inner.alloc(layout) }
        };
        block(p, layout.size())
    }

    /// `deallocate`.
    ///
    /// # Safety
    /// `p` is a live block of `allocate_api` (or `resize_api`) with `layout`.
    #[inline]
    unsafe fn deallocate_api(&self, p: *mut u8, layout: Layout) {
        if layout.size() == 0 {
            return; // dangling: nothing was allocated
        }
        if self.engine_serves(layout) {
            // SAFETY: routed like its allocation: a large block of this allocator.
            unsafe { self.dealloc_large(p, layout) }
        } else {
            // SAFETY: routed like its allocation: the inner allocator's, with this layout.
            unsafe { self.inner.dealloc(p, layout) }
        }
    }

    /// `grow`, `grow_zeroed` (`zeroed`) and `shrink`.
    ///
    /// # Safety
    /// `p` is a live block with layout `old`; `zeroed` only if `new.size() >= old.size()`.
    unsafe fn resize_api(
        &self,
        p: *mut u8,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate_api(new, zeroed); // nothing to keep, nothing to free
        }
        if new.size() == 0 {
            // SAFETY: the caller's live block.
            unsafe { self.deallocate_api(p, old) };
            return dangling(new.align());
        }
        if old.align() != new.align() {
            // SAFETY: the caller's live block.
            return unsafe { self.move_api(p, old, new, zeroed) };
        }
        let q = match (self.engine_serves(old), self.engine_serves(new)) {
            (false, false) => {
                // SAFETY: a block of the inner allocator with `old`; `new` is a valid layout of
                // non-zero size with the same alignment.
                let q = unsafe { self.inner.realloc(p, old, new.size()) };
                if zeroed && !q.is_null() {
                    // SAFETY: q holds new.size() >= old.size() bytes.
                    unsafe { ptr::write_bytes(q.add(old.size()), 0, new.size() - old.size()) };
                }
                q
            }
            // SAFETY: a large block of this allocator with `old`; the new size is large.
            (true, true) => unsafe { self.resize_large(p, old, new.size(), zeroed) },
            // Across the threshold: the other side makes the new block.
            // SAFETY: the caller's live block.
            _ => return unsafe { self.move_api(p, old, new, zeroed) },
        };
        block(q, new.size())
    }

    /// A new block for `new`, the bytes both hold copied, the old block freed; on failure the old
    /// block is left as it was.
    ///
    /// # Safety
    /// `p` is a live block with layout `old`, of non-zero size.
    #[cold]
    unsafe fn move_api(
        &self,
        p: *mut u8,
        old: Layout,
        new: Layout,
        zeroed: bool,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let q = self.allocate_api(new, zeroed)?;
        // SAFETY: both blocks are live and distinct; each holds at least the bytes copied; the
        // old one is freed by whoever made it.
        unsafe {
            ptr::copy_nonoverlapping(p, q.cast::<u8>().as_ptr(), old.size().min(new.size()));
            self.deallocate_api(p, old);
        }
        Ok(q)
    }

    /// `realloc_large` of `lib.rs` with `zeroed` for `grow_zeroed`: the engine resizes its own
    /// blocks (moving pages, clearing only what may be dirty); a fallback block, or an engine
    /// block that could neither move nor be copied by the engine, is copied into whatever
    /// `alloc_large` gives now. Null, with the block untouched, when nothing could be had.
    ///
    /// # Safety
    /// `p` is a live large block of this allocator with `layout`; `new_size` is large; `zeroed`
    /// only if `new_size >= layout.size()`.
    unsafe fn resize_large(
        &self,
        p: *mut u8,
        layout: Layout,
        new_size: usize,
        zeroed: bool,
    ) -> *mut u8 {
        let from_fallback = fallback::owns(p, layout);
        if !from_fallback {
            let size = layout.size();
            // SAFETY: a large block of this engine with this size and alignment; zeroed only for
            // growth (the caller's guarantee).
            let q = unsafe { self.engine_realloc(p, size, layout.align(), new_size, zeroed) };
            if !q.is_null() || new_size <= size {
                return q;
            }
        }
        let q = self.alloc_large(new_size, layout.align(), zeroed);
        if !q.is_null() {
            self.engine().counters.note_copied_realloc(from_fallback);
            // SAFETY: both blocks are live and distinct; the old one holds layout.size() bytes
            // and the new one new_size; the old one is freed by whoever made it.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc_large(p, layout);
            }
        }
        q
    }
}

// SAFETY: blocks are those of the `GlobalAlloc` impl (private anonymous mappings owned by one
// block until freed, the fallback's blocks, or the inner allocator's), or dangling pointers of
// size 0 that are never freed; each block is freed, grown or shrunk by whoever made it, because
// routing depends only on the layout (which the contract says fits the block), the threshold
// (fixed at first use) and `fallback::owns`. Blocks stay valid while the allocator lives and when
// it moves: the engine is a static, the threshold a value, and the inner allocators this is meant
// for (`System`, jemalloc, mimalloc) are zero-sized; an inner allocator whose blocks live inside
// its own value must not be moved once used (the same holds for it alone). A `PageAlloc` is not
// `Clone`; `&PageAlloc` copies are the same allocator. Dropping it releases only its cache, never
// a live block.
unsafe impl<A: GlobalAlloc> Allocator for PageAlloc<A> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_api(layout, false)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_api(layout, true)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's block, currently allocated, with a layout that fits it (its
        // requested size: the size this allocator returns).
        unsafe { self.deallocate_api(ptr.as_ptr(), layout) }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's block, with `old_layout`.
        unsafe { self.resize_api(ptr.as_ptr(), old_layout, new_layout, false) }
    }

    #[inline]
    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's block, with `old_layout`; the contract says the new size is not
        // smaller.
        unsafe { self.resize_api(ptr.as_ptr(), old_layout, new_layout, true) }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's block, with `old_layout`.
        unsafe { self.resize_api(ptr.as_ptr(), old_layout, new_layout, false) }
    }
}
