//! The release engine: adaptive release under a calm and a busy pressure file, decay of idle
//! cached ranges by the background thread, purge(), and the verbose report (child process,
//! since the environment is read once per process).
//!
//! Memory is measured with `/proc/self/smaps_rollup`; the tests take a process-wide lock so
//! that one test's buffers do not show up in another's deltas.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use common::*;
use pagewise::{Config, PageAlloc, Prefetch, Release};

const CALM: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
const BUSY: &str = "some avg10=90.00 avg60=90.00 avg300=90.00 total=900000000\n\
                    full avg10=80.00 avg60=80.00 avg300=80.00 total=800000000\n";

/// Writes a PSI-format file under the temp dir and returns its path as a `&'static CStr`.
fn pressure_file(name: &str, text: &str) -> &'static CStr {
    let path =
        std::env::temp_dir().join(format!("pagewise-test-{}-{name}.psi", std::process::id()));
    std::fs::write(&path, text).expect("write pressure file");
    let c = CString::new(path.into_os_string().into_encoded_bytes()).expect("path without NUL");
    Box::leak(c.into_boxed_c_str())
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 4096).unwrap()
}

/// Allocates `n` buffers of `size`, writes every page, frees them all.
fn burst(a: &PageAlloc, n: usize, size: usize) {
    let l = layout(size);
    let bufs: Vec<*mut u8> = (0..n)
        .map(|i| {
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null(), "alloc({size}) returned null");
            touch_pages(p, size, i as u8 + 1);
            p
        })
        .collect();
    for p in bufs {
        // SAFETY: p is live with layout l.
        unsafe { a.dealloc(p, l) };
    }
}

fn adaptive(file: &'static CStr) -> PageAlloc {
    PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(Release::Adaptive)
            .prefetch(Prefetch::None)
            .decay_ms(None)
            .pressure_file(file)
            .pressure_threshold_centi_percent(1000),
    )
}

#[test]
fn adaptive_calm_frees_lazily() {
    let _g = process_lock();
    let file = pressure_file("calm", CALM);
    let a = adaptive(file);
    const SIZE: usize = 128 * MIB;
    // Warm up once so the pressure source is open and sampled.
    burst(&a, 1, 4 * MIB);
    pin_to_current_cpu();
    let before = rollup();
    burst(&a, 1, SIZE);
    let after = rollup();
    unpin();
    let s = a.stats();
    println!(
        "adaptive, calm: Rss {:.1} -> {:.1} MiB, LazyFree {:.1} -> {:.1} MiB; {s:?}",
        mib(before.rss),
        mib(after.rss),
        mib(before.lazy_free),
        mib(after.lazy_free)
    );
    assert_eq!(
        s.pressure_on, 0,
        "calm file must not turn pressure on: {s:?}"
    );
    assert!(
        after.lazy_free >= before.lazy_free + (SIZE as u64) * 9 / 10,
        "adaptive under no pressure should MADV_FREE: LazyFree {:.1} -> {:.1} MiB \
         (expected +{} MiB); stats {s:?}",
        mib(before.lazy_free),
        mib(after.lazy_free),
        SIZE / MIB
    );
    a.purge();
    remove(file);
}

#[test]
fn adaptive_busy_drops_rss_at_free() {
    let _g = process_lock();
    let file = pressure_file("busy", BUSY);
    let a = adaptive(file);
    const SIZE: usize = 128 * MIB;
    burst(&a, 1, 4 * MIB);
    let base = rollup();
    let l = layout(SIZE);
    // SAFETY: non-zero size.
    let p = unsafe { a.alloc(l) };
    assert!(!p.is_null());
    touch_pages(p, SIZE, 3);
    let full = rollup();
    // SAFETY: p is live with layout l.
    unsafe { a.dealloc(p, l) };
    let after = rollup();
    let s = a.stats();
    println!(
        "adaptive, busy: Rss {:.1} -> {:.1} -> {:.1} MiB, LazyFree {:.1} MiB; {s:?}",
        mib(base.rss),
        mib(full.rss),
        mib(after.rss),
        mib(after.lazy_free)
    );
    assert_eq!(
        s.pressure_on, 1,
        "busy file (avg10=90%) must turn pressure on: {s:?}"
    );
    assert!(
        after.rss + (SIZE as u64) * 9 / 10 <= full.rss,
        "adaptive under pressure should give the pages back at free: Rss {:.1} -> {:.1} MiB; \
         stats {s:?}",
        mib(full.rss),
        mib(after.rss)
    );
    assert!(
        after.lazy_free < base.lazy_free + (SIZE / 10) as u64,
        "under pressure the pages must really go, not become LazyFree: {after:?}"
    );
    remove(file);
}

/// Removes a pressure file made by `pressure_file`.
fn remove(file: &CStr) {
    let _ = std::fs::remove_file(file.to_str().unwrap());
}

/// A burst of 4 × 256 MiB, then a quiet period just over the decay time: RSS (not only
/// RSS − LazyFree) must come back near the start, by the background thread alone.
fn decay_returns_rss(release: Release) {
    const DECAY_MS: u64 = 200;
    const SIZE: usize = 256 * MIB;
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(release)
            .prefetch(Prefetch::None)
            .cache(2 * GIB)
            .decay_ms(Some(DECAY_MS))
            .background(true),
    );
    let base = rollup();
    burst(&a, 4, SIZE);
    let peak = rollup();
    let s_peak = a.stats();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(DECAY_MS + 500));
    let mut now = rollup();
    let limit = Duration::from_millis(DECAY_MS + 5000);
    let tolerance = 32 * MIB as u64;
    while now.rss > base.rss + tolerance && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
        now = rollup();
    }
    let s = a.stats();
    println!(
        "decay release={}: Rss {:.1} -> peak {:.1} -> {:.1} MiB after {:?} (LazyFree {:.1} MiB); \
         cached {:.1} -> {:.1} MiB, decay_releases {}",
        release.name(),
        mib(base.rss),
        mib(peak.rss),
        mib(now.rss),
        start.elapsed(),
        mib(now.lazy_free),
        mib(s_peak.cached_bytes),
        mib(s.cached_bytes),
        s.decay_releases
    );
    assert!(
        s_peak.cached_bytes >= SIZE as u64,
        "release={}: the burst should leave cached ranges: {s_peak:?}",
        release.name()
    );
    assert!(
        now.rss <= base.rss + tolerance,
        "release={}: {:.0} ms after the burst RSS is {:.1} MiB, started at {:.1} MiB \
         (decay {DECAY_MS} ms, background on); stats {s:?}",
        release.name(),
        start.elapsed().as_millis(),
        mib(now.rss),
        mib(base.rss)
    );
    assert!(s.decay_releases > 0, "decay_releases should count: {s:?}");
    assert_eq!(
        s.cached_bytes, 0,
        "everything idle should be decayed: {s:?}"
    );
}

#[test]
fn decay_retain_returns_rss() {
    let _g = process_lock();
    decay_returns_rss(Release::Retain);
}

#[test]
fn decay_free_returns_rss() {
    let _g = process_lock();
    decay_returns_rss(Release::Free);
}

#[test]
fn purge_returns_rss() {
    let _g = process_lock();
    for release in [Release::Retain, Release::Free] {
        let a = PageAlloc::new().with_config(
            Config::DEFAULT
                .ignore_env()
                .release(release)
                .prefetch(Prefetch::None)
                .cache(2 * GIB)
                .decay_ms(None)
                .background(false),
        );
        let base = rollup();
        burst(&a, 4, 128 * MIB);
        let peak = rollup();
        let s0 = a.stats();
        a.purge();
        let after = rollup();
        let s1 = a.stats();
        println!(
            "purge release={}: Rss {:.1} -> {:.1} -> {:.1} MiB",
            release.name(),
            mib(base.rss),
            mib(peak.rss),
            mib(after.rss)
        );
        assert!(
            peak.rss >= base.rss + 256 * MIB as u64,
            "release={}: cached buffers should still be resident before purge",
            release.name()
        );
        assert!(
            after.rss <= base.rss + 32 * MIB as u64,
            "release={}: purge should return RSS: {:.1} -> {:.1} MiB (base {:.1}); {s1:?}",
            release.name(),
            mib(peak.rss),
            mib(after.rss),
            mib(base.rss)
        );
        assert_eq!(s1.cached_bytes, 0, "purge empties the cache: {s1:?}");
        assert!(s1.purge_releases > s0.purge_releases, "{s0:?} -> {s1:?}");
    }
}

#[test]
fn reconfigure_switches_policy() {
    let _g = process_lock();
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(Release::Retain)
            .prefetch(Prefetch::None)
            .decay_ms(None)
            .background(false),
    );
    burst(&a, 1, 64 * MIB);
    assert!(a.stats().cached_bytes > 0, "retain caches");
    let t = a.config().get_threshold();
    a.reconfigure(
        Config::DEFAULT
            .ignore_env()
            .release(Release::Unmap)
            .prefetch(Prefetch::None)
            .threshold(t * 4),
    );
    let s = a.stats();
    assert_eq!(
        s.cached_bytes, 0,
        "reconfigure purges the cache first: {s:?}"
    );
    let c = a.config();
    assert_eq!(c.get_release(), Release::Unmap);
    assert_eq!(
        c.get_threshold(),
        t,
        "threshold never changes after first use"
    );
    let base = rollup();
    burst(&a, 1, 64 * MIB);
    let after = rollup();
    assert!(
        after.rss <= base.rss + 8 * MIB as u64,
        "after switching to unmap a freed buffer must leave RSS: {base:?} -> {after:?}"
    );
}

const VERBOSE_TEST: &str = "verbose_names_every_setting";

#[test]
fn verbose_names_every_setting() {
    if child_mode().as_deref() == Some("verbose") {
        // Child: first use of an env-reading instance prints the effective config.
        let a = PageAlloc::new();
        let l = layout(2 * MIB);
        // SAFETY: non-zero size; freed right away with the same layout.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            a.dealloc(p, l);
        }
        let c = a.config();
        println!(
            "child config: release={} prefetch={} threshold={} cache={} decay={:?} bg={}",
            c.get_release().name(),
            c.get_prefetch().name(),
            c.get_threshold(),
            c.get_cache(),
            c.get_decay_ms(),
            c.get_background()
        );
        assert_eq!(c.get_release(), Release::Free);
        assert_eq!(c.get_prefetch(), Prefetch::PopulateHugePage);
        assert_eq!(c.get_threshold(), MIB);
        assert_eq!(c.get_cache(), 64 * MIB);
        assert_eq!(c.get_decay_ms(), Some(250));
        assert!(!c.get_background());
        let e = Config::from_env().expect("all variables are valid");
        assert_eq!(e.get_release(), Release::Free);
        return;
    }
    if child_mode().is_some() {
        return;
    }
    // Not measuring anything, but its pipe threads would disturb the tests that do.
    let _g = process_lock();
    let psi_c = pressure_file("verbose", CALM);
    let psi = psi_c.to_str().unwrap().to_string();
    let env: Vec<(&str, Option<&str>)> = vec![
        ("PAGEWISE_VERBOSE", Some("1")),
        ("PAGEWISE_RELEASE", Some("FREE")),
        ("PAGEWISE_PREFETCH", Some("populate+hugepage")),
        ("PAGEWISE_THRESHOLD", Some("1M")),
        ("PAGEWISE_CACHE", Some("64MiB")),
        ("PAGEWISE_DECAY_MS", Some("250")),
        ("PAGEWISE_BACKGROUND", Some("off")),
        ("PAGEWISE_PRESSURE_FILE", Some(&psi)),
        ("PAGEWISE_PRESSURE_THRESHOLD", Some("2.5%")),
        ("PAGEWISE_STATS", Some("0")),
    ];
    let out = run_child(VERBOSE_TEST, "verbose", &env, Duration::from_secs(60));
    remove(psi_c);
    assert!(out.status.success(), "child failed:\n{}", out.describe());
    let err = &out.stderr;
    let expect = [
        ("PAGEWISE_RELEASE", vec!["free"]),
        ("PAGEWISE_PREFETCH", vec!["populate+hugepage"]),
        ("PAGEWISE_THRESHOLD", vec!["1M", "1048576"]),
        ("PAGEWISE_CACHE", vec!["64M", "67108864"]),
        ("PAGEWISE_DECAY_MS", vec!["250"]),
        ("PAGEWISE_BACKGROUND", vec!["0", "off", "false", "no"]),
        ("PAGEWISE_PRESSURE_FILE", vec![psi.as_str()]),
        ("PAGEWISE_PRESSURE_THRESHOLD", vec!["2.5", "2.50"]),
        ("PAGEWISE_VERBOSE", vec!["1", "on", "true", "yes"]),
        ("PAGEWISE_STATS", vec!["0", "off", "false", "no"]),
    ];
    for (var, values) in expect {
        let Some(at) = err.find(&format!("{var}=")) else {
            panic!("verbose output does not name {var}:\n{}", out.describe());
        };
        let rest = &err[at + var.len() + 1..];
        assert!(
            values.iter().any(|v| rest
                .to_ascii_lowercase()
                .starts_with(&v.to_ascii_lowercase())),
            "verbose output shows {var} with a value other than {values:?}: {:?}\n{}",
            rest.split_whitespace().next(),
            out.describe()
        );
    }
    let invalid = err.lines().filter(|l| l.contains("not valid")).count();
    assert_eq!(invalid, 0, "no variable was invalid:\n{}", out.describe());
}
