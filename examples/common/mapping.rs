//! A private anonymous read-write mapping made with `libc` alone (no allocator involved), and
//! page-stepping touch/read helpers. Shared by the seed experiment (`benches/seed.rs`,
//! `examples/report/seed.rs`) and the integration tests (`tests/common`), which include this
//! file with `#[path]`.

// Each including target uses a different subset.
#![allow(dead_code)]

/// The page size the touch and read loops step by.
pub const PAGE: usize = 4096;

/// A private anonymous read-write mapping, unmapped on drop.
pub struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Mapping {
    /// Maps `len` bytes; panics (with the OS error) if the kernel refuses.
    pub fn new(len: usize) -> Mapping {
        // SAFETY: a null hint with MAP_PRIVATE|MAP_ANONYMOUS creates a new mapping and touches
        // no existing one; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap({len}): {}",
            std::io::Error::last_os_error()
        );
        Mapping {
            ptr: p as *mut u8,
            len,
        }
    }

    /// `madvise` over the whole mapping.
    pub fn advise(&self, advice: libc::c_int) -> Result<(), std::io::Error> {
        advise(self.ptr, self.len, advice)
    }

    /// Writes `value` to one byte per page, as the seed's loop does.
    pub fn touch(&self, value: u8) {
        touch_pages(self.ptr, self.len, value);
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is readable for `len` bytes while self lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is writable for `len` bytes and uniquely owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`, which nothing else refers to.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// `madvise(ptr, len, advice)`, with the OS error on failure.
pub fn advise(ptr: *mut u8, len: usize, advice: libc::c_int) -> Result<(), std::io::Error> {
    // SAFETY: madvise does not access memory through the pointer in user space; the kernel
    // validates the range and returns an error for unmapped parts.
    let rc = unsafe { libc::madvise(ptr as *mut libc::c_void, len, advice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes one byte per 4 KiB page (forces a write fault on each untouched page).
pub fn touch_pages(ptr: *mut u8, len: usize, value: u8) {
    let mut off = 0;
    while off < len {
        // SAFETY: caller passes a writable range of `len` bytes; volatile so the store stays.
        unsafe { std::ptr::write_volatile(ptr.add(off), value) };
        off += PAGE;
    }
}

/// Reads one byte per 4 KiB page and returns them summed (keeps the loads alive).
pub fn read_pages(ptr: *const u8, len: usize) -> u64 {
    let mut off = 0;
    let mut sum = 0u64;
    while off < len {
        // SAFETY: caller passes a readable range of `len` bytes.
        sum += unsafe { std::ptr::read_volatile(ptr.add(off)) } as u64;
        off += PAGE;
    }
    sum
}
