//! Run with: cargo run --release --features allocator-api2 --example per_collection
//! [-- --quick] [--reps N]
//!
//! One collection at a time: the global allocator stays `System`, and two collections get
//! `PageAlloc` instances of their own, through `allocator_api2::alloc::Allocator`:
//!
//! - a big `hashbrown` map (a table that a service loads once, sized up front, and keeps: 4 M
//!   entries, 136 MiB) on an instance that retains its pages and maps them as huge pages
//!   (`retain`, `hugepage`);
//! - a scratch `Vec` (a query's result set, built by pushes and dropped by every query: 32 MiB)
//!   on an instance that gives its pages back at every free (`dontneed`).
//!
//! The same work runs three ways, each in a fresh child process of this binary:
//!
//! | mode | the map | the scratch Vec |
//! |---|---|---|
//! | `system` | `System` | `System` |
//! | `global` | one `PageAlloc::new()` | the same instance |
//! | `per-collection` | `PageAlloc` (`retain`, `hugepage`) | another `PageAlloc` (`dontneed`) |
//!
//! `global` is what `#[global_allocator] static GLOBAL: PageAlloc = PageAlloc::new();` does to
//! this program: every allocation of 256 KiB and more goes to one instance with the default
//! configuration (`PAGEWISE_*` variables apply), everything smaller to `System`. A global
//! allocator is fixed when the program is built, so this binary gives both collections one such
//! instance instead: their blocks are the only ones that size (the rest is small and goes to
//! `System` in every mode).
//!
//! Each child prints one line; the parent prints the median of `--reps` runs per mode (default 5; 3
//! with `--quick`, which also makes the work 4 times smaller), the modes run in a rotating order.
//! Figures: time to build the map and to run the queries, minor faults, peak RSS (`ru_maxrss`), the
//! median RSS right after each query dropped its scratch Vec (what the service holds between
//! queries), and the process's bytes on huge pages at the end (`AnonHugePages`). A `per-collection`
//! child also prints both instances' `stats()`; the parent shows those of its last one.

use std::process::Command;
use std::time::Instant;

use allocator_api2::alloc::{Allocator, Global};
use allocator_api2::vec::Vec as AVec;
use hashbrown::{DefaultHashBuilder, HashMap};
use pagewise::{Config, PageAlloc, Prefetch, ProcessMemory, Release};

#[path = "common/median.rs"]
mod median;

/// The environment variable that makes this binary a child running one mode.
const MODE_VAR: &str = "PER_COLLECTION_MODE";
const MODES: [&str; 3] = ["system", "global", "per-collection"];
const MIB: f64 = (1 << 20) as f64;

/// `global`: the default configuration, as `#[global_allocator]` would have it.
static GLOBAL_LIKE: PageAlloc = PageAlloc::new();
/// `per-collection`: the table keeps its pages, on huge pages.
static TABLE: PageAlloc = PageAlloc::new().with_config(
    Config::DEFAULT
        .ignore_env()
        .release(Release::Retain)
        .prefetch(Prefetch::HugePage),
);
/// `per-collection`: every query's scratch goes back to the kernel when it is dropped.
static SCRATCH: PageAlloc =
    PageAlloc::new().with_config(Config::DEFAULT.ignore_env().release(Release::DontNeed));

/// The size of the work: map entries and queries.
struct Size {
    entries: u64,
    queries: u64,
}

/// What one run measured.
#[derive(Clone, Copy, Default)]
struct Figures {
    build_ms: f64,
    query_ms: f64,
    minflt: f64,
    peak_rss_mib: f64,
    between_rss_mib: f64,
    huge_mib: f64,
}

impl Figures {
    const NAMES: [&'static str; 6] = [
        "build_ms",
        "query_ms",
        "minflt",
        "peak_rss_mib",
        "between_rss_mib",
        "huge_mib",
    ];

    fn values(&self) -> [f64; 6] {
        [
            self.build_ms,
            self.query_ms,
            self.minflt,
            self.peak_rss_mib,
            self.between_rss_mib,
            self.huge_mib,
        ]
    }

    fn from_values(v: [f64; 6]) -> Figures {
        Figures {
            build_ms: v[0],
            query_ms: v[1],
            minflt: v[2],
            peak_rss_mib: v[3],
            between_rss_mib: v[4],
            huge_mib: v[5],
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let size = if quick {
        Size {
            entries: 1 << 20,
            queries: 6,
        }
    } else {
        Size {
            entries: 4 << 20,
            queries: 16,
        }
    };
    if let Ok(mode) = std::env::var(MODE_VAR) {
        let f = match mode.as_str() {
            "system" => run(Global, Global, &size),
            "global" => run(&GLOBAL_LIKE, &GLOBAL_LIKE, &size),
            "per-collection" => {
                let f = run(&TABLE, &SCRATCH, &size);
                eprintln!("table:   {}\nscratch: {}", TABLE.stats(), SCRATCH.stats());
                f
            }
            other => panic!("unknown mode {other}"),
        };
        let line: Vec<String> = Figures::NAMES
            .iter()
            .zip(f.values())
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        println!("{}", line.join(" "));
        return;
    }
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if quick { 3 } else { 5 });
    parent(&args, reps, &size);
}

/// Runs every mode `reps` times in children, rotating the order, and prints the medians.
fn parent(args: &[String], reps: usize, size: &Size) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); MODES.len()];
    let mut last_stats = String::new();
    println!(
        "{} map entries (u64 -> u64), {} queries; {reps} runs per mode, medians",
        size.entries, size.queries
    );
    for rep in 0..reps {
        for k in 0..MODES.len() {
            let m = (rep + k) % MODES.len();
            let out = Command::new(&exe)
                .args(args)
                .env(MODE_VAR, MODES[m])
                .output()
                .expect("run a child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{} failed: {}\n{}",
                MODES[m],
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
            runs[m].push(parse(&stdout));
            if MODES[m] == "per-collection" {
                last_stats = String::from_utf8_lossy(&out.stderr).into_owned();
            }
        }
    }
    println!(
        "\n| mode | time, ms (build + queries) | build, ms | queries, ms | minor faults | peak RSS, MiB | RSS between queries, MiB | on huge pages, MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (m, mode) in MODES.iter().enumerate() {
        let f = median(&runs[m]);
        let times: Vec<f64> = runs[m].iter().map(|f| f.build_ms + f.query_ms).collect();
        println!(
            "| {mode} | {:.0} ({:.0}–{:.0}) | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            median::median(times.iter().copied()),
            times.iter().copied().fold(f64::MAX, f64::min),
            times.iter().copied().fold(f64::MIN, f64::max),
            f.build_ms,
            f.query_ms,
            f.minflt,
            f.peak_rss_mib,
            f.between_rss_mib,
            f.huge_mib,
        );
    }
    println!("\n(time: median, with the fastest and slowest run in brackets)");
    println!(
        "\nper-collection, last run, stats():\n{}",
        last_stats.trim_end()
    );
}

fn parse(line: &str) -> Figures {
    let mut v = [0.0; 6];
    for field in line.split_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        if let Some(i) = Figures::NAMES.iter().position(|n| *n == name) {
            v[i] = value.parse().expect("a number");
        }
    }
    Figures::from_values(v)
}

/// Each figure's median over the runs.
fn median(runs: &[Figures]) -> Figures {
    let mut out = [0.0; 6];
    for (i, o) in out.iter_mut().enumerate() {
        *o = median::median(runs.iter().map(|f| f.values()[i]));
    }
    Figures::from_values(out)
}

/// A key of the map: scattered over the table, so that lookups jump around as a real index's do.
fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
}

/// The work: build the map, then run the queries. Each query scans the map for half of its
/// entries into a scratch Vec (grown by pushes to 32 MiB at full size), looks each of them up
/// again (random lookups in the big table), and drops the scratch.
fn run<M: Allocator + Copy, S: Allocator + Copy>(table: M, scratch: S, size: &Size) -> Figures {
    let faults = minor_faults();
    let start = Instant::now();
    // Sized up front, as a table loaded with a known row count is: one block, never outgrown.
    let mut map: HashMap<u64, u64, DefaultHashBuilder, M> =
        HashMap::with_capacity_and_hasher_in(size.entries as usize, Default::default(), table);
    for i in 0..size.entries {
        map.insert(key(i), i);
    }
    let build_ms = start.elapsed().as_secs_f64() * 1e3;

    let start = Instant::now();
    let mut between = Vec::new();
    let mut check = 0u64;
    for q in 0..size.queries {
        let mut rows: AVec<(u64, u64), S> = AVec::new_in(scratch);
        for (&k, &v) in &map {
            if v % 2 == q % 2 {
                rows.push((k, v));
            }
        }
        for &(k, v) in &rows {
            check = check.wrapping_add(map[&k] ^ v);
        }
        check = check.wrapping_add(rows.len() as u64);
        drop(rows);
        between.push(ProcessMemory::read().map_or(0, |m| m.rss_bytes) as f64 / MIB);
    }
    let query_ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(check, size.queries * size.entries / 2, "every row found");
    let huge = ProcessMemory::read().map_or(0, |m| m.anon_huge_bytes) as f64 / MIB;
    let figures = Figures {
        build_ms,
        query_ms,
        minflt: (minor_faults() - faults) as f64,
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        between_rss_mib: median::median(between),
        huge_mib: huge,
    };
    drop(map);
    figures
}

fn minor_faults() -> u64 {
    ProcessMemory::read().map_or(0, |m| m.minor_faults)
}

/// `ru_maxrss` of this process, in KiB: the peak, since the work is all it did.
fn peak_rss_kib() -> i64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss
}
