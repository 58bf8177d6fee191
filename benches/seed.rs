//! Run with: cargo bench --bench seed
//!
//! The seed: the experiment of Changkun Ou's 2021 post "Performance Differences from Page Faults
//! vs. Prefetching" (<https://changkun.de/blog/posts/page-fault-vs-prefetch>), on raw anonymous
//! mappings (no allocator involved): touch one byte per 4 KiB page of a fresh mapping of
//! 1 MiB … 1 GiB with 4 KiB faults, with `MADV_HUGEPAGE` and with `MADV_POPULATE_WRITE`; release
//! it with `MADV_DONTNEED` vs `MADV_FREE`; and write the same range again after each kind of
//! release (the reuse case the seed never measured).
//!
//! Mapping, advice and unmapping happen in `with_inputs` or on drop, outside the timed region,
//! as in the seed; `sample_size = 1` keeps one mapping alive at a time.

use divan::counter::BytesCount;
use divan::Bencher;

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

#[path = "../examples/common/mapping.rs"]
mod mapping;
use mapping::Mapping;

/// A fresh mapping with `advice` applied (0 = none).
fn mapped(len: usize, advice: libc::c_int) -> Mapping {
    let m = Mapping::new(len);
    if advice != 0 {
        advise(&m, advice);
    }
    m
}

/// `madvise` over the whole mapping; panics if the kernel refuses.
fn advise(m: &Mapping, advice: libc::c_int) {
    m.advise(advice)
        .unwrap_or_else(|e| panic!("madvise({advice}) failed: {e}"));
}

/// A mapping already touched and then released with `release`.
fn released(len: usize, advice: libc::c_int, release: libc::c_int) -> Mapping {
    let m = mapped(len, advice);
    m.touch(42);
    advise(&m, release);
    m
}

/// Table A: touch a fresh mapping.
mod touch {
    use super::*;

    #[divan::bench(args = SIZES)]
    fn faults_4k(bencher: Bencher, len: usize) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| mapped(len, libc::MADV_NOHUGEPAGE))
            .bench_local_values(|m| {
                m.touch(42);
                m
            });
    }

    #[divan::bench(args = SIZES)]
    fn hugepage(bencher: Bencher, len: usize) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| mapped(len, libc::MADV_HUGEPAGE))
            .bench_local_values(|m| {
                m.touch(42);
                m
            });
    }

    /// `MADV_POPULATE_WRITE` inside the timed region, then the touch.
    #[divan::bench(args = SIZES)]
    fn populate_write(bencher: Bencher, len: usize) {
        bencher
            .counter(BytesCount::new(len))
            .with_inputs(|| mapped(len, libc::MADV_NOHUGEPAGE))
            .bench_local_values(|m| {
                advise(&m, libc::MADV_POPULATE_WRITE);
                m.touch(42);
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
                let m = mapped(len, advice);
                m.touch(42);
                m
            })
            .bench_local_values(|m| {
                advise(&m, release);
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
            .with_inputs(|| released(len, advice, release))
            .bench_local_values(|m| {
                m.touch(42);
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
