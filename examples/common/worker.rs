//! The body of the `worker_*` examples: run one workload under this binary's global allocator
//! and print one CSV line that `examples/report` parses.
//!
//! Usage: `worker_X <workload> <size> [--iters N] [--warmup N] [--settle-ms N] [--threads N] [--touch-offset N] [--bound]`
//!
//! `--threads N` runs a churn workload on `N` threads instead of its own count (the report's
//! `--threads-sweep`). `--touch-offset N` writes each churned buffer's byte per page at `N`
//! bytes into the page rather than at its start: on the report's VM, writing the first line of
//! each page right after a `memset` of the buffer costs twice as much when the buffer starts on
//! a page boundary (pagewise, jemalloc and mimalloc blocks) as at 2224 bytes in (issue #20).
//!
//! Output, one line on stdout once the work is done (the report may start its next worker then):
//! `work,<allocator>,<workload>,<size>,<iters>,<time_ns>,<minflt>,<majflt>,<peak_rss_kib>,<check>,<cold_round_ns>`
//! and a second line `after,<rss_kib>,<lazyfree_kib>,<anon_huge_kib>` `--settle-ms` later
//! (default 1500), read from `/proc/self/smaps_rollup`.
//!
//! Before the clock starts, the worker runs `--warmup` rounds (default 1; for the multi-round
//! workloads `mixed_threads`, `mixed_threads8`, `random` and `malloc_large`, whose `--iters`
//! counts iterations, per thread for the threaded ones: a fifth of `--iters`) of the same work,
//! so the timed rounds show the allocator's steady state, as a long-running program sees it; the
//! warm-up's time per round (per iteration for the multi-round workloads) is printed as
//! `cold_round_ns`, the cost a fresh process pays once.
//! Time and faults cover the timed work only; the peak RSS is `ru_maxrss` of this fresh process
//! (warm-up included). With `--bound` the work runs on buffers allocated and faulted in (on huge
//! pages where THP allows) before the clock starts (the warm-up runs on them too).

use crate::workloads::{self, Workload};
use std::io::Write;
use std::time::{Duration, Instant};

/// `getrusage(RUSAGE_SELF)`: (minor faults, major faults, max RSS in KiB).
fn rusage() -> (u64, u64, u64) {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `rusage`; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0, "getrusage failed");
    (u.ru_minflt as u64, u.ru_majflt as u64, u.ru_maxrss as u64)
}

/// A `key:   123 kB` field of `/proc/self/smaps_rollup`, in KiB (0 if absent).
pub fn rollup_kib(rollup: &str, key: &str) -> u64 {
    rollup
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned part of `addr..addr+len` (a buffer not yet
/// touched), so that THP in `madvise` mode backs it with huge pages.
fn advise_huge(addr: usize, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (addr + HUGE - 1) & !(HUGE - 1);
    let end = (addr + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: start..end lies inside the caller's live allocation; MADV_HUGEPAGE only
        // changes how its pages fault in, never their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "{msg}\nusage: worker <workload> <size> [--iters N] [--settle-ms N] [--threads N] [--touch-offset N] [--bound]"
    );
    eprintln!(
        "workloads: {}",
        Workload::ALL.map(Workload::name).join(", ")
    );
    std::process::exit(2);
}

/// Parses the command line, runs the work, prints the two lines.
pub fn run(allocator: &str) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(workload), Some(size)) = (args.first(), args.get(1)) else {
        usage("missing arguments");
    };
    let workload = Workload::parse(workload).unwrap_or_else(|| usage("unknown workload"));
    let size = workloads::parse_size(size).unwrap_or_else(|| usage("bad size"));
    let flag = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        Some(
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(name)),
        )
    };
    let iters = flag("--iters").unwrap_or(3) as usize;
    let warmup = flag("--warmup").unwrap_or(1) as usize;
    let settle = Duration::from_millis(flag("--settle-ms").unwrap_or(1500));
    let threads = flag("--threads").map(|n| n.max(1) as usize);
    let touch_offset = flag("--touch-offset").unwrap_or(0) as usize;
    let bound = args.iter().any(|a| a == "--bound");
    if bound && !workload.has_bound() {
        usage("no bound variant for this workload");
    }
    let label = if bound { "bound" } else { allocator };

    // Set-up outside the clock: the bound's retained buffers, already faulted in, on huge pages
    // where the kernel gives them (the best case any allocator can reach, not glibc's 4 KiB).
    let mut buf = if bound && workload == Workload::Zeroed {
        let mut b = Vec::with_capacity(size);
        advise_huge(b.as_ptr() as usize, size);
        b.resize(size, 1u8);
        b
    } else {
        Vec::new()
    };
    let mut vec = if bound && workload == Workload::VecPush {
        let mut v = Vec::with_capacity(size / 8);
        advise_huge(v.as_ptr() as usize, size);
        v.resize(size / 8, 1u64);
        v
    } else {
        Vec::new()
    };

    // `iters` rounds (or iterations, for the multi-round workloads) starting at round `first`.
    let mut work = |first: usize, iters: usize| -> u64 {
        if let Some(mut shape) = workload.churn(size) {
            shape.threads = threads.unwrap_or(shape.threads);
            shape.touch_offset = touch_offset;
            return workloads::churn(shape, iters, first as u64 + 1);
        }
        match workload {
            Workload::MallocLarge => workloads::malloc_large(size, iters, first as u64 + 1),
            _ => (first..first + iters).fold(0u64, |check, round| {
                check.wrapping_add(match workload {
                    Workload::Zeroed if bound => workloads::zeroed_bound(&mut buf, round),
                    Workload::VecPush if bound => workloads::vec_push_bound(&mut vec, size),
                    w => workloads::run_round(w, size, round),
                })
            }),
        }
    };
    let warmup_iters = if workload.multi_round() && warmup > 0 {
        (iters / 5).max(1)
    } else {
        warmup
    };
    let cold = Instant::now();
    let mut check = work(iters, warmup_iters);
    let cold_round_ns = cold.elapsed().as_nanos() / warmup_iters.max(1) as u128;

    let (flt0, maj0, _) = rusage();
    let start = Instant::now();
    check = check.wrapping_add(work(0, iters));
    let elapsed = start.elapsed();
    let (flt1, maj1, peak_kib) = rusage();
    drop((buf, vec));

    let mut out = std::io::stdout().lock();
    let name = workload.name();
    let (ns, flt, maj) = (elapsed.as_nanos(), flt1 - flt0, maj1 - maj0);
    writeln!(
        out,
        "work,{label},{name},{size},{iters},{ns},{flt},{maj},{peak_kib},{check},{cold_round_ns}"
    )
    .unwrap();
    out.flush().unwrap();

    std::thread::sleep(settle);
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let (rss, lazy) = (rollup_kib(&rollup, "Rss"), rollup_kib(&rollup, "LazyFree"));
    let huge = rollup_kib(&rollup, "AnonHugePages");
    writeln!(out, "after,{rss},{lazy},{huge}").unwrap();
}
