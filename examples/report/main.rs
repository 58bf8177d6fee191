//! Run with: cargo run --release --example report [-- --quick] [--out DIR]
//!
//! The evidence for pagewise: runs every workload of `examples/common/workloads.rs` under every
//! pagewise policy and under glibc (`System`), jemalloc and mimalloc, each run a fresh child
//! process (`target/release/examples/worker_*`, built first by this program with
//! `cargo build --release --example worker_...`). Allocators alternate within each repetition
//! (the order rotates between repetitions) and the median of the repetitions is kept. Each
//! worker runs one untimed warm-up round first (a fifth of the iterations for the multi-round
//! workloads): the times are steady state, and the warm-up's time per round is reported beside
//! them as `cold_round_ms` (see `examples/common/worker.rs`).
//!
//! Writes to `--out DIR` (default `<target>/pagewise-report`): `report.csv` (medians),
//! `runs.csv` (every run), `report.svg`, and `seed.csv` and `seed.svg` from the seed (`seed.rs`:
//! the raw-mapping experiment of Changkun Ou's 2021 post on page faults vs. prefetching).
//! `report.csv` gives each median with the min and max of its runs for time and peak RSS.
//!
//! Prints the tables, then the targets of the default configuration (`pagewise-<default
//! policy>`), one line per case with the medians and the min–max of the runs on both sides: its
//! time against the fastest peer (glibc, jemalloc or mimalloc, lowest median time; target
//! <= 1.00x), its peak RSS against the leanest peer (lowest median peak; target <= 1.10x the
//! peer's + 8 MiB) and its RSS after the work against glibc's (target <= +16 MiB); then, where a
//! fault-free bound exists, its time against the bound (issue 6); and the number of missed
//! targets.
//!
//! Options: `--quick` (smaller iteration counts, 3 repetitions, runs overlapping their settle
//! wait, for CI), `--reps N`, `--settle-ms N` (wait before reading RSS after the work, default
//! 1500), `--only W1,W2` (workloads), `--allocators A1,A2`, `--no-build`, `--no-seed`,
//! `--seed-only`, `--from-runs FILE` (redo the tables, CSVs and chart from an earlier
//! `runs.csv` without running anything), `--baseline DIR` (also run every pagewise policy with
//! `DIR/worker_pagewise`, a worker built from another commit, as `before-<policy>`: a
//! before/after comparison in one run), `--threads-sweep` (the thread-count sweep of `sweep.rs`
//! instead of the workloads). `--help` prints them; an unknown option or a missing
//! value prints them and exits with status 2 before anything runs.

#[path = "../common/median.rs"]
mod median;
#[path = "../common/workloads.rs"]
mod workloads;

mod charts;
mod seed;
mod sweep;

use median::median;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;
use workloads::{size_label, Workload, MIB};

/// One workload at one size.
#[derive(Clone, Copy)]
struct Case {
    workload: Workload,
    size: usize,
    iters: usize,
    /// Threads of a churn workload, 0 for its own count (`--threads-sweep`).
    threads: usize,
}

/// One row of the allocator column: which worker, with which environment.
struct Alloc {
    name: String,
    worker: &'static str,
    /// Where the worker binary is, if not beside this program (`--baseline DIR`).
    exe_dir: Option<PathBuf>,
    env: Vec<(&'static str, String)>,
    bound: bool,
}

/// One run's figures (a worker's two output lines).
#[derive(Clone, Default)]
struct Sample {
    time_ms: f64,
    /// Time of one warm-up round: what a fresh process pays once before the steady state.
    cold_round_ms: f64,
    minflt: f64,
    majflt: f64,
    peak_mib: f64,
    rss_after_mib: f64,
    lazy_after_mib: f64,
    huge_after_mib: f64,
}

struct Options {
    quick: bool,
    reps: usize,
    settle_ms: u64,
    /// How many finished workers may still be waiting out their settle time while the next one runs.
    overlap: usize,
    out: PathBuf,
    only: Option<Vec<String>>,
    allocators: Option<Vec<String>>,
    build: bool,
    seed: bool,
    workloads: bool,
    /// Redraw from a previous run's `runs.csv` instead of running the workers.
    from_runs: Option<PathBuf>,
    /// A directory holding a `worker_pagewise` built from another commit.
    baseline: Option<PathBuf>,
    /// Run the thread-count sweep (`sweep.rs`) instead of the workloads and the seed.
    sweep: bool,
}

/// The options: name, whether it takes a value, and what it does (printed by `--help`).
const OPTIONS: &[(&str, Option<&str>, &str)] = &[
    (
        "--quick",
        None,
        "smaller iteration counts, 3 repetitions, overlapped settle waits (CI)",
    ),
    (
        "--reps",
        Some("N"),
        "repetitions of every case (default 5, 3 with --quick)",
    ),
    (
        "--settle-ms",
        Some("N"),
        "wait before reading RSS after the work (default 1500)",
    ),
    (
        "--out",
        Some("DIR"),
        "where the CSVs and charts go (default <target>/pagewise-report)",
    ),
    ("--only", Some("W1,W2"), "only these workloads"),
    (
        "--allocators",
        Some("A1,A2"),
        "only these allocators (system, jemalloc, pagewise-retain, ...)",
    ),
    ("--no-build", None, "use the worker binaries as they are"),
    ("--no-seed", None, "skip the seed experiment"),
    ("--seed-only", None, "run the seed experiment only"),
    (
        "--from-runs",
        Some("FILE"),
        "redo tables, CSVs and charts from an earlier runs.csv",
    ),
    (
        "--threads-sweep",
        None,
        "only the thread-count sweep (mixed_threads8's work on 1..32 threads)",
    ),
    (
        "--baseline",
        Some("DIR"),
        "also run DIR/worker_pagewise (another commit) as before-<policy>",
    ),
    ("--help", None, "print these options"),
];

/// Prints the options; exits 0 for `--help`, 2 for a mistake (so that a typo never starts the
/// 20-minute run with the defaults).
fn usage(mistake: Option<String>) -> ! {
    let mut out = String::new();
    if let Some(m) = &mistake {
        let _ = writeln!(out, "report: {m}");
    }
    let _ = writeln!(
        out,
        "usage: cargo run --release --example report -- [OPTIONS]\n"
    );
    for (name, value, what) in OPTIONS {
        let flag = format!("{name} {}", value.unwrap_or(""));
        let _ = writeln!(out, "  {flag:<22} {what}");
    }
    if mistake.is_some() {
        eprint!("{out}");
        std::process::exit(2);
    }
    print!("{out}");
    std::process::exit(0);
}

/// Checks every argument against [`OPTIONS`] before anything runs.
fn check_args(args: &[String]) {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match OPTIONS.iter().find(|(name, _, _)| name == a) {
            Some(("--help", _, _)) => usage(None),
            Some((_, Some(v), _)) if i + 1 >= args.len() => usage(Some(format!("{a} needs {v}"))),
            Some((_, Some(_), _)) => i += 2,
            Some((_, None, _)) => i += 1,
            None if a == "-h" => usage(None),
            None => usage(Some(format!("unknown option {a:?}"))),
        }
    }
}

fn parse_options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    check_args(&args);
    let value = |name: &str| {
        let i = args.iter().position(|a| a == name)?;
        let v = args
            .get(i + 1)
            .unwrap_or_else(|| panic!("{name} needs a value"));
        Some(v.clone())
    };
    let list = |name: &str| value(name).map(|v| v.split(',').map(str::to_string).collect());
    let has = |name: &str| args.iter().any(|a| a == name);
    let quick = has("--quick");
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/release/examples/report -> <target>/pagewise-report
    let target = exe
        .ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
    Options {
        quick,
        reps: value("--reps").map_or(if quick { 3 } else { 5 }, |v| v.parse().expect("--reps N")),
        settle_ms: value("--settle-ms").map_or(1500, |v| v.parse().expect("--settle-ms N")),
        overlap: if quick { 4 } else { 0 },
        out: value("--out").map_or_else(|| target.join("pagewise-report"), PathBuf::from),
        only: list("--only"),
        allocators: list("--allocators"),
        build: !has("--no-build"),
        seed: !has("--no-seed") && !has("--threads-sweep"),
        workloads: !has("--seed-only"),
        from_runs: value("--from-runs").map(PathBuf::from),
        baseline: value("--baseline").map(PathBuf::from),
        sweep: has("--threads-sweep"),
    }
}

fn cases(quick: bool) -> Vec<Case> {
    let c = |workload, size, iters| Case {
        workload,
        size,
        iters,
        threads: 0,
    };
    if quick {
        vec![
            c(Workload::Zeroed, MIB, 500),
            c(Workload::Zeroed, 64 * MIB, 10),
            c(Workload::VecPush, 256 * MIB, 3),
            c(Workload::HashMap, 4 << 20, 3),
            c(Workload::MixedThreads, 32 * MIB, 60),
            c(Workload::MallocLarge, 25 * MIB, 100),
            c(Workload::Random, 48 * MIB, 100),
            c(Workload::MixedThreads8, 5 * MIB, 150),
        ]
    } else {
        vec![
            c(Workload::Zeroed, MIB, 2000),
            c(Workload::Zeroed, 16 * MIB, 160),
            c(Workload::Zeroed, 64 * MIB, 40),
            c(Workload::VecPush, 256 * MIB, 3),
            c(Workload::HashMap, 4 << 20, 3),
            c(Workload::MixedThreads, 32 * MIB, 300),
            c(Workload::MallocLarge, 25 * MIB, 500),
            c(Workload::Random, 48 * MIB, 300),
            c(Workload::MixedThreads8, 5 * MIB, 300),
        ]
    }
}

/// The name of the default configuration's row.
fn default_name() -> String {
    format!(
        "pagewise-{}",
        pagewise::Config::DEFAULT.get_release().name()
    )
}

/// `--baseline DIR`: the same pagewise policies run by `DIR/worker_pagewise`, a worker built from
/// another commit, named `before-<policy>`, so that a change is compared side by side in one run.
fn baseline_allocators(dir: &Path) -> Vec<Alloc> {
    pagewise::Release::ALL
        .into_iter()
        .map(|r| Alloc {
            name: format!("before-{}", r.name()),
            worker: "worker_pagewise",
            exe_dir: Some(dir.to_path_buf()),
            env: vec![("PAGEWISE_RELEASE", r.name().into())],
            bound: false,
        })
        .collect()
}

fn allocators() -> Vec<Alloc> {
    let peer = |name: &str, worker| Alloc {
        name: name.into(),
        worker,
        exe_dir: None,
        env: vec![],
        bound: false,
    };
    let mut all = vec![
        peer("system", "worker_system"),
        peer("jemalloc", "worker_jemalloc"),
        peer("mimalloc", "worker_mimalloc"),
    ];
    for r in pagewise::Release::ALL {
        all.push(Alloc {
            name: format!("pagewise-{}", r.name()),
            worker: "worker_pagewise",
            exe_dir: None,
            env: vec![("PAGEWISE_RELEASE", r.name().into())],
            bound: false,
        });
    }
    let default = pagewise::Config::DEFAULT;
    for p in pagewise::Prefetch::ALL
        .into_iter()
        .filter(|&p| p != default.get_prefetch())
    {
        all.push(Alloc {
            name: format!("pagewise-{}/{}", default.get_release().name(), p.name()),
            worker: "worker_pagewise",
            exe_dir: None,
            env: vec![
                ("PAGEWISE_RELEASE", default.get_release().name().into()),
                ("PAGEWISE_PREFETCH", p.name().into()),
            ],
            bound: false,
        });
    }
    all.push(Alloc {
        name: "bound".into(),
        worker: "worker_system",
        exe_dir: None,
        env: vec![],
        bound: true,
    });
    all
}

/// `cargo build --release --example worker_...` with the cargo that runs us.
fn build_workers(names: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--manifest-path"])
        .arg(manifest);
    for n in names {
        cmd.args(["--example", n]);
    }
    eprintln!("building workers: {cmd:?}");
    let status = cmd.status().expect("failed to run cargo");
    assert!(status.success(), "building the workers failed");
}

/// A worker that has printed its `work` line and is waiting out its settle time.
struct Pending {
    key: (usize, usize),
    sample: Sample,
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

fn spawn(dir: &Path, case: &Case, alloc: &Alloc, settle_ms: u64, key: (usize, usize)) -> Pending {
    let mut cmd = Command::new(alloc.exe_dir.as_deref().unwrap_or(dir).join(alloc.worker));
    for (k, _) in std::env::vars() {
        if k.starts_with("PAGEWISE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(alloc.env.iter().map(|(k, v)| (k, v)))
        .arg(case.workload.name())
        .arg(case.size.to_string())
        .args([
            "--iters",
            &case.iters.to_string(),
            "--settle-ms",
            &settle_ms.to_string(),
        ])
        .stdout(Stdio::piped());
    if case.threads > 0 {
        cmd.args(["--threads", &case.threads.to_string()]);
    }
    if alloc.bound {
        cmd.arg("--bound");
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", alloc.worker));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    let f: Vec<&str> = line.split(',').collect();
    assert!(
        f.len() == 11 && f[0] == "work",
        "{}: bad output {line:?}",
        alloc.name
    );
    if alloc.worker == "worker_pagewise" {
        // The worker prints its effective config: check the environment took.
        let want = alloc
            .env
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>();
        assert!(
            want.iter().all(|w| f[1].contains(w)),
            "{} ran as {}",
            alloc.name,
            f[1]
        );
    }
    let num = |i: usize| f[i].parse::<f64>().unwrap();
    let sample = Sample {
        time_ms: num(5) / 1e6,
        cold_round_ms: num(10) / 1e6,
        minflt: num(6),
        majflt: num(7),
        peak_mib: num(8) / 1024.0,
        ..Sample::default()
    };
    Pending {
        key,
        sample,
        child,
        lines,
    }
}

fn finish(mut p: Pending) -> ((usize, usize), Sample) {
    let line = p.lines.next().and_then(Result::ok).unwrap_or_default();
    let f: Vec<f64> = line
        .split(',')
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(f.len(), 3, "bad after line {line:?}");
    p.sample.rss_after_mib = f[0] / 1024.0;
    p.sample.lazy_after_mib = f[1] / 1024.0;
    p.sample.huge_after_mib = f[2] / 1024.0;
    let status = p.child.wait().unwrap();
    assert!(status.success(), "worker failed: {status}");
    (p.key, p.sample)
}

/// The lowest and the highest value of one figure over the runs.
fn run_range(runs: &[Sample], figure: fn(&Sample) -> f64) -> (f64, f64) {
    runs.iter()
        .map(figure)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

fn median_sample(runs: &[Sample]) -> Sample {
    let m = |f: fn(&Sample) -> f64| median(runs.iter().map(f));
    Sample {
        time_ms: m(|s| s.time_ms),
        cold_round_ms: m(|s| s.cold_round_ms),
        minflt: m(|s| s.minflt),
        majflt: m(|s| s.majflt),
        peak_mib: m(|s| s.peak_mib),
        rss_after_mib: m(|s| s.rss_after_mib),
        lazy_after_mib: m(|s| s.lazy_after_mib),
        huge_after_mib: m(|s| s.huge_after_mib),
    }
}

fn main() {
    let opt = parse_options();
    std::fs::create_dir_all(&opt.out).expect("cannot create the output directory");
    let started = Instant::now();
    if opt.sweep {
        sweep::run(&opt);
    } else if opt.workloads {
        run_workloads(&opt);
    }
    if opt.seed {
        let rows = seed::run(opt.quick);
        seed::print(&rows);
        seed::write_csv(&opt.out.join("seed.csv"), &rows).expect("writing seed.csv");
        charts::seed_svg(&opt.out.join("seed.svg"), &rows).expect("drawing seed.svg");
    }
    println!(
        "\nwrote {} in {:.0} s",
        opt.out.display(),
        started.elapsed().as_secs_f64()
    );
}

fn run_workloads(opt: &Options) {
    let mut cases = cases(opt.quick);
    if let Some(only) = &opt.only {
        cases.retain(|c| only.iter().any(|o| o == c.workload.name()));
    }
    let mut allocs = allocators();
    if let Some(dir) = &opt.baseline {
        allocs.extend(baseline_allocators(dir));
    }
    if let Some(keep) = &opt.allocators {
        allocs.retain(|a| keep.contains(&a.name));
    }
    if let Some(path) = &opt.from_runs {
        let runs = read_runs_csv(path, &cases, &allocs);
        return summarize(opt, &cases, &allocs, runs);
    }
    let dir = worker_dir(opt, &allocs);

    // (case index, allocator index) -> runs
    let mut runs: BTreeMap<(usize, usize), Vec<Sample>> = BTreeMap::new();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let total: usize = opt.reps
        * cases
            .iter()
            .map(|c| {
                allocs
                    .iter()
                    .filter(|a| !a.bound || c.workload.has_bound())
                    .count()
            })
            .sum::<usize>();
    let mut done = 0;
    let t0 = Instant::now();
    for rep in 0..opt.reps {
        for (ci, case) in cases.iter().enumerate() {
            let order: Vec<usize> = (0..allocs.len())
                .map(|i| (i + rep * 5 + ci) % allocs.len())
                .filter(|&i| !allocs[i].bound || case.workload.has_bound())
                .collect();
            for ai in order {
                let p = spawn(&dir, case, &allocs[ai], opt.settle_ms, (ci, ai));
                done += 1;
                eprintln!(
                    "[{done}/{total} {:.0}s] rep {} {} {} {}: {:.1} ms",
                    t0.elapsed().as_secs_f64(),
                    rep + 1,
                    case.workload.name(),
                    size_label(case.workload, case.size),
                    allocs[ai].name,
                    p.sample.time_ms
                );
                pending.push_back(p);
                while pending.len() > opt.overlap {
                    let (key, s) = finish(pending.pop_front().unwrap());
                    runs.entry(key).or_default().push(s);
                }
            }
        }
    }
    for p in pending {
        let (key, s) = finish(p);
        runs.entry(key).or_default().push(s);
    }
    summarize(opt, &cases, &allocs, runs);
}

/// Reads the `runs.csv` of an earlier run back (for `--from-runs`), keeping the rows whose case
/// and allocator are in this run's lists.
fn read_runs_csv(
    path: &Path,
    cases: &[Case],
    allocs: &[Alloc],
) -> BTreeMap<(usize, usize), Vec<Sample>> {
    let text = std::fs::read_to_string(path).expect("reading --from-runs");
    let mut runs: BTreeMap<(usize, usize), Vec<Sample>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 13, "bad runs.csv line {line:?}");
        let size: usize = f[1].parse().expect("size");
        let Some(ci) = cases
            .iter()
            .position(|c| c.workload.name() == f[0] && c.size == size)
        else {
            continue;
        };
        let Some(ai) = allocs.iter().position(|a| a.name == f[3]) else {
            continue;
        };
        let num = |i: usize| f[i].parse::<f64>().expect("number");
        runs.entry((ci, ai)).or_default().push(Sample {
            time_ms: num(5),
            cold_round_ms: num(6),
            minflt: num(7),
            majflt: num(8),
            peak_mib: num(9),
            rss_after_mib: num(10),
            lazy_after_mib: num(11),
            huge_after_mib: num(12),
        });
    }
    runs
}

/// Medians, CSV files, tables, targets and the chart, from the runs.
fn summarize(
    opt: &Options,
    cases: &[Case],
    allocs: &[Alloc],
    runs: BTreeMap<(usize, usize), Vec<Sample>>,
) {
    let medians: BTreeMap<(usize, usize), Sample> =
        runs.iter().map(|(k, v)| (*k, median_sample(v))).collect();
    write_runs_csv(&opt.out.join("runs.csv"), cases, allocs, &runs);
    write_report_csv(
        &opt.out.join("report.csv"),
        cases,
        allocs,
        &runs,
        &medians,
        opt.settle_ms,
    );
    print_table(opt, cases, allocs, &medians);
    print_targets(cases, allocs, &medians, &runs);
    print_policy_wins(cases, allocs, &medians);
    let panels: Vec<charts::Panel> = cases
        .iter()
        .enumerate()
        .map(|(ci, c)| charts::Panel {
            title: format!(
                "{} {} x{}",
                c.workload.name(),
                size_label(c.workload, c.size),
                c.iters
            ),
            bars: allocs
                .iter()
                .enumerate()
                .filter_map(|(ai, a)| {
                    let s = medians.get(&(ci, ai))?;
                    Some(charts::Bar {
                        name: a.name.clone(),
                        time_ms: s.time_ms,
                        peak_mib: s.peak_mib,
                        after_mib: s.rss_after_mib,
                    })
                })
                .collect(),
        })
        .collect();
    let caption = format!(
        "pagewise vs glibc, jemalloc, mimalloc: medians of {} runs{}",
        opt.reps,
        if opt.quick { " (quick mode)" } else { "" }
    );
    charts::report_svg(
        &opt.out.join("report.svg"),
        &caption,
        &panels,
        &default_name(),
    )
    .expect("drawing report.svg");
}

fn write_runs_csv(
    path: &Path,
    cases: &[Case],
    allocs: &[Alloc],
    runs: &BTreeMap<(usize, usize), Vec<Sample>>,
) {
    let mut s = String::from("workload,size,iters,allocator,run,time_ms,cold_round_ms,minflt,majflt,peak_rss_mib,rss_after_mib,lazyfree_after_mib,anonhuge_after_mib\n");
    for (&(ci, ai), samples) in runs {
        let (c, a) = (&cases[ci], &allocs[ai]);
        for (i, r) in samples.iter().enumerate() {
            writeln!(
                s,
                "{},{},{},{},{},{:.3},{:.3},{},{},{:.1},{:.1},{:.1},{:.1}",
                c.workload.name(),
                c.size,
                c.iters,
                a.name,
                i,
                r.time_ms,
                r.cold_round_ms,
                r.minflt,
                r.majflt,
                r.peak_mib,
                r.rss_after_mib,
                r.lazy_after_mib,
                r.huge_after_mib
            )
            .unwrap();
        }
    }
    std::fs::write(path, s).expect("writing runs.csv");
}

fn write_report_csv(
    path: &Path,
    cases: &[Case],
    allocs: &[Alloc],
    runs: &BTreeMap<(usize, usize), Vec<Sample>>,
    medians: &BTreeMap<(usize, usize), Sample>,
    settle_ms: u64,
) {
    let mut s = String::from(
        "workload,size,size_label,iters,allocator,runs,time_ms,time_ms_min,time_ms_max,cold_round_ms,minflt,majflt,\
         peak_rss_mib,peak_rss_mib_min,peak_rss_mib_max,rss_after_mib,lazyfree_after_mib,\
         anonhuge_after_mib,settle_ms\n",
    );
    for (&(ci, ai), m) in medians {
        let (c, a, r) = (&cases[ci], &allocs[ai], &runs[&(ci, ai)]);
        let (min, max) = run_range(r, |s| s.time_ms);
        let (peak_min, peak_max) = run_range(r, |s| s.peak_mib);
        writeln!(
            s,
            "{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{}",
            c.workload.name(),
            c.size,
            size_label(c.workload, c.size),
            c.iters,
            a.name,
            r.len(),
            m.time_ms,
            min,
            max,
            m.cold_round_ms,
            m.minflt,
            m.majflt,
            m.peak_mib,
            peak_min,
            peak_max,
            m.rss_after_mib,
            m.lazy_after_mib,
            m.huge_after_mib,
            settle_ms
        )
        .unwrap();
    }
    std::fs::write(path, s).expect("writing report.csv");
}

fn print_table(
    opt: &Options,
    cases: &[Case],
    allocs: &[Alloc],
    medians: &BTreeMap<(usize, usize), Sample>,
) {
    println!(
        "\nMedians of {} runs; RSS after = {} ms after the work{}.",
        opt.reps,
        opt.settle_ms,
        if opt.overlap > 0 {
            " (quick mode: the next run overlaps this wait)"
        } else {
            ""
        }
    );
    println!(
        "{:<14} {:>12} {:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "workload",
        "size",
        "allocator",
        "ms",
        "cold/rnd",
        "minflt",
        "peakMiB",
        "afterMiB",
        "lazyMiB",
        "thpMiB"
    );
    for (ci, c) in cases.iter().enumerate() {
        for (ai, a) in allocs.iter().enumerate() {
            let Some(m) = medians.get(&(ci, ai)) else {
                continue;
            };
            println!(
                "{:<14} {:>12} {:<36} {:>9.1} {:>9.1} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>8.1}",
                c.workload.name(),
                size_label(c.workload, c.size),
                a.name,
                m.time_ms,
                m.cold_round_ms,
                m.minflt,
                m.peak_mib,
                m.rss_after_mib,
                m.lazy_after_mib,
                m.huge_after_mib
            );
        }
        println!();
    }
}

/// The peers the default configuration is held against.
const PEERS: [&str; 3] = ["system", "jemalloc", "mimalloc"];

/// `v`, with one decimal below 100.
fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A median with the range of its runs: `294 [288–301]`.
fn with_range(median: f64, (lo, hi): (f64, f64)) -> String {
    format!("{} [{}–{}]", num(median), num(lo), num(hi))
}

/// The targets of the default configuration, from the medians, each beside the range of the runs
/// on both sides (so a reader can tell a gap from noise). First the frontier, one line per case:
/// time against the fastest peer (target <= 1.00x), peak RSS against the leanest peer (target
/// <= 1.10x + 8 MiB) and RSS after against glibc (target <= +16 MiB); then, for the cases that
/// have one, time against the fault-free bound (issue 6); then the count of missed targets.
fn print_targets(
    cases: &[Case],
    allocs: &[Alloc],
    medians: &BTreeMap<(usize, usize), Sample>,
    runs: &BTreeMap<(usize, usize), Vec<Sample>>,
) {
    let default = default_name();
    let index = |name: &str| allocs.iter().position(|a| a.name == name);
    let Some(di) = index(&default) else {
        println!("Targets: {default} (the default configuration) was not run, none checked.");
        return;
    };
    let find = |ci: usize, name: &str| medians.get(&(ci, index(name)?));
    let range = |ci: usize, name: &str, figure: fn(&Sample) -> f64| -> (f64, f64) {
        index(name)
            .and_then(|ai| runs.get(&(ci, ai)))
            .map_or((f64::NAN, f64::NAN), |r| run_range(r, figure))
    };
    let label = |c: &Case| format!("{} {}", c.workload.name(), size_label(c.workload, c.size));
    // The peer with the lowest median of `figure` on case `ci`.
    let best_peer = |ci: usize, figure: fn(&Sample) -> f64| {
        PEERS
            .iter()
            .filter_map(|&p| Some((p, find(ci, p)?)))
            .min_by(|a, b| figure(a.1).total_cmp(&figure(b.1)))
    };

    println!("Targets of {default} (the default configuration), medians [min–max of the runs]:");
    println!(
        "  time <= 1.00x the fastest peer; peak RSS <= 1.10x the leanest peer's + 8 MiB; \
         RSS after <= glibc's + 16 MiB (after: MiB over glibc)"
    );
    println!(
        "  {:<22} {:<20} {:<29} {:>6}  {:<17} {:<26} {:>6} {:>7}  verdict",
        "case",
        "default ms",
        "fastest peer ms",
        "time",
        "default peak MiB",
        "leanest peer peak MiB",
        "peak",
        "after"
    );
    let mut fails = 0;
    for (ci, c) in cases.iter().enumerate() {
        let Some(d) = medians.get(&(ci, di)) else {
            continue;
        };
        let mut missed = Vec::new();
        let (mut fastest, mut time_ratio) = ("-".to_string(), "-".to_string());
        if let Some((name, p)) = best_peer(ci, |s| s.time_ms) {
            let ratio = d.time_ms / p.time_ms;
            if ratio > 1.0 {
                missed.push("time");
            }
            let spread = range(ci, name, |s| s.time_ms);
            fastest = format!("{name} {}", with_range(p.time_ms, spread));
            time_ratio = format!("{ratio:.2}x");
        }
        let (mut leanest, mut peak_ratio) = ("-".to_string(), "-".to_string());
        if let Some((name, p)) = best_peer(ci, |s| s.peak_mib) {
            if d.peak_mib > 1.10 * p.peak_mib + 8.0 {
                missed.push("peak");
            }
            let spread = range(ci, name, |s| s.peak_mib);
            leanest = format!("{name} {}", with_range(p.peak_mib, spread));
            peak_ratio = format!("{:.2}x", d.peak_mib / p.peak_mib);
        }
        let mut after = "-".to_string();
        if let Some(sys) = find(ci, "system") {
            let over = d.rss_after_mib - sys.rss_after_mib;
            if over > 16.0 {
                missed.push("after");
            }
            after = format!("{over:+.1}");
        }
        fails += missed.len();
        println!(
            "  {:<22} {:<20} {:<29} {:>6}  {:<17} {:<26} {:>6} {:>7}  {}",
            label(c),
            with_range(d.time_ms, range(ci, &default, |s| s.time_ms)),
            fastest,
            time_ratio,
            with_range(d.peak_mib, range(ci, &default, |s| s.peak_mib)),
            leanest,
            peak_ratio,
            after,
            if !missed.is_empty() {
                format!("MISSED {}", missed.join(", "))
            } else if PEERS.iter().any(|&p| find(ci, p).is_some()) {
                "ok".to_string()
            } else {
                "-".to_string()
            }
        );
    }
    for (ci, c) in cases.iter().enumerate() {
        let (Some(d), Some(b)) = (medians.get(&(ci, di)), find(ci, "bound")) else {
            continue;
        };
        let limit = match c.workload {
            Workload::VecPush => 1.25,
            _ if c.size >= 8 * MIB => 1.10,
            _ => 1.05,
        };
        let ratio = d.time_ms / b.time_ms;
        let ok = ratio <= limit;
        fails += usize::from(!ok);
        let verdict = if ok {
            "ok".to_string()
        } else {
            let ms = |(lo, hi): (f64, f64)| format!("{lo:.1}–{hi:.1} ms");
            format!(
                "MISSED (target <= {limit:.2}x; runs {} vs {})",
                ms(range(ci, &default, |s| s.time_ms)),
                ms(range(ci, "bound", |s| s.time_ms))
            )
        };
        println!(
            "  {:<26} time vs fault-free bound ({:.1} ms): {ratio:.2}x  {verdict}",
            label(c),
            b.time_ms,
        );
    }
    println!("  {fails} target(s) missed");
}

/// For each non-default pagewise configuration: the cases where it beats the default, on time or
/// on peak RSS, and by how much (issue 6 asks the report to say where each policy wins).
fn print_policy_wins(cases: &[Case], allocs: &[Alloc], medians: &BTreeMap<(usize, usize), Sample>) {
    let default = default_name();
    let Some(di) = allocs.iter().position(|a| a.name == default) else {
        return;
    };
    println!(
        "\nWhere each non-default configuration beats {default} (median time, median peak RSS):"
    );
    for (ai, a) in allocs.iter().enumerate() {
        if ai == di || !a.name.starts_with("pagewise-") {
            continue;
        }
        let mut wins = Vec::new();
        for (ci, c) in cases.iter().enumerate() {
            let (Some(m), Some(d)) = (medians.get(&(ci, ai)), medians.get(&(ci, di))) else {
                continue;
            };
            let label = format!("{} {}", c.workload.name(), size_label(c.workload, c.size));
            if m.time_ms < d.time_ms {
                wins.push(format!(
                    "{label} time {:.2}x ({:.1} vs {:.1} ms)",
                    m.time_ms / d.time_ms,
                    m.time_ms,
                    d.time_ms
                ));
            }
            if m.peak_mib < d.peak_mib * 0.95 {
                wins.push(format!(
                    "{label} peak RSS {:.2}x ({:.0} vs {:.0} MiB)",
                    m.peak_mib / d.peak_mib,
                    m.peak_mib,
                    d.peak_mib
                ));
            }
        }
        if wins.is_empty() {
            println!("  {:<34} nowhere", a.name);
        } else {
            println!("  {:<34} {}", a.name, wins.join("; "));
        }
    }
}

/// Builds the workers of `allocs` (unless `--no-build`) and returns the directory they run from,
/// this program's own.
fn worker_dir(opt: &Options, allocs: &[Alloc]) -> PathBuf {
    if opt.build {
        let mut workers: Vec<&str> = allocs.iter().map(|a| a.worker).collect();
        workers.sort_unstable();
        workers.dedup();
        build_workers(&workers);
    }
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}
