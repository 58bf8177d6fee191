//! The C functions the library exports: glibc's allocation API with its contracts, routed by
//! size (small to glibc, large to the engine) and, at free, by the table of pagewise's blocks.
//!
//! glibc documents what a replacement must provide (the glibc manual, "Replacing malloc": malloc,
//! free, calloc, realloc, and for programs that use them aligned_alloc, malloc_usable_size,
//! memalign, posix_memalign, pvalloc, valloc); glibc's own functions call them through the
//! dynamic symbol table, so the program, its libraries and libc itself all come here.
//!
//! The contracts kept (glibc 2.36, `malloc/malloc.c`): `malloc(0)` and `memalign(a, 0)` return a
//! unique pointer (glibc's minimum block); `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)`
//! frees `p` and returns NULL; a failure returns NULL with `errno = ENOMEM` (a large request the
//! engine cannot serve is first given to glibc, and `errno` is left as it was if glibc serves
//! it); `calloc` and `reallocarray` refuse a product that overflows (`ENOMEM`, the block left as
//! it was); `posix_memalign` returns `EINVAL` for an alignment that is not a power of two
//! multiple of `sizeof(void *)` and `ENOMEM` on failure, and leaves `errno` alone;
//! `memalign`/`aligned_alloc` round an alignment that is not a power of two up to one, as glibc
//! 2.36 does; `pvalloc` rounds the size up to a page, and `malloc_usable_size(NULL)` is 0.
//!
//! The symbols are exported from the library only: in the crate's unit-test executable they
//! would replace malloc under the test harness itself. They are tested from C, with the built
//! library preloaded (`tests/c_abi.rs`).

use core::ffi::{c_int, c_void};
use core::ptr;

use crate::owners::{OWNERS, PAGE};
use crate::stats::{self, PagewiseStats};
use crate::{engine, glibc, start};

/// The alignment malloc guarantees on x86-64 and arm64 (`MALLOC_ALIGNMENT`).
const MALLOC_ALIGN: usize = 16;

/// The threshold, starting pagewise on the first call; `None` while it cannot start.
#[inline]
fn threshold() -> Option<usize> {
    match start::threshold() {
        0 => start::start(),
        t => Some(t),
    }
}

/// Whether `p` may be a pagewise block: every one starts on a page. glibc's other blocks
/// (nearly all of them: 16 bytes past a chunk header) are told apart by this one test.
#[inline]
fn page_aligned(p: *mut u8) -> bool {
    p as usize & (PAGE - 1) == 0
}

/// A request that is not small, or that came before start-up: pagewise's block if it is large
/// and the engine can serve it, else glibc's.
#[cold]
fn alloc_slow(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    match threshold() {
        Some(t) if size >= t || align >= t => {
            let saved = glibc::errno();
            if let Some(p) = engine::alloc(size, align, zeroed, t) {
                return p;
            }
            engine::note_glibc_fallback();
            let q = alloc_glibc(size, align, zeroed);
            if !q.is_null() {
                glibc::set_errno(saved); // the engine's failed mmap is no failure of this call
            }
            q
        }
        _ => alloc_glibc(size, align, zeroed),
    }
}

/// glibc's block for a request (`zeroed` only with malloc's alignment: calloc).
fn alloc_glibc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    match (align <= MALLOC_ALIGN, zeroed) {
        (true, true) => glibc::calloc(1, size),
        (true, false) => glibc::malloc(size),
        _ => glibc::memalign(align, size),
    }
}

/// `malloc(3)`.
///
/// # Safety
/// None beyond C's: the result is freed once, with `free` or `realloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if size < start::threshold() {
        return glibc::malloc(size).cast();
    }
    alloc_slow(size, MALLOC_ALIGN, false).cast()
}

/// `free(3)`.
///
/// # Safety
/// `p` is null or a live block from this library's functions (or from glibc's).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    let p = p.cast::<u8>();
    // SAFETY: p is a live block of pagewise or of glibc (the caller's guarantee); engine::free
    // frees it only if the table says it is pagewise's, and glibc gets it otherwise.
    unsafe {
        if !page_aligned(p) || !engine::free(p) {
            glibc::free(p);
        }
    }
}

/// `calloc(3)`.
///
/// # Safety
/// As `malloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        glibc::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    if total < start::threshold() {
        return glibc::calloc(n, size).cast();
    }
    alloc_slow(total, MALLOC_ALIGN, true).cast()
}

/// `realloc(3)`.
///
/// # Safety
/// `p` is null or a live block of this library (or of glibc).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let p = p.cast::<u8>();
    if p.is_null() {
        // SAFETY: malloc has no precondition.
        return unsafe { malloc(size) };
    }
    let ours = if page_aligned(p) { OWNERS.get(p) } else { None };
    // SAFETY: p is a live block: pagewise's if the table says so, else glibc's.
    unsafe {
        match ours {
            Some(_) if size == 0 => {
                engine::free(p); // glibc's realloc(p, 0): free, and return NULL
                ptr::null_mut()
            }
            Some(b) => resize_pagewise(p, b, size).cast(),
            None => resize_glibc(p, size).cast(),
        }
    }
}

/// `realloc` of a pagewise block to a non-zero size: in the engine if still large, else into a
/// glibc block.
///
/// # Safety
/// `p` is a live pagewise block described by `b`.
unsafe fn resize_pagewise(p: *mut u8, b: crate::owners::Block, size: usize) -> *mut u8 {
    // A pagewise block exists, so pagewise has started.
    let t = start::threshold();
    let saved = glibc::errno();
    if let Some(m) = (size >= t).then(|| OWNERS.begin_move(p)).flatten() {
        // SAFETY: p is ours, taken out of the table just now as m.
        let q = unsafe { engine::realloc(p, m, size, t) };
        if !q.is_null() {
            return q;
        }
        engine::note_glibc_fallback();
    }
    // Small now, or the engine could not grow it: glibc's block, with the content copied.
    let q = alloc_glibc(size, MALLOC_ALIGN, false);
    if !q.is_null() {
        // The engine's failed mremap or mmap is no failure of this call.
        glibc::set_errno(saved);
        // SAFETY: p holds b.len bytes, q holds size; distinct blocks; p is ours and live.
        unsafe {
            ptr::copy_nonoverlapping(p, q, size.min(b.len));
            engine::free(p);
        }
    }
    q
}

/// `realloc` of a glibc block: in glibc while small, else into a pagewise block.
///
/// # Safety
/// `p` is a live glibc block.
unsafe fn resize_glibc(p: *mut u8, size: usize) -> *mut u8 {
    if size < start::threshold() {
        // SAFETY: the caller's guarantee.
        return unsafe { glibc::realloc(p, size) };
    }
    let Some(t) = threshold().filter(|&t| size >= t) else {
        // SAFETY: as above.
        return unsafe { glibc::realloc(p, size) };
    };
    // SAFETY: p is a live glibc block.
    let Some(old) = (unsafe { glibc::usable_size(p) }) else {
        // SAFETY: as above.
        return unsafe { glibc::realloc(p, size) };
    };
    let saved = glibc::errno();
    let Some(q) = engine::alloc(size, MALLOC_ALIGN, false, t) else {
        engine::note_glibc_fallback();
        // SAFETY: as above.
        let q = unsafe { glibc::realloc(p, size) };
        if !q.is_null() {
            glibc::set_errno(saved);
        }
        return q;
    };
    // SAFETY: p holds `old` bytes, q holds at least size; distinct; p is glibc's and live.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(size));
        glibc::free(p);
    }
    q
}

/// `reallocarray(3)`.
///
/// # Safety
/// As `realloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        glibc::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    // SAFETY: the caller's guarantee.
    unsafe { realloc(p, total) }
}

/// A block of `size` bytes at `align` (a power of two).
fn aligned(align: usize, size: usize) -> *mut u8 {
    if align <= MALLOC_ALIGN {
        // SAFETY: malloc has no precondition.
        return unsafe { malloc(size) }.cast();
    }
    let t = start::threshold();
    if size < t && align < t {
        return glibc::memalign(align, size);
    }
    alloc_slow(size, align, false)
}

/// `memalign(3)`.
///
/// # Safety
/// As `malloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => aligned(a, size).cast(),
        // Beyond any alignment: glibc's answer (EINVAL).
        None => glibc::memalign(align, size).cast(),
    }
}

/// `aligned_alloc(3)`: glibc 2.36's, which is `memalign`.
///
/// # Safety
/// As `malloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: no precondition.
    unsafe { memalign(align, size) }
}

/// `posix_memalign(3)`.
///
/// # Safety
/// `out` is valid for a pointer write.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let saved = glibc::errno();
    let p = aligned(align, size);
    if p.is_null() {
        glibc::set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: the caller's guarantee.
    unsafe { out.write(p.cast()) };
    0
}

/// `valloc(3)`.
///
/// # Safety
/// As `malloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(PAGE, size).cast()
}

/// `pvalloc(3)`: the size rounded up to whole pages.
///
/// # Safety
/// As `malloc`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(rounded) = size.checked_next_multiple_of(PAGE) else {
        glibc::set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    aligned(PAGE, rounded).cast()
}

/// `malloc_usable_size(3)`: a pagewise block's whole pages, or what glibc says of its own.
///
/// # Safety
/// `p` is null or a live block of this library (or of glibc).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    let p = p.cast::<u8>();
    if p.is_null() {
        return 0;
    }
    if let Some(b) = page_aligned(p).then(|| OWNERS.get(p)).flatten() {
        return b.len;
    }
    // SAFETY: not pagewise's, so a live glibc block (the caller's guarantee).
    unsafe { glibc::usable_size(p) }.unwrap_or(0)
}

/// `pagewise_stats(struct pagewise_stats *out)` (`include/pagewise.h`): the counters now.
///
/// # Safety
/// `out` is null (nothing is written) or valid for a write of `struct pagewise_stats`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pagewise_stats(out: *mut PagewiseStats) {
    if !out.is_null() {
        // SAFETY: the caller's guarantee.
        unsafe { out.write(stats::now()) };
    }
}

/// `pagewise_purge(void)` (`include/pagewise.h`): every cached range back to the kernel now.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn pagewise_purge() {
    engine::purge();
}
