//! The boundary with the operating system: every libc function pagewise calls is called in this
//! module, behind a small documented wrapper, and nowhere else in the crate (other modules use
//! libc's constants and types only).
//!
//! Here: the memory syscalls (`mmap`, `munmap`, `mremap`, `madvise`, `prctl` naming), the kernel
//! feature probes, the clock, stderr, and reading small files (`/proc`, PSI) without keeping a
//! descriptor. In [`process`]: the background thread and its signal mask, sleeping, the `fork`
//! and exit hooks, fault counts, the process id and the environment.
//!
//! Contract shared by all wrappers: nothing here allocates from Rust (no `std::env`,
//! `std::thread`, `std::fs`; buffers are the caller's or on the stack) or panics, so any wrapper
//! may be called from inside `alloc` and `dealloc`.
//! Errors come back as [`Errno`], `None` or `false`; the caller decides whether a failure is fatal
//! (it never is for the allocator: it returns null, falls back, or goes without the feature).
//! Wrappers that are safe to call are safe fns; the `unsafe` ones say what the caller guarantees.
//!
//! For the memory wrappers, addresses are page-aligned, lengths are non-zero multiples of the page
//! size, and the range is one that pagewise mapped and owns.
//!
//! Never release memory through `posix_madvise`: glibc treats `POSIX_MADV_DONTNEED` as a no-op
//! (posix_madvise(3)).

mod file;
mod process;

pub(crate) use file::{
    count_lines, mapping_around, read_file, read_regular_file, resident_bytes, FileError, FileId,
    RegularFile,
};

pub(crate) use process::{
    at_exit, at_fork_child, block_all_signals, copy_stderr, getenv, pid, rusage_faults, sleep_ms,
    spawn_detached, still_open, SavedFd,
};

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

/// The base page size pagewise assumes for its rounding. Checked against `sysconf` by a test;
/// Linux on x86-64 and most arm64 configurations use 4 KiB.
pub(crate) const PAGE: usize = 4096;

/// The transparent huge page size on x86-64 and 4 KiB-page arm64.
pub(crate) const HUGE: usize = 2 << 20;

/// A raw `errno` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Errno(pub(crate) c_int);

fn errno() -> Errno {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno.
    Errno(unsafe { *libc::__errno_location() })
}

fn check(rc: c_int) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// [`check`] for the calls that return an address (`mmap`, `mremap`): `MAP_FAILED` is the error.
fn check_ptr(p: *mut libc::c_void) -> Result<*mut u8, Errno> {
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
}

/// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|extra, -1, 0)`: a fresh,
/// zero-filled private anonymous mapping.
pub(crate) fn map(len: usize, extra_flags: c_int) -> Result<*mut u8, Errno> {
    debug_assert!(len % PAGE == 0 && len != 0, "os: map of {len:#x} bytes");
    // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no existing
    // memory; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    check_ptr(p)
}

/// The contract of the memory wrappers, checked in debug builds: a page-aligned address and a
/// non-zero multiple of the page size.
#[inline]
fn debug_assert_range(addr: *mut u8, len: usize) {
    debug_assert!(
        addr as usize % PAGE == 0 && len % PAGE == 0 && len != 0,
        "os: range {addr:p}+{len:#x} is not page-aligned"
    );
}

/// `mmap(hint, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)`:
/// a fresh mapping exactly at `hint`, or `EEXIST` if anything is mapped there (Linux 4.17+; an
/// older kernel takes the hint as a hint, and the mapping may land elsewhere: the caller must use
/// the address returned).
pub(crate) fn map_at(hint: usize, len: usize) -> Result<*mut u8, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping (it fails instead), so no
    // memory in use is touched; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    check_ptr(p)
}

/// A fresh mapping of `len` bytes whose start is a multiple of `align` (a power of two, at least
/// a page): over-maps by `align - PAGE` and unmaps the excess on both sides, which leaves one
/// mapping. Returns the start and how many trims (`munmap` calls) it made, 0 to 2.
pub(crate) fn map_aligned(
    len: usize,
    align: usize,
    extra_flags: c_int,
) -> Result<(*mut u8, u32), Errno> {
    debug_assert!(align.is_power_of_two() && align >= PAGE);
    let over = len.checked_add(align - PAGE).ok_or(Errno(libc::ENOMEM))?;
    let raw = map(over, extra_flags)?;
    let start = (raw as usize).next_multiple_of(align);
    let head = start - raw as usize;
    let tail = over - head - len;
    let mut trims = 0;
    if head > 0 {
        trims += 1;
        // SAFETY: raw..start is the unused head of the mapping just made.
        let _ = unsafe { unmap(raw, head) };
    }
    if tail > 0 {
        trims += 1;
        // SAFETY: start+len..raw+over is the unused tail of the mapping just made.
        let _ = unsafe { unmap((start + len) as *mut u8, tail) };
    }
    Ok((start as *mut u8, trims))
}

/// `munmap(addr, len)`: returns the range and its pages to the kernel.
///
/// # Safety
/// The range must be owned by pagewise and hold no live block.
pub(crate) unsafe fn unmap(addr: *mut u8, len: usize) -> Result<(), Errno> {
    debug_assert_range(addr, len);
    // SAFETY: the caller owns the whole range and nothing refers to it any more.
    check(unsafe { libc::munmap(addr.cast(), len) })
}

/// `mremap(old, old_len, new_len, MREMAP_MAYMOVE)`: grows or shrinks a mapping by moving page
/// table entries, never by copying data (mremap(2)). Fails (EFAULT) if the range spans more than
/// one VMA; the caller then copies.
///
/// # Safety
/// The old range must be owned by pagewise and lie within one mapping.
pub(crate) unsafe fn remap(old: *mut u8, old_len: usize, new_len: usize) -> Result<*mut u8, Errno> {
    debug_assert_range(old, old_len);
    debug_assert_range(old, new_len);
    // SAFETY: the caller owns the old range; MAYMOVE lets the kernel choose a free destination,
    // so no other mapping is touched.
    check_ptr(unsafe { libc::mremap(old.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) })
}

/// `mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dest)`: moves the pages of
/// `src..src+len` to `dest` by moving page-table entries (no copy, no fault), replacing whatever
/// was mapped at `dest..dest+len`. On failure the source is untouched, but the destination may
/// already have been unmapped (kernels before 6.10 unmap it before checking the source, and any
/// kernel before it allocates the moved VMA): the caller must map it again, or give it up.
///
/// # Safety
/// Both ranges must be owned by pagewise and hold no live block other than the caller's, and
/// `src..src+len` must lie within one mapping.
pub(crate) unsafe fn move_pages(src: *mut u8, len: usize, dest: *mut u8) -> Result<(), Errno> {
    debug_assert_range(src, len);
    debug_assert_range(dest, len);
    // SAFETY: the caller owns both ranges; MREMAP_FIXED replaces only the destination, which is
    // the caller's.
    let p = unsafe {
        libc::mremap(
            src.cast(),
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dest,
        )
    };
    check_ptr(p).map(|_| ())
}

/// `madvise(addr, len, advice)`.
///
/// # Safety
/// The range must be owned by pagewise. `MADV_DONTNEED`/`MADV_FREE` destroy its contents, so it
/// must hold no live block for those.
pub(crate) unsafe fn advise(addr: *mut u8, len: usize, advice: c_int) -> Result<(), Errno> {
    debug_assert_range(addr, len);
    // SAFETY: the caller owns the range and allows the advice's effect on its contents.
    check(unsafe { libc::madvise(addr.cast(), len, advice) })
}

/// `MADV_POPULATE_WRITE` (Linux 5.14): not yet in every libc release.
pub(crate) const MADV_POPULATE_WRITE: c_int = 23;

const PROBE_UNKNOWN: u8 = 0;
const PROBE_YES: u8 = 1;
const PROBE_NO: u8 = 2;

/// A feature probed once per process (race-tolerant: two threads may both probe).
pub(crate) struct Probe(AtomicU8);

impl Probe {
    pub(crate) const fn new() -> Probe {
        Probe(AtomicU8::new(PROBE_UNKNOWN))
    }

    pub(crate) fn get(&self, probe: impl FnOnce() -> bool) -> bool {
        match self.0.load(Ordering::Relaxed) {
            PROBE_YES => true,
            PROBE_NO => false,
            _ => {
                let yes = probe();
                self.0
                    .store(if yes { PROBE_YES } else { PROBE_NO }, Ordering::Relaxed);
                yes
            }
        }
    }

    /// Records that the kernel refused the feature after all.
    pub(crate) fn refuse(&self) {
        self.0.store(PROBE_NO, Ordering::Relaxed);
    }
}

/// "`madvise(0, 0, advice)` will return zero iff advice is supported by the kernel" (madvise(2)).
pub(crate) fn advice_supported(advice: c_int) -> bool {
    // SAFETY: a zero-length range touches no memory.
    unsafe { libc::madvise(ptr::null_mut(), 0, advice) == 0 }
}

static POPULATE_WRITE: Probe = Probe::new();
static FREE: Probe = Probe::new();
static VMA_NAME: Probe = Probe::new();

/// Whether `MADV_POPULATE_WRITE` works here (Linux 5.14+).
pub(crate) fn has_populate_write() -> bool {
    POPULATE_WRITE.get(|| advice_supported(MADV_POPULATE_WRITE))
}

/// Whether `MADV_FREE` works here (Linux 4.5+).
pub(crate) fn has_free() -> bool {
    FREE.get(|| advice_supported(libc::MADV_FREE))
}

/// Faults `[addr, addr+len)` in for writing. Returns whether it worked; on failure some pages may
/// be in, which is harmless (the block stays valid; they fault later).
///
/// # Safety
/// The range must be owned by pagewise and mapped read-write.
pub(crate) unsafe fn populate(addr: *mut u8, len: usize) -> bool {
    if !has_populate_write() {
        return false;
    }
    // SAFETY: the caller owns the range; POPULATE_WRITE keeps existing contents.
    match unsafe { advise(addr, len, MADV_POPULATE_WRITE) } {
        Ok(()) => true,
        Err(Errno(libc::EINVAL)) => {
            POPULATE_WRITE.refuse();
            false
        }
        Err(_) => false,
    }
}

const PR_SET_VMA: c_int = 0x53564d41;
const PR_SET_VMA_ANON_NAME: libc::c_ulong = 0;

/// Names the range `[anon:pagewise]` in `/proc/PID/maps` (Linux 5.17 with
/// `CONFIG_ANON_VMA_NAME`); silently does nothing where the kernel refuses.
///
/// # Safety
/// The range must be owned by pagewise.
pub(crate) unsafe fn name(addr: *mut u8, len: usize) {
    if !VMA_NAME.get(|| true) {
        return;
    }
    // SAFETY: PR_SET_VMA_ANON_NAME only labels the VMAs of a range the caller owns; the name is a
    // static NUL-terminated string (the kernel copies it).
    let rc = unsafe {
        libc::prctl(
            PR_SET_VMA,
            PR_SET_VMA_ANON_NAME,
            addr as libc::c_ulong,
            len as libc::c_ulong,
            c"pagewise".as_ptr() as libc::c_ulong,
        )
    };
    if rc != 0 && errno() == Errno(libc::EINVAL) {
        VMA_NAME.refuse();
    }
}

/// A coarse monotonic clock in milliseconds (`CLOCK_MONOTONIC_COARSE`, served by the vDSO without
/// a syscall; resolution one tick, 1–4 ms, enough for decay).
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Writes all of `bytes` to `fd` (stderr, or a copy of it), ignoring errors: diagnostics must
/// never fail the program (a closed `fd` writes nothing).
pub(crate) fn write_fd(fd: c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid readable slice for its length; a bad fd is an error return.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && errno() == Errno(libc::EINTR) {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Free RAM as the kernel counts it for `sysinfo(2)`: (`freeram + bufferram`, `totalram`), in
/// bytes. `None` if the call fails.
pub(crate) fn free_and_total_ram() -> Option<(u64, u64)> {
    // SAFETY: an all-zero sysinfo is a valid value for the kernel to overwrite.
    let mut si: libc::sysinfo = unsafe { core::mem::zeroed() };
    // SAFETY: si is a valid sysinfo to fill.
    if unsafe { libc::sysinfo(&mut si) } != 0 {
        return None;
    }
    let unit = u64::from(si.mem_unit.max(1));
    let free = (si.freeram as u64 + si.bufferram as u64).saturating_mul(unit);
    Some((free, (si.totalram as u64).saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_matches_the_kernel() {
        // SAFETY: sysconf has no preconditions.
        let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        assert_eq!(ps as usize, PAGE);
    }

    #[test]
    fn probes_known_and_unknown_advice() {
        assert!(advice_supported(libc::MADV_DONTNEED));
        assert!(!advice_supported(12345));
    }

    #[test]
    fn map_remap_unmap() {
        let p = map(PAGE * 4, 0).unwrap();
        // SAFETY: p is a fresh 4-page mapping owned by this test.
        unsafe {
            *p = 7;
            let q = remap(p, PAGE * 4, PAGE * 64).unwrap();
            assert_eq!(*q, 7);
            unmap(q, PAGE * 64).unwrap();
        }
    }

    #[test]
    fn mapping_around_gives_the_vma_bounds() {
        let p = map(PAGE * 8, 0).unwrap() as usize;
        // Split it in three: read-only in the middle.
        // SAFETY: p..p+8 pages is this test's own mapping.
        let rc = unsafe { libc::mprotect((p + 2 * PAGE) as *mut _, 2 * PAGE, libc::PROT_READ) };
        assert_eq!(rc, 0);
        let bounds = |a| mapping_around(a).unwrap().map(|m| (m.start, m.end));
        assert_eq!(bounds(p + PAGE), Some((p, p + 2 * PAGE)));
        assert_eq!(
            bounds(p + 3 * PAGE + 17),
            Some((p + 2 * PAGE, p + 4 * PAGE))
        );
        assert_eq!(bounds(p + 7 * PAGE), Some((p + 4 * PAGE, p + 8 * PAGE)));
        assert!(!mapping_around(p).unwrap().unwrap().pagewise);
        // SAFETY: as above; naming only labels the VMAs.
        unsafe { name(p as *mut u8, 2 * PAGE) };
        let named = mapping_around(p).unwrap().unwrap();
        assert_eq!(named.pagewise, VMA_NAME.get(|| true), "{named:?}");
        // Below vm.mmap_min_addr (64 KiB by default) nothing is ever mapped.
        assert_eq!(bounds(PAGE), None);
        // SAFETY: as above.
        unsafe { unmap(p as *mut u8, 8 * PAGE).unwrap() };
    }
}
