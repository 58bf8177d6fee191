//! Containers (issue #13): the cgroup pagewise finds, and the soft limit.
//!
//! - The real cgroup of this process (cgroup v1 `memory` on the development machine) as verbose
//!   reports it, checked against `/proc/self/cgroup`. Nothing here creates, moves or writes a
//!   real cgroup.
//! - Fake v2 and v1 cgroup directories (`Cgroup::Path`) whose files the test rewrites while the
//!   allocator runs: cached memory goes back soon after usage crosses the soft limit, frees are
//!   not cached while over it, the cache serves again once usage falls; `limit_bytes` and
//!   `limit_releases`; pressure from the fake `memory.pressure`; garbage and missing files.
//! - A soft limit in bytes (no cgroup: it applies to the process's RSS) gives the cache back as
//!   the process's other memory grows, keeping the peak under the limit + 64 MiB (usage is polled every 10 ms).
//!
//! A process watches one given cgroup directory at most, so each fake directory is used by its
//! own child process.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use pagewise::{Cgroup, Config, Limit, PageAlloc, Prefetch, Release};

const CALM: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
const BUSY: &str = "some avg10=90.00 avg60=90.00 avg300=90.00 total=900000000\n\
                    full avg10=80.00 avg60=80.00 avg300=80.00 total=800000000\n";

/// A fake cgroup directory under the temp dir, made by the parent, used by one child.
fn fake_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pagewise-cg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Rewrites a file the way a test rewrites it while the program runs: a new file renamed over.
fn put(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn leak(dir: &Path) -> &'static std::ffi::CStr {
    Box::leak(
        CString::new(dir.to_str().unwrap())
            .unwrap()
            .into_boxed_c_str(),
    )
}

/// An allocator watching `dir`, retaining freed blocks, with decay off (only the limit and the
/// pressure signal release anything) and the background thread on.
fn watching(dir: &Path, limit: Limit, release: Release) -> PageAlloc {
    PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(release)
            .prefetch(Prefetch::None)
            .decay_ms(None)
            .cgroup(Cgroup::Path(leak(dir)))
            .limit(limit),
    )
}

fn churn(a: &PageAlloc, n: usize, size: usize) {
    let l = Layout::from_size_align(size, 8).unwrap();
    let ps: Vec<*mut u8> = (0..n)
        .map(|i| {
            // SAFETY: non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            touch_pages(p, size, i as u8 + 1);
            p
        })
        .collect();
    for p in ps {
        // SAFETY: p is live with layout l.
        unsafe { a.dealloc(p, l) };
    }
}

/// Waits until `cond` holds, polling every millisecond; returns how long it took.
fn time_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// The cycle the issue asks for, on a fake directory whose usage file is `usage_file`: cache
/// 128 MiB under the limit; push usage over it and see the cache given back; free while over and
/// see nothing cached; bring usage down and see the cache serve again.
fn limit_cycle(dir: &Path, usage_file: &str, a: &PageAlloc, soft: u64) {
    const SIZE: usize = 16 * MIB;
    churn(a, 8, SIZE);
    let s = a.stats();
    assert_eq!(s.limit_bytes, soft, "{s}");
    assert_eq!(
        s.cached_bytes,
        8 * SIZE as u64,
        "under the limit the cache keeps: {s}"
    );
    put(dir, usage_file, &format!("{}\n", soft + MIB as u64));
    let took = time_until(Duration::from_secs(2), || a.stats().cached_bytes == 0)
        .unwrap_or_else(|| panic!("the cache was not given back: {}", a.stats()));
    let s = a.stats();
    println!(
        "released {} ranges {took:?} after usage crossed the limit",
        s.limit_releases
    );
    assert!(s.limit_releases >= 8, "{s}");
    // Over the limit a free is not cached. (pagewise counts what it released against the usage
    // it last read until it reads again, 10 ms later; this fake file does not fall with the
    // release, as a real cgroup's would, so read it again first.)
    std::thread::sleep(Duration::from_millis(30));
    churn(a, 1, SIZE);
    assert_eq!(a.stats().cached_bytes, 0, "{}", a.stats());
    // Usage falls: the cache keeps and serves again.
    put(dir, usage_file, &format!("{}\n", soft / 2));
    std::thread::sleep(Duration::from_millis(30));
    churn(a, 1, SIZE);
    let before = a.stats();
    assert_eq!(before.cached_bytes, SIZE as u64, "{before}");
    churn(a, 1, SIZE);
    let after = a.stats();
    assert_eq!(after.cache_hits, before.cache_hits + 1, "{after}");
}

const V2_TEST: &str = "a_fake_v2_cgroup_over_its_soft_limit_gets_the_cache_back";

#[test]
fn a_fake_v2_cgroup_over_its_soft_limit_gets_the_cache_back() {
    if child_mode().as_deref() == Some("v2") {
        let dir = PathBuf::from(std::env::var("FAKE_CGROUP").unwrap());
        let a = watching(&dir, Limit::Percent(90), Release::Retain);
        // memory.high (1 GiB) is below memory.max (2 GiB): 90% of 1 GiB.
        limit_cycle(&dir, "memory.current", &a, GIB as u64 * 9 / 10);
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let dir = fake_dir("v2");
    put(&dir, "cgroup.controllers", "cpu memory pids\n");
    put(&dir, "memory.max", &format!("{}\n", 2 * GIB));
    put(&dir, "memory.high", &format!("{}\n", GIB));
    put(&dir, "memory.current", &format!("{}\n", 100 * MIB));
    put(&dir, "memory.pressure", CALM);
    let env = [("FAKE_CGROUP", Some(dir.to_str().unwrap()))];
    let out = run_child(V2_TEST, "v2", &env, Duration::from_secs(60));
    println!("{}", out.stdout);
    assert!(out.status.success(), "{}", out.describe());
    std::fs::remove_dir_all(&dir).unwrap();
}

const V1_TEST: &str = "a_fake_v1_cgroup_over_its_soft_limit_gets_the_cache_back";

#[test]
fn a_fake_v1_cgroup_over_its_soft_limit_gets_the_cache_back() {
    if child_mode().as_deref() == Some("v1") {
        let dir = PathBuf::from(std::env::var("FAKE_CGROUP").unwrap());
        let a = watching(&dir, Limit::Bytes(600 * MIB as u64), Release::Retain);
        limit_cycle(&dir, "memory.usage_in_bytes", &a, 600 * MIB as u64);
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let dir = fake_dir("v1");
    put(&dir, "memory.limit_in_bytes", "9223372036854771712\n");
    put(&dir, "memory.usage_in_bytes", &format!("{}\n", 100 * MIB));
    let env = [("FAKE_CGROUP", Some(dir.to_str().unwrap()))];
    let out = run_child(V1_TEST, "v1", &env, Duration::from_secs(60));
    println!("{}", out.stdout);
    assert!(out.status.success(), "{}", out.describe());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Issue #19: limits that change while the program runs, limits set on a parent ----

const MAX: &str = "max\n";

/// A fake v2 tree: `parent` holding `parent/child`, both with the v2 files and no limit.
fn fake_tree(name: &str) -> (PathBuf, PathBuf) {
    let parent = fake_dir(name);
    let child = parent.join("child");
    std::fs::create_dir_all(&child).unwrap();
    for d in [&parent, &child] {
        put(d, "cgroup.controllers", "cpu memory pids\n");
        put(d, "memory.max", MAX);
        put(d, "memory.high", MAX);
        put(d, "memory.current", &format!("{}\n", 100 * MIB));
    }
    (parent, child)
}

fn bytes(n: u64) -> String {
    format!("{n}\n")
}

/// Resident (or lazily freed) bytes in the cache: what the soft limit gives back.
fn held(a: &PageAlloc) -> u64 {
    let s = a.stats();
    s.cached_resident_bytes + s.cached_lazy_bytes
}

/// Waits (without allocating anything large: only the background thread can act) until the
/// soft limit in force is `soft` and nothing resident is cached; returns how long it took.
fn reaction(a: &PageAlloc, soft: u64, what: &str) -> Duration {
    let start = Instant::now();
    time_until(Duration::from_secs(2), || {
        a.stats().limit_bytes == soft && held(a) == 0
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not in force {:?} after the change: {}",
            start.elapsed(),
            a.stats()
        )
    })
}

/// Waits until the soft limit in force is `soft`, then checks that the cache keeps and serves.
fn serves_again(a: &PageAlloc, soft: u64, caches: bool, what: &str) {
    let in_force = time_until(Duration::from_secs(2), || a.stats().limit_bytes == soft);
    assert!(in_force.is_some(), "{what}: {}", a.stats());
    std::thread::sleep(Duration::from_millis(30));
    churn(a, 1, 16 * MIB);
    let before = a.stats();
    churn(a, 1, 16 * MIB);
    let after = a.stats();
    if caches {
        assert_eq!(after.cache_hits, before.cache_hits + 1, "{what}: {after}");
    }
}

const CHANGES_TEST: &str =
    "limits_that_appear_drop_rise_and_go_on_a_parent_or_the_child_under_every_policy";

/// The child side: an allocator configured from the environment only (policy, decay, cgroup),
/// as a user would; the fake tree is rewritten while nothing is allocated.
fn limits_that_change(parent: &Path, child: &Path) {
    let a = PageAlloc::new();
    let release = a.config().get_release();
    let caches = release != Release::Unmap;
    // `dontneed` caches ranges whose pages are already gone: nothing for the limit to release.
    let holds = matches!(release, Release::Retain | Release::Free | Release::Adaptive);
    churn(&a, 8, 16 * MIB);
    assert_eq!(a.stats().limit_bytes, 0, "no limit at start: {}", a.stats());
    let mut times = Vec::new();
    // 1. A limit appears on the parent (usage over 90% of it): the parent binds.
    put(parent, "memory.current", &bytes(600 * MIB as u64));
    put(parent, "memory.max", &bytes(512 * MIB as u64));
    times.push((
        "appears on the parent",
        reaction(&a, 512 * MIB as u64 * 9 / 10, "appears"),
    ));
    if holds {
        assert!(a.stats().limit_releases >= 1, "{}", a.stats());
    }
    // 2. It goes: the cache keeps and serves again.
    put(parent, "memory.max", MAX);
    serves_again(&a, 0, caches, "removed from the parent");
    // 3. Limits on both, the child's lower and over (the parent's usage is under its own).
    churn(&a, 2, 16 * MIB);
    put(parent, "memory.current", &bytes(400 * MIB as u64));
    put(child, "memory.current", &bytes(300 * MIB as u64));
    put(parent, "memory.max", &bytes(512 * MIB as u64));
    put(child, "memory.high", &bytes(256 * MIB as u64));
    times.push((
        "on both, the child's binds",
        reaction(&a, 256 * MIB as u64 * 9 / 10, "both"),
    ));
    // 4. The child's usage falls under its limit: the cache serves again.
    put(child, "memory.current", &bytes(100 * MIB as u64));
    serves_again(
        &a,
        256 * MIB as u64 * 9 / 10,
        caches,
        "under the child's limit",
    );
    // 5. The parent's limit drops below the child's: the parent binds now, its usage is over.
    churn(&a, 2, 16 * MIB);
    put(parent, "memory.max", &bytes(128 * MIB as u64));
    times.push((
        "drops on the parent",
        reaction(&a, 128 * MIB as u64 * 9 / 10, "drops"),
    ));
    // 6. Both raised away: no limit, the cache serves.
    put(parent, "memory.max", MAX);
    put(child, "memory.high", MAX);
    serves_again(&a, 0, caches, "both removed");
    for (what, t) in &times {
        println!("reaction: {what}: {:.1} ms", t.as_secs_f64() * 1e3);
    }
}

#[test]
fn limits_that_appear_drop_rise_and_go_on_a_parent_or_the_child_under_every_policy() {
    if child_mode().as_deref() == Some("changes") {
        let child = PathBuf::from(std::env::var("PAGEWISE_CGROUP").unwrap());
        return limits_that_change(child.parent().unwrap(), &child);
    }
    if child_mode().is_some() {
        return;
    }
    let mut worst = Duration::ZERO;
    let mut all = Vec::new();
    for release in ["retain", "free", "dontneed", "adaptive", "unmap"] {
        for decay in ["never", "1000"] {
            let (parent, child) = fake_tree(&format!("changes-{release}-{decay}"));
            let env = [
                ("PAGEWISE_CGROUP", Some(child.to_str().unwrap())),
                ("PAGEWISE_RELEASE", Some(release)),
                ("PAGEWISE_DECAY_MS", Some(decay)),
                ("PAGEWISE_PREFETCH", Some("none")),
                ("PAGEWISE_LIMIT", Some("90%")),
            ];
            let out = run_child(CHANGES_TEST, "changes", &env, Duration::from_secs(60));
            assert!(
                out.status.success(),
                "{release}, decay {decay}: {}",
                out.describe()
            );
            for line in out
                .stdout
                .lines()
                .filter_map(|l| l.split_once("reaction: "))
            {
                let line = line.1;
                println!("{release}, decay {decay}: {line}");
                let ms: f64 = line
                    .rsplit(": ")
                    .next()
                    .unwrap()
                    .trim_end_matches(" ms")
                    .parse()
                    .unwrap();
                worst = worst.max(Duration::from_secs_f64(ms / 1e3));
                all.push(ms);
            }
            std::fs::remove_dir_all(&parent).unwrap();
        }
    }
    all.sort_by(f64::total_cmp);
    let median = all[all.len() / 2];
    println!(
        "reaction over {} changes: median {median:.1} ms, worst {worst:?}",
        all.len()
    );
    // Issue #19: within 100 ms. The median is held to it; single changes get slack for a
    // loaded machine (the test binaries run in parallel).
    assert!(median < 100.0, "median reaction {median:.1} ms");
    assert!(
        worst < Duration::from_millis(400),
        "worst reaction {worst:?}"
    );
}

const V1_STAT_TEST: &str = "a_v1_hierarchical_limit_in_memory_stat_appears_and_goes";

fn v1_stat(limit: u64) -> String {
    format!(
        "cache 0\nrss 104857600\nmapped_file 0\nhierarchical_memory_limit {limit}\n\
         hierarchical_memsw_limit 9223372036854771712\ntotal_cache 0\n"
    )
}

#[test]
fn a_v1_hierarchical_limit_in_memory_stat_appears_and_goes() {
    const UNSET: u64 = 9223372036854771712;
    if child_mode().as_deref() == Some("v1-stat") {
        let child = PathBuf::from(std::env::var("FAKE_CGROUP").unwrap());
        let parent = child.parent().unwrap();
        let a = PageAlloc::new().with_config(
            Config::DEFAULT
                .ignore_env()
                .release(Release::Retain)
                .prefetch(Prefetch::None)
                .decay_ms(None)
                .cgroup(Cgroup::Path(leak(&child)))
                .limit(Limit::Percent(90)),
        );
        churn(&a, 8, 16 * MIB);
        assert_eq!(a.stats().limit_bytes, 0, "{}", a.stats());
        // Set above every directory visible here (as in a container that sees only its own
        // cgroup): usage is the highest visible directory's, the fake parent's (over).
        put(&child, "memory.stat", &v1_stat(512 * MIB as u64));
        let t = reaction(&a, 512 * MIB as u64 * 9 / 10, "v1 hierarchical");
        println!("reaction: v1 hierarchical_memory_limit appears: {t:?}");
        put(&child, "memory.stat", &v1_stat(UNSET));
        serves_again(&a, 0, true, "v1 hierarchical removed");
        // On the visible parent: it binds and its usage is read.
        churn(&a, 2, 16 * MIB);
        put(parent, "memory.limit_in_bytes", &bytes(256 * MIB as u64));
        put(&child, "memory.stat", &v1_stat(256 * MIB as u64));
        reaction(&a, 256 * MIB as u64 * 9 / 10, "v1 parent");
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let parent = fake_dir("v1-stat");
    let child = parent.join("child");
    std::fs::create_dir_all(&child).unwrap();
    for d in [&parent, &child] {
        put(d, "memory.limit_in_bytes", &bytes(UNSET));
        put(d, "memory.stat", &v1_stat(UNSET));
    }
    put(&parent, "memory.usage_in_bytes", &bytes(600 * MIB as u64));
    put(&child, "memory.usage_in_bytes", &bytes(100 * MIB as u64));
    let env = [
        ("FAKE_CGROUP", Some(child.to_str().unwrap())),
        ("PAGEWISE_VERBOSE", Some("1")),
    ];
    let out = run_child(V1_STAT_TEST, "v1-stat", &env, Duration::from_secs(60));
    println!("{}", out.stdout);
    assert!(out.status.success(), "{}", out.describe());
    std::fs::remove_dir_all(&parent).unwrap();
}

const PSI_TEST: &str = "the_cgroup_s_memory_pressure_is_the_default_signal";

#[test]
fn the_cgroup_s_memory_pressure_is_the_default_signal() {
    if child_mode().as_deref() == Some("psi") {
        let dir = PathBuf::from(std::env::var("FAKE_CGROUP").unwrap());
        let a = watching(&dir, Limit::None, Release::Adaptive);
        churn(&a, 1, 4 * MIB);
        assert_eq!(a.stats().pressure_on, 0, "calm: {}", a.stats());
        put(&dir, "memory.pressure", BUSY);
        std::thread::sleep(Duration::from_millis(30));
        churn(&a, 1, 4 * MIB);
        assert_eq!(a.stats().pressure_on, 1, "busy: {}", a.stats());
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let dir = fake_dir("psi");
    put(&dir, "cgroup.controllers", "memory\n");
    put(&dir, "memory.max", "max\n");
    put(&dir, "memory.current", "0\n");
    put(&dir, "memory.pressure", CALM);
    let env = [("FAKE_CGROUP", Some(dir.to_str().unwrap()))];
    let out = run_child(PSI_TEST, "psi", &env, Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.describe());
    std::fs::remove_dir_all(&dir).unwrap();
}

const GARBAGE_TEST: &str = "garbage_and_missing_cgroup_files_are_tolerated";

#[test]
fn garbage_and_missing_cgroup_files_are_tolerated() {
    if child_mode().as_deref() == Some("garbage") {
        let dir = PathBuf::from(std::env::var("FAKE_CGROUP").unwrap());
        let a = watching(&dir, Limit::Percent(50), Release::Retain);
        churn(&a, 4, 4 * MIB);
        let s = a.stats();
        assert_eq!(s.limit_bytes, 0, "no readable limit, no soft limit: {s}");
        assert_eq!(s.cached_bytes, 16 * MIB as u64, "{s}");
        put(&dir, "memory.max", &format!("{}\n", 64 * MIB));
        put(&dir, "memory.current", "not a number\n");
        std::thread::sleep(Duration::from_millis(30));
        churn(&a, 1, 4 * MIB);
        assert_eq!(a.stats().limit_bytes, 32 * MIB as u64, "{}", a.stats());
        put(&dir, "memory.current", &format!("{}\n", 40 * MIB));
        let gone = wait_until(Duration::from_secs(2), || a.stats().cached_bytes == 0);
        assert!(gone, "over the limit once usage is readable: {}", a.stats());
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let dir = fake_dir("garbage");
    put(&dir, "memory.max", "lots\n");
    put(&dir, "memory.high", "\n");
    // memory.current is missing; memory.pressure is a directory.
    std::fs::create_dir(dir.join("memory.pressure")).unwrap();
    let env = [
        ("FAKE_CGROUP", Some(dir.to_str().unwrap())),
        ("PAGEWISE_VERBOSE", Some("1")),
    ];
    let out = run_child(GARBAGE_TEST, "garbage", &env, Duration::from_secs(60));
    assert!(out.status.success(), "{}", out.describe());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The memory line of /proc/self/cgroup (v1) or the unified one (v2): (version, path).
fn own_cgroup() -> Option<(&'static str, String)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let v1 = text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| ("v1", path.to_string()))
    });
    v1.or_else(|| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::").map(|p| ("v2", p.to_string())))
    })
}

#[test]
fn the_real_cgroup_is_the_one_proc_self_cgroup_names() {
    if child_mode().as_deref() == Some("real") {
        churn(&PageAlloc::new(), 1, 4 * MIB);
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let env = [("PAGEWISE_VERBOSE", Some("1"))];
    let out = run_child(
        "the_real_cgroup_is_the_one_proc_self_cgroup_names",
        "real",
        &env,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", out.describe());
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("pagewise: cgroup") || l.contains("cgroup: "))
        .unwrap_or_else(|| panic!("verbose names no cgroup:\n{}", out.describe()));
    println!("{line}");
    let Some((version, path)) = own_cgroup() else {
        return; // no cgroup at all: nothing to compare with
    };
    // Issue #19: the chain walked up, from the process's own cgroup to the mount point, and
    // where the limit binds (or that none does).
    let walked = line
        .split_once("chain walked up: ")
        .unwrap_or_else(|| panic!("no chain: {line}"))
        .1;
    assert!(
        line.contains("limit binds at ")
            || line.contains("no limit on the chain")
            || line.contains("limit binds above"),
        "{line}"
    );
    assert!(line.contains("usage read from "), "{line}");
    if version == "v1" {
        assert!(
            line.contains("cgroup v1") && line.contains(&format!("{path} ")),
            "expected the v1 memory cgroup {path}: {line}"
        );
        // Read as it is: the v1 memory hierarchy's mount point ends the chain, and memory.stat's
        // hierarchical limit is shown.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let point = mounts
            .lines()
            .find(|l| {
                l.contains(" - cgroup ")
                    && l.rsplit(' ')
                        .next()
                        .unwrap()
                        .split(',')
                        .any(|o| o == "memory")
            })
            .and_then(|l| l.split(' ').nth(4))
            .unwrap();
        if path != "/" {
            assert!(walked.starts_with(&format!("{point}{path} (")), "{walked}");
            assert!(walked.contains(&format!(", then {point} (")), "{walked}");
        }
        assert!(
            line.contains("memory.stat hierarchical_memory_limit: "),
            "{line}"
        );
    } else {
        assert!(line.contains("cgroup v2"), "{line}");
        assert!(line.contains(path.trim_end_matches('/')), "{path}: {line}");
    }
}

/// Peak RSS (VmHWM) of this process, in bytes.
fn vm_hwm() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

const GROWTH_TEST: &str = "a_soft_limit_in_bytes_gives_the_cache_back_as_other_memory_grows";
const SOFT: u64 = 640 * MIB as u64;

/// Four 100 MiB blocks, written and freed (the cache's budget keeps all four: they are within a
/// tenth of the live peak, 400 MiB), then 400 MiB of small allocations that the inner allocator
/// serves, written; prints the peak RSS. Without a limit the cache stays beside the new memory
/// (about 800 MiB); with a 640 MiB soft limit on this process's RSS (no cgroup), pagewise gives
/// it back as usage crosses the limit. (Issue #13's random-size workload no longer shows this:
/// since issue #12 the cache's RSS stays within the live peak there, limit or not.)
fn growth_workload(limit: Limit) {
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .cgroup(Cgroup::None)
            .limit(limit),
    );
    let big = Layout::from_size_align(100 * MIB, 8).unwrap();
    // SAFETY: non-zero sizes; each block is written within its size and freed with its layout.
    unsafe {
        let blocks: Vec<*mut u8> = (0..4).map(|_| a.alloc(big)).collect();
        for (i, &p) in blocks.iter().enumerate() {
            assert!(!p.is_null());
            touch_pages(p, big.size(), i as u8);
        }
        for p in blocks {
            a.dealloc(p, big);
        }
    }
    let cached = a.stats().cached_resident_bytes;
    let mut small: Vec<Vec<u8>> = Vec::new();
    for i in 0..400 * 16 {
        small.push(vec![i as u8; 64 * KIB]);
    }
    let s = a.stats();
    println!(
        "peak {} MiB, limit {:?}; cached after the frees {} MiB; limit_releases {}",
        vm_hwm() >> 20,
        limit,
        cached >> 20,
        s.limit_releases
    );
    drop(small);
}

#[test]
fn a_soft_limit_in_bytes_gives_the_cache_back_as_other_memory_grows() {
    match child_mode().as_deref() {
        Some("growth-limited") => return growth_workload(Limit::Bytes(SOFT)),
        Some("growth-unlimited") => return growth_workload(Limit::None),
        Some(_) => return,
        None => {}
    }
    let peak = |mode| {
        let out = run_child(GROWTH_TEST, mode, &[], Duration::from_secs(120));
        assert!(out.status.success(), "{}", out.describe());
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.split_once("peak ").map(|(_, rest)| rest.to_string()))
            .unwrap_or_else(|| panic!("no peak line:\n{}", out.describe()));
        println!("{mode}: peak {line}");
        let mib: u64 = line.split_whitespace().next().unwrap().parse().unwrap();
        mib
    };
    let limited = peak("growth-limited");
    let unlimited = peak("growth-unlimited");
    assert!(
        unlimited > SOFT >> 20,
        "without a limit the peak ({unlimited} MiB) should pass {} MiB, or this test shows nothing",
        SOFT >> 20
    );
    // Usage is polled every 10 ms (LIMIT_POLL_MS) while the small allocations grow by up to
    // 4 GiB/s here: 64 MiB of slack, two polls' worth and a scheduling delay.
    assert!(
        limited <= (SOFT >> 20) + 64,
        "with a {} MiB soft limit the peak was {limited} MiB (unlimited: {unlimited} MiB)",
        SOFT >> 20
    );
}
