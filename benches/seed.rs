//! Run with: cargo bench --bench seed
//!
//! The seed post's experiment on raw anonymous mappings (no allocator involved): touch one byte
//! per 4 KiB page of a fresh mapping of 1 MiB … 1 GiB with 4 KiB faults, with `MADV_HUGEPAGE`
//! and with `MADV_POPULATE_WRITE`; release it with `MADV_DONTNEED` vs `MADV_FREE`; and write the
//! same range again after each kind of release (the reuse case the seed never measured).
//!
//! Mapping, advice and unmapping happen in `with_inputs` or on drop, outside the timed region,
//! as in the seed; `sample_size = 1` keeps one mapping alive at a time.

use divan::counter::BytesCount;
use divan::Bencher;

const PAGE: usize = 4096;
const MIB: usize = 1 << 20;

/// 1 MiB … 1 GiB, doubling.
const SIZES: &[usize] = &[
    MIB,
    2 * MIB,
    4 * MIB,
    8 * MIB,
    16 * MIB,
    32 * MIB,
    64 * MIB,
    128 * MIB,
    256 * MIB,
    512 * MIB,
    1024 * MIB,
];

fn main() {
    // Defaults that keep the whole sweep to a few minutes; command-line options override them.
    divan::Divan::default()
        .sample_count(10)
        .sample_size(1)
        .max_time(std::time::Duration::from_secs(1))
        .config_with_args()
        .main();
}

/// A private anonymous mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes and applies `advice` (0 = none).
    fn new(len: usize, advice: libc::c_int) -> Mapping {
        // SAFETY: a null hint with MAP_PRIVATE|MAP_ANONYMOUS creates a new mapping and touches
        // no existing one; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap failed");
        let m = Mapping {
            ptr: ptr.cast(),
            len,
        };
        if advice != 0 {
            m.advise(advice);
        }
        m
    }

    fn advise(&self, advice: libc::c_int) {
        // SAFETY: the range is exactly our own live mapping; the advice changes how its pages
        // are backed, never which addresses are valid.
        let rc = unsafe { libc::madvise(self.ptr.cast(), self.len, advice) };
        assert_eq!(rc, 0, "madvise({advice}) failed");
    }

    /// Writes one byte per page, as the seed's loop does.
    fn touch(&self) {
        for off in (0..self.len).step_by(PAGE) {
            // SAFETY: `off < len`, inside our read-write mapping.
            unsafe { self.ptr.add(off).write_volatile(42) };
        }
    }

    /// A mapping already touched and then released with `release`.
    fn released(len: usize, advice: libc::c_int, release: libc::c_int) -> Mapping {
        let m = Mapping::new(len, advice);
        m.touch();
        m.advise(release);
        m
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`, which nothing else refers to.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Table A: touch a fresh mapping.
mod touch {
    use super::*;

    #[divan::bench(args = SIZES)]
    fn faults_4k(bencher: Bencher, len: usize) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| Mapping::new(len, libc::MADV_NOHUGEPAGE))
            .bench_local_values(|m| {
                m.touch();
                m
            });
    }

    #[divan::bench(args = SIZES)]
    fn hugepage(bencher: Bencher, len: usize) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| Mapping::new(len, libc::MADV_HUGEPAGE))
            .bench_local_values(|m| {
                m.touch();
                m
            });
    }

    /// `MADV_POPULATE_WRITE` inside the timed region, then the touch.
    #[divan::bench(args = SIZES)]
    fn populate_write(bencher: Bencher, len: usize) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| Mapping::new(len, libc::MADV_NOHUGEPAGE))
            .bench_local_values(|m| {
                m.advise(libc::MADV_POPULATE_WRITE);
                m.touch();
                m
            });
    }
}

/// Table B's release step: the madvise call on a touched mapping.
mod release {
    use super::*;

    fn bench(bencher: Bencher, len: usize, advice: libc::c_int, release: libc::c_int) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| {
                let m = Mapping::new(len, advice);
                m.touch();
                m
            })
            .bench_local_values(|m| {
                m.advise(release);
                m
            });
    }

    #[divan::bench(args = SIZES)]
    fn dontneed_4k(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_NOHUGEPAGE, libc::MADV_DONTNEED);
    }

    #[divan::bench(args = SIZES)]
    fn free_4k(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_NOHUGEPAGE, libc::MADV_FREE);
    }

    #[divan::bench(args = SIZES)]
    fn dontneed_hugepage(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_HUGEPAGE, libc::MADV_DONTNEED);
    }

    #[divan::bench(args = SIZES)]
    fn free_hugepage(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_HUGEPAGE, libc::MADV_FREE);
    }
}

/// The reuse case: write the same range again after each kind of release.
mod reuse {
    use super::*;

    fn bench(bencher: Bencher, len: usize, advice: libc::c_int, release: libc::c_int) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| Mapping::released(len, advice, release))
            .bench_local_values(|m| {
                m.touch();
                m
            });
    }

    #[divan::bench(args = SIZES)]
    fn after_dontneed_4k(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_NOHUGEPAGE, libc::MADV_DONTNEED);
    }

    #[divan::bench(args = SIZES)]
    fn after_free_4k(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_NOHUGEPAGE, libc::MADV_FREE);
    }

    #[divan::bench(args = SIZES)]
    fn after_dontneed_hugepage(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_HUGEPAGE, libc::MADV_DONTNEED);
    }

    #[divan::bench(args = SIZES)]
    fn after_free_hugepage(bencher: Bencher, len: usize) {
        bench(bencher, len, libc::MADV_HUGEPAGE, libc::MADV_FREE);
    }
}
