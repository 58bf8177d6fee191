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

mod process;

pub(crate) use process::{
    at_exit, at_fork_child, block_all_signals, getenv, pid, rusage_faults, sleep_ms, spawn_detached,
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

/// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|extra, -1, 0)`: a fresh,
/// zero-filled private anonymous mapping.
pub(crate) fn map(len: usize, extra_flags: c_int) -> Result<*mut u8, Errno> {
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
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
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
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
}

/// `munmap(addr, len)`: returns the range and its pages to the kernel.
///
/// # Safety
/// The range must be owned by pagewise and hold no live block.
pub(crate) unsafe fn unmap(addr: *mut u8, len: usize) -> Result<(), Errno> {
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
    // SAFETY: the caller owns the old range; MAYMOVE lets the kernel choose a free destination,
    // so no other mapping is touched.
    let p = unsafe { libc::mremap(old.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
}

/// `madvise(addr, len, advice)`.
///
/// # Safety
/// The range must be owned by pagewise. `MADV_DONTNEED`/`MADV_FREE` destroy its contents, so it
/// must hold no live block for those.
pub(crate) unsafe fn advise(addr: *mut u8, len: usize, advice: c_int) -> Result<(), Errno> {
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

/// Writes all of `bytes` to stderr, ignoring errors (diagnostics must never fail the program).
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid readable slice for its length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && errno() == Errno(libc::EINTR) {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Why a small file could not be read (see [`read_regular_file`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileError {
    /// `open(2)` failed with this errno (missing, permission, `EMFILE`, ...).
    Open(Errno),
    /// Not a regular file; the `S_IFMT` bits of its mode. procfs, cgroupfs and ordinary files
    /// are regular; a FIFO, socket, device or directory is not, and reading one may block forever
    /// or never end.
    NotRegular(u32),
    /// `pread(2)` failed with this errno (`EOPNOTSUPP` from a cgroup's `memory.pressure` when PSI
    /// is disabled for it, `EIO`, ...).
    Read(Errno),
}

/// [`read_regular_file`] for callers that only need the bytes (`/proc/self/...` files).
pub(crate) fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    match read_regular_file(path, buf) {
        Ok((n, _)) => Ok(n),
        Err(FileError::Open(e) | FileError::Read(e)) => Err(e),
        Err(FileError::NotRegular(_)) => Err(Errno(libc::EINVAL)),
    }
}

/// A file's identity, to notice that a path now names another file (replaced by a rename).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// Reads a small regular file into `buf` without allocating and without ever blocking on the
/// file's kind: returns the bytes read and the file's identity.
///
/// The file is opened with `O_NONBLOCK` (so a FIFO without a writer cannot hang the open, see
/// fifo(7)), checked to be a regular file with `fstat` before any read, and closed before
/// returning: nothing keeps a descriptor, so a program that closes descriptors it did not open
/// (`close_range(3, ~0)`, daemons, sandboxes) can never have pagewise close or read its files
/// later (issue #10). A file that was replaced or deleted is seen at the next read.
pub(crate) fn read_regular_file(
    path: &core::ffi::CStr,
    buf: &mut [u8],
) -> Result<(usize, FileId), FileError> {
    // SAFETY: path is NUL-terminated; O_CLOEXEC keeps the fd out of exec'd children; O_NOCTTY
    // keeps a terminal from becoming our controlling one; O_NONBLOCK keeps a FIFO from blocking.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(FileError::Open(errno()));
    }
    let r = read_regular(fd, buf);
    // SAFETY: fd was opened above, is ours alone, and is closed once.
    unsafe { libc::close(fd) };
    r
}

fn read_regular(fd: c_int, buf: &mut [u8]) -> Result<(usize, FileId), FileError> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fd is open and st is a valid stat to fill.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(FileError::Read(errno()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG {
        return Err(FileError::NotRegular(kind));
    }
    let n = pread_all(fd, buf).map_err(FileError::Read)?;
    Ok((
        n,
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
    ))
}

/// Counts the lines of a file (`/proc/self/maps`: one per mapping) with a stack buffer, never
/// allocating. Reads all of it: about 10 ms per 65,000 lines.
pub(crate) fn count_lines(path: &core::ffi::CStr) -> Result<usize, Errno> {
    // SAFETY: path is NUL-terminated; O_CLOEXEC keeps the fd out of exec'd children.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    let mut buf = [0u8; 4096];
    let mut lines = 0;
    let result = loop {
        // SAFETY: buf is a valid writable buffer of its length; fd is open.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == Errno(libc::EINTR) {
                continue;
            }
            break Err(e);
        }
        if n == 0 {
            break Ok(lines);
        }
        lines += buf[..n as usize].iter().filter(|&&b| b == b'\n').count();
    };
    // SAFETY: fd was opened above, is ours alone, and is closed once.
    unsafe { libc::close(fd) };
    result
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

/// `pread` from offset 0 until `buf` is full or the file ends.
pub(crate) fn pread_all(fd: c_int, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: the destination is the unfilled tail of buf.
        let r = unsafe {
            libc::pread(
                fd,
                buf[n..].as_mut_ptr().cast(),
                buf.len() - n,
                n as libc::off_t,
            )
        };
        if r < 0 {
            let e = errno();
            if e == Errno(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            break;
        }
        n += r as usize;
    }
    Ok(n)
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
}

// ---- Sequential reads of regular files (cgroup discovery, `src/cgroup.rs`). ----

/// A regular file opened for one pass from start to end, with the guarantees of
/// [`read_regular_file`] (an `O_NONBLOCK` open, an `fstat` check that it is a regular file before
/// any read), for files that may not fit in one stack buffer: `/proc/self/mountinfo` runs to
/// several KiB on a container host. The descriptor lives only as long as the value (one call of
/// the caller) and is closed on drop, so nothing is kept between calls (issue #10).
#[derive(Debug)]
pub(crate) struct RegularFile {
    fd: c_int,
}

impl RegularFile {
    /// Opens `path` and checks that it is a regular file.
    pub(crate) fn open(path: &core::ffi::CStr) -> Result<RegularFile, FileError> {
        // SAFETY: path is NUL-terminated; the flags are those of read_regular_file (O_NONBLOCK:
        // a FIFO without a writer cannot hang the open).
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            return Err(FileError::Open(errno()));
        }
        // Owned from here: dropped (closed) on every return below.
        let file = RegularFile { fd };
        // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fd is open and st is a valid stat to fill.
        if unsafe { libc::fstat(file.fd, &mut st) } != 0 {
            return Err(FileError::Read(errno()));
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG {
            return Err(FileError::NotRegular(kind));
        }
        Ok(file)
    }

    /// Reads the next bytes into `buf`; 0 at the end of the file (or if `buf` is empty).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        loop {
            // SAFETY: buf is a valid writable buffer of its length; fd is open.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = errno();
            if e != Errno(libc::EINTR) {
                return Err(FileError::Read(e));
            }
        }
    }
}

impl Drop for RegularFile {
    fn drop(&mut self) {
        // SAFETY: fd was opened by RegularFile::open, is ours alone, and is closed once, here.
        unsafe { libc::close(self.fd) };
    }
}
