//! `--threads-sweep`: `mixed_threads8`'s work (each thread churning one 4–5 MiB zeroed buffer
//! at a time) on 1, 2, 4, 8, 16 and 32 threads, the same total number of buffers on each, so that
//! the shape of scaling shows even on a machine with few cores (issue #20). Prints, per thread
//! count and allocator, the time per buffer, the peak RSS and the RSS after the work (medians of
//! `--reps` runs, with the min–max), and writes `sweep.csv`.

use super::{allocators, finish, median, run_range, spawn, Case, Options, Sample};
use crate::workloads::{Workload, MIB};
use std::fmt::Write as _;

/// The thread counts of the sweep.
const THREADS: [usize; 6] = [1, 2, 4, 8, 16, 32];
/// Buffers per run, over all threads: 8 threads of 150 iterations, as `--quick`'s
/// `mixed_threads8` (the full report's 300 per thread took over 5 s per jemalloc run).
const TOTAL_OPS: usize = 1200;
/// The allocators compared unless `--allocators` says otherwise.
const DEFAULT_ALLOCATORS: [&str; 4] = ["system", "jemalloc", "mimalloc", "pagewise-retain"];

pub(crate) fn run(opt: &Options) {
    let mut allocs = allocators();
    allocs.retain(|a| match &opt.allocators {
        Some(keep) => keep.contains(&a.name),
        None => DEFAULT_ALLOCATORS.contains(&a.name.as_str()),
    });
    let dir = super::worker_dir(opt, &allocs);
    let cases: Vec<Case> = THREADS
        .iter()
        .map(|&threads| Case {
            workload: Workload::MixedThreads8,
            size: 5 * MIB,
            iters: TOTAL_OPS / threads,
            threads,
        })
        .collect();
    let mut runs = vec![vec![Vec::<Sample>::new(); allocs.len()]; cases.len()];
    for rep in 0..opt.reps {
        for (ci, case) in cases.iter().enumerate() {
            for k in 0..allocs.len() {
                // The order rotates between repetitions, as in the report.
                let ai = (k + rep + ci) % allocs.len();
                let (_, s) = finish(spawn(&dir, case, &allocs[ai], opt.settle_ms, (ci, ai)));
                eprintln!(
                    "rep {} threads {} {}: {:.1} ms",
                    rep + 1,
                    case.threads,
                    allocs[ai].name,
                    s.time_ms
                );
                runs[ci][ai].push(s);
            }
        }
    }
    let mut table = String::from(
        "\nThread-count sweep: mixed_threads8's buffers (4-5 MiB, zeroed, one per thread at a time), \
         1200 in all; medians [min-max]\n",
    );
    let mut csv = String::from(
        "threads,allocator,runs,us_per_op,us_min,us_max,peak_mib,peak_min,peak_max,rss_after_mib\n",
    );
    let _ = writeln!(
        table,
        "{:>7}  {:<16} {:>24} {:>24} {:>9}",
        "threads", "allocator", "us/buffer", "peak MiB", "after MiB"
    );
    for (ci, case) in cases.iter().enumerate() {
        for (ai, a) in allocs.iter().enumerate() {
            let r = &runs[ci][ai];
            if r.is_empty() {
                continue;
            }
            let per_op = |ms: f64| ms * 1000.0 / (case.iters * case.threads) as f64;
            let t = per_op(median(r.iter().map(|s| s.time_ms)));
            let (tlo, thi) = run_range(r, |s| s.time_ms);
            let p = median(r.iter().map(|s| s.peak_mib));
            let (plo, phi) = run_range(r, |s| s.peak_mib);
            let after = median(r.iter().map(|s| s.rss_after_mib));
            let _ = writeln!(
                table,
                "{:>7}  {:<16} {:>24} {:>24} {:>9.1}",
                case.threads,
                a.name,
                format!("{t:.0} [{:.0}-{:.0}]", per_op(tlo), per_op(thi)),
                format!("{p:.1} [{plo:.1}-{phi:.1}]"),
                after
            );
            let _ = writeln!(
                csv,
                "{},{},{},{t:.1},{:.1},{:.1},{p:.1},{plo:.1},{phi:.1},{after:.1}",
                case.threads,
                a.name,
                r.len(),
                per_op(tlo),
                per_op(thi)
            );
        }
    }
    print!("{table}");
    std::fs::write(opt.out.join("sweep.csv"), csv).expect("writing sweep.csv");
}
