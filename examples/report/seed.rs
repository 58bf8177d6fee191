//! The seed: the experiment of Changkun Ou's 2021 post "Performance Differences from Page Faults
//! vs. Prefetching" (<https://changkun.de/blog/posts/page-fault-vs-prefetch>), on raw anonymous
//! mappings, run in-process with `libc`: touching a fresh mapping (one byte per 4 KiB page) with
//! 4 KiB faults, with `MADV_HUGEPAGE` and with `MADV_POPULATE_WRITE`; releasing with
//! `MADV_DONTNEED` vs `MADV_FREE`; and the case the seed never measured, the same range written
//! again after each kind of release.
//!
//! Like the seed, each round maps a *new* range and released ranges are not unmapped at once:
//! they pile up, but only up to a cap (2 GiB, 512 MiB in quick mode), after which they are
//! unmapped. The seed never unmapped and so ran into reclaim; this box has room, so it does not.

use std::time::Instant;

const MIB: usize = 1 << 20;

/// One row of `seed.csv`.
pub struct SeedRow {
    /// `A` (touch a fresh mapping by prefetch mode), `B` (touch a fresh mapping while earlier
    /// ones released with DONTNEED or FREE pile up), `release` (the madvise call) or `reuse`
    /// (touch the same range again after the release).
    pub table: &'static str,
    pub size_mib: usize,
    /// `4k`, `hugepage`, `populate`, `populate+hugepage`, or `<mode>/<release>`.
    pub variant: String,
    pub median_us: f64,
    pub minflt_per_op: f64,
    pub reps: usize,
}

#[path = "../common/mapping.rs"]
mod mapping;
use mapping::Mapping;

fn minflt() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_minflt as u64
}

/// Times `f`: (microseconds, minor faults).
fn timed(f: impl FnOnce()) -> (f64, u64) {
    let f0 = minflt();
    let t = Instant::now();
    f();
    let us = t.elapsed().as_secs_f64() * 1e6;
    (us, minflt() - f0)
}

/// Median time and mean faults of a set of (µs, faults) samples.
fn summarize(samples: &mut [(f64, u64)]) -> (f64, f64) {
    let n = samples.len();
    let faults = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n as f64;
    (super::median(samples.iter().map(|s| s.0)), faults)
}

/// Runs the experiment; `quick` uses fewer sizes and a smaller budget per size.
pub fn run(quick: bool) -> Vec<SeedRow> {
    let sizes: Vec<usize> = if quick {
        vec![1, 4, 16, 64, 256]
    } else {
        (0..=10).map(|i| 1 << i).collect()
    };
    let budget = if quick { 256 * MIB } else { 1024 * MIB };
    let cap = if quick { 512 * MIB } else { 2048 * MIB };
    let mut rows = Vec::new();
    for &mib in &sizes {
        let len = mib * MIB;
        let reps = (budget / len).clamp(3, 200);
        let mut push = |table, variant: String, samples: &mut Vec<(f64, u64)>| {
            let (median_us, minflt_per_op) = summarize(samples);
            rows.push(SeedRow {
                table,
                size_mib: mib,
                variant,
                median_us,
                minflt_per_op,
                reps,
            });
        };
        for (mode, advice) in [
            ("4k", libc::MADV_NOHUGEPAGE),
            ("hugepage", libc::MADV_HUGEPAGE),
        ] {
            for (rel, release) in [("dontneed", libc::MADV_DONTNEED), ("free", libc::MADV_FREE)] {
                let (mut fresh, mut released, mut reuse) = (vec![], vec![], vec![]);
                let mut kept = Vec::new();
                for _ in 0..reps {
                    let m = Mapping::new(len);
                    let _ = m.advise(advice);
                    fresh.push(timed(|| m.touch(42)));
                    released.push(timed(|| m.advise(release).expect("madvise failed")));
                    reuse.push(timed(|| m.touch(42)));
                    let _ = m.advise(release);
                    kept.push(m);
                    if kept.len() * len >= cap {
                        kept.clear();
                    }
                }
                drop(kept);
                if rel == "dontneed" {
                    push("A", mode.to_string(), &mut fresh.clone());
                }
                push("B", format!("{mode}/{rel}"), &mut fresh);
                push("release", format!("{mode}/{rel}"), &mut released);
                push("reuse", format!("{mode}/{rel}"), &mut reuse);
            }
        }
        for (name, advice) in [
            ("populate", libc::MADV_NOHUGEPAGE),
            ("populate+hugepage", libc::MADV_HUGEPAGE),
        ] {
            let mut samples = Vec::new();
            for _ in 0..reps {
                let m = Mapping::new(len);
                let _ = m.advise(advice);
                samples.push(timed(|| {
                    let _ = m.advise(libc::MADV_POPULATE_WRITE);
                    m.touch(42);
                }));
            }
            push("A", name.to_string(), &mut samples);
        }
        eprintln!("seed: {mib} MiB done ({reps} rounds per cell)");
    }
    rows
}

/// Writes `seed.csv`.
pub fn write_csv(path: &std::path::Path, rows: &[SeedRow]) -> std::io::Result<()> {
    let mut s = String::from("table,size_mib,variant,median_us,minflt_per_op,reps\n");
    for r in rows {
        s += &format!(
            "{},{},{},{:.1},{:.1},{}\n",
            r.table, r.size_mib, r.variant, r.median_us, r.minflt_per_op, r.reps
        );
    }
    std::fs::write(path, s)
}

/// Prints the seed's two tables and the reuse case side by side.
pub fn print(rows: &[SeedRow]) {
    let get = |table: &str, mib: usize, variant: &str| {
        rows.iter()
            .find(|r| r.table == table && r.size_mib == mib && r.variant == variant)
            .map_or(f64::NAN, |r| r.median_us)
    };
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.size_mib).collect();
    sizes.dedup();
    println!("\nSeed table A: touch a fresh mapping, median µs per op");
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10}",
        "MiB", "4k", "hugepage", "populate", "pop+huge"
    );
    for &m in &sizes {
        let a = |v| get("A", m, v);
        println!(
            "{m:>8} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            a("4k"),
            a("hugepage"),
            a("populate"),
            a("populate+hugepage")
        );
    }
    let variants = [
        "hugepage/dontneed",
        "hugepage/free",
        "4k/dontneed",
        "4k/free",
    ];
    for (table, title) in [
        (
            "B",
            "Seed table B: touch a fresh mapping while released ones pile up",
        ),
        ("release", "The release call itself (madvise)"),
        (
            "reuse",
            "Reuse (never measured by the seed): touch the same range again after release",
        ),
    ] {
        println!("\n{title}, median µs per op");
        println!(
            "{:>8} {:>18} {:>18} {:>18} {:>18}",
            "MiB", variants[0], variants[1], variants[2], variants[3]
        );
        for &m in &sizes {
            let v = variants.map(|v| get(table, m, v));
            println!(
                "{m:>8} {:>18.0} {:>18.0} {:>18.0} {:>18.0}",
                v[0], v[1], v[2], v[3]
            );
        }
    }
}
