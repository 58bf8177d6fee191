//! glibc's own allocator, reached through the symbols glibc exports for allocators that replace
//! `malloc` (`__libc_malloc` and the rest, `GLIBC_2.2.5`), so that the small path needs no `dlsym`
//! and cannot recurse into this library. Also `errno`, which every C contract here sets.
//!
//! glibc exports no such alias of `malloc_usable_size`; [`usable_size`] finds glibc's with
//! `dlsym(RTLD_NEXT)` the first time a glibc block's size is needed (`malloc_usable_size` on one,
//! or `realloc` growing one past the threshold), never at start-up.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

/// `malloc(size)` of glibc.
#[inline]
pub(crate) fn malloc(size: usize) -> *mut u8 {
    // SAFETY: glibc's malloc accepts any size (null and ENOMEM when it cannot serve it).
    unsafe { __libc_malloc(size) }.cast()
}

/// `calloc(n, size)` of glibc, which checks `n * size` for overflow itself.
#[inline]
pub(crate) fn calloc(n: usize, size: usize) -> *mut u8 {
    // SAFETY: as for malloc.
    unsafe { __libc_calloc(n, size) }.cast()
}

/// `memalign(align, size)` of glibc (which rounds an alignment that is not a power of two up).
#[inline]
pub(crate) fn memalign(align: usize, size: usize) -> *mut u8 {
    // SAFETY: glibc's memalign accepts any alignment and size (null and EINVAL or ENOMEM).
    unsafe { __libc_memalign(align, size) }.cast()
}

/// `free(p)` of glibc.
///
/// # Safety
/// `p` is null or a live block of glibc's allocator.
#[inline]
pub(crate) unsafe fn free(p: *mut u8) {
    // SAFETY: the caller's guarantee.
    unsafe { __libc_free(p.cast()) }
}

/// `realloc(p, size)` of glibc.
///
/// # Safety
/// `p` is null or a live block of glibc's allocator.
#[inline]
pub(crate) unsafe fn realloc(p: *mut u8, size: usize) -> *mut u8 {
    // SAFETY: the caller's guarantee.
    unsafe { __libc_realloc(p.cast(), size) }.cast()
}

type UsableSize = unsafe extern "C" fn(*mut c_void) -> usize;

/// glibc's `malloc_usable_size`, found once (a race finds it twice, harmlessly).
static USABLE_SIZE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// `malloc_usable_size(p)` of glibc: how many bytes the glibc block `p` holds; `None` if glibc's
/// function cannot be found (not on glibc: then nothing here works anyway).
///
/// # Safety
/// `p` is a live block of glibc's allocator.
pub(crate) unsafe fn usable_size(p: *mut u8) -> Option<usize> {
    let mut f = USABLE_SIZE.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: RTLD_NEXT is a valid handle for dlsym from a shared object, the name is
        // NUL-terminated. The next definition after this library's is glibc's. dlsym may call
        // malloc (small requests, which go to glibc); it does not call malloc_usable_size.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
        if f.is_null() {
            return None;
        }
        USABLE_SIZE.store(f, Ordering::Release);
    }
    // SAFETY: f is glibc's malloc_usable_size, whose C type is `size_t (void *)`; p is a live
    // glibc block.
    Some(unsafe { core::mem::transmute::<*mut c_void, UsableSize>(f)(p.cast()) })
}

/// The calling thread's `errno`.
#[inline]
pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno, always valid.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's `errno`.
#[inline]
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}
