//! The whole test harness runs on pagewise as `#[global_allocator]`: collections grow across the
//! threshold, big zeroed vectors, threads; the global stats must show that the large path was
//! really used.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use pagewise::{PageAlloc, Release};

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

/// The counters are process-wide: tests that assert on deltas run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn threshold() -> usize {
    GLOBAL.config().get_threshold()
}

#[test]
fn vec_growth_to_300mib_uses_mremap() {
    let _g = serial();
    // Ranges cached by earlier tests could serve every growth step in place, with no mremap.
    GLOBAL.purge();
    let s0 = GLOBAL.stats();
    let mut v: Vec<u64> = Vec::with_capacity(MIB / 8);
    let mut target = MIB / 8;
    let last = 300 * MIB / 8;
    loop {
        // Grow to `target` words; the earlier words must survive every reallocation.
        let n = v.len();
        v.reserve_exact(target - n);
        for (i, w) in v[..n].iter().enumerate() {
            if *w != pattern_word(7, i) {
                panic!(
                    "Vec<u64> growth lost word {i} of {n} (capacity {})",
                    v.capacity()
                );
            }
        }
        v.extend((n..target).map(|i| pattern_word(7, i)));
        if target == last {
            break;
        }
        target = (target * 2).min(last);
    }
    let s1 = GLOBAL.stats();
    println!("after growing a Vec to 300 MiB: {s1:?}");
    assert!(
        s1.large_allocs > s0.large_allocs,
        "large_allocs: {s0:?} -> {s1:?}"
    );
    assert!(s1.reallocs > s0.reallocs, "reallocs: {s0:?} -> {s1:?}");
    assert!(
        s1.mremaps > s0.mremaps,
        "growing a Vec from 1 MiB to 300 MiB should mremap at least once: {s0:?} -> {s1:?}"
    );
    assert!(
        s1.live_bytes >= s0.live_bytes + 300 * MIB as u64,
        "live_bytes should include the 300 MiB vector: {s0:?} -> {s1:?}"
    );
    // Shrink it back below the threshold: content kept, the large block is freed.
    v.truncate(1000);
    v.shrink_to_fit();
    for (i, w) in v.iter().enumerate() {
        assert_eq!(*w, pattern_word(7, i), "shrink_to_fit lost word {i}");
    }
    drop(v);
    let s2 = GLOBAL.stats();
    assert!(
        s2.large_frees > s1.large_frees,
        "large_frees: {s1:?} -> {s2:?}"
    );
    assert!(
        s2.live_bytes + 300 * MIB as u64 <= s1.live_bytes + MIB as u64,
        "live_bytes should fall by the 300 MiB: {s1:?} -> {s2:?}"
    );
}

#[test]
fn big_zeroed_vecs_are_zero_even_when_recycled() {
    let _g = serial();
    let s0 = GLOBAL.stats();
    for round in 0..6 {
        for &n in &[threshold(), 4 * MIB, 64 * MIB + 123, 200 * MIB] {
            let v = vec![0u8; n];
            if let Some(i) = first_not(&v, 0) {
                panic!("round {round}: vec![0u8; {n}] has byte {i} = {:#x}", v[i]);
            }
            // Dirty the same size for the next round (it may come back from the cache).
            let mut d = vec![1u8; n];
            d.iter_mut().step_by(PAGE).for_each(|b| *b = 0xAB);
            assert_eq!(d[n - 1], 1);
            drop(d);
        }
    }
    let s1 = GLOBAL.stats();
    println!("zeroed rounds: {s1:?}");
    assert!(s1.large_allocs >= s0.large_allocs + 48, "{s0:?} -> {s1:?}");
    if GLOBAL.config().get_release() == Release::Retain {
        assert!(
            s1.cache_hits > s0.cache_hits,
            "repeated same-size allocations under retain should hit the cache: {s0:?} -> {s1:?}"
        );
    }
}

#[test]
fn hashmap_and_string_grow_across_threshold() {
    let _g = serial();
    let s0 = GLOBAL.stats();
    let mut m: HashMap<u64, u64> = HashMap::new();
    for k in 0..1_000_000u64 {
        m.insert(k, k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    for k in 0..1_000_000u64 {
        assert_eq!(
            m.get(&k),
            Some(&k.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            "HashMap lost key {k}"
        );
    }
    let mut s = String::new();
    let mut i = 0u64;
    while s.len() < 64 * MIB {
        s.push_str(&format!("{i:016x};"));
        i += 1;
    }
    for (k, chunk) in s.as_bytes().chunks(17).enumerate() {
        assert_eq!(
            chunk,
            format!("{k:016x};").as_bytes(),
            "String growth lost record {k}"
        );
    }
    m.shrink_to_fit();
    s.truncate(10);
    s.shrink_to_fit();
    assert_eq!(s, "0000000000000000;"[..10]);
    drop(m);
    let s1 = GLOBAL.stats();
    assert!(s1.large_allocs > s0.large_allocs, "{s0:?} -> {s1:?}");
    assert!(s1.reallocs > s0.reallocs, "{s0:?} -> {s1:?}");
}

#[test]
fn threads_allocate_large_concurrently() {
    let _g = serial();
    let s0 = GLOBAL.stats();
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = XorShift::new(100 + t);
                let mut keep: Vec<(u64, Vec<u64>)> = Vec::new();
                for i in 0..60u64 {
                    let id = t << 32 | i;
                    let words = rng.range(1, 512 * KIB as u64) as usize;
                    let v: Vec<u64> = (0..words).map(|w| pattern_word(id, w)).collect();
                    keep.push((id, v));
                    if keep.len() > 6 {
                        let k = rng.range(0, keep.len() as u64 - 1) as usize;
                        let (kid, mut v) = keep.swap_remove(k);
                        for (w, x) in v.iter().enumerate() {
                            assert_eq!(*x, pattern_word(kid, w), "thread {t}: word {w} lost");
                        }
                        // Resize up or down before dropping.
                        let new = rng.range(1, 512 * KIB as u64) as usize;
                        let old = v.len();
                        v.resize(new, 0);
                        v.shrink_to_fit();
                        for (w, x) in v.iter().take(old.min(new)).enumerate() {
                            assert_eq!(*x, pattern_word(kid, w), "thread {t}: resize lost {w}");
                        }
                    }
                }
                keep.len()
            })
        })
        .collect();
    for h in handles {
        h.join().expect("allocating thread panicked");
    }
    let s1 = GLOBAL.stats();
    println!("after 4 threads: {s1:?}");
    assert!(s1.large_allocs >= s0.large_allocs + 100, "{s0:?} -> {s1:?}");
    assert!(s1.large_frees >= s0.large_frees + 100, "{s0:?} -> {s1:?}");
}

#[test]
fn threshold_boundary_global() {
    let _g = serial();
    let t = threshold();
    let s0 = GLOBAL.stats();
    // black_box: an allocation that is never used may be elided by the compiler altogether.
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(t - 1));
    let s1 = GLOBAL.stats();
    // Other threads of the harness may allocate small things, never large ones.
    assert_eq!(
        s1.large_allocs, s0.large_allocs,
        "threshold-1 bytes must go to the inner allocator: {s0:?} -> {s1:?}"
    );
    let w: Vec<u8> = std::hint::black_box(Vec::with_capacity(t));
    let s2 = GLOBAL.stats();
    assert_eq!(
        s2.large_allocs,
        s1.large_allocs + 1,
        "threshold bytes must be large: {s1:?} -> {s2:?}"
    );
    drop((v, w));
}

#[test]
fn effective_config_and_purge() {
    let _g = serial();
    let c = GLOBAL.config();
    assert!(
        c.get_threshold() >= 4096,
        "threshold: {}",
        c.get_threshold()
    );
    // A 64 MiB block freed under a caching policy, then purge: nothing stays cached.
    drop(vec![5u8; 64 * MIB]);
    GLOBAL.purge();
    let s = GLOBAL.stats();
    assert_eq!(s.cached_bytes, 0, "purge should empty the cache: {s:?}");
    let m = pagewise::ProcessMemory::read().expect("ProcessMemory::read");
    assert!(m.rss_bytes > 0, "ProcessMemory rss_bytes: {}", m.rss_bytes);
    assert!(
        m.minor_faults > 0,
        "ProcessMemory minor_faults: {}",
        m.minor_faults
    );
}

const REPORT_TEST: &str = "verbose_and_stats_at_exit_on_the_global_allocator";

#[test]
fn verbose_and_stats_at_exit_on_the_global_allocator() {
    match child_mode().as_deref() {
        Some("report") => {
            let v = vec![1u8; 4 * MIB];
            assert_eq!(first_not(&v, 1), None);
            drop(v);
            println!("CHILD-OK");
            return;
        }
        Some(_) => return,
        None => {}
    }
    let out = run_child(
        REPORT_TEST,
        "report",
        &[
            ("PAGEWISE_VERBOSE", Some("1")),
            ("PAGEWISE_STATS", Some("yes")),
            ("PAGEWISE_RELEASE", Some("dontneed")),
        ],
        std::time::Duration::from_secs(60),
    );
    assert!(
        out.status.success() && out.stdout.contains("CHILD-OK"),
        "child failed\n{}",
        out.describe()
    );
    for var in [
        "PAGEWISE_RELEASE=dontneed",
        "PAGEWISE_PREFETCH=",
        "PAGEWISE_THRESHOLD=",
        "PAGEWISE_CACHE=",
        "PAGEWISE_DECAY_MS=",
        "PAGEWISE_BACKGROUND=",
        "PAGEWISE_PRESSURE_FILE=",
        "PAGEWISE_PRESSURE_THRESHOLD=",
        "PAGEWISE_VERBOSE=",
        "PAGEWISE_STATS=",
    ] {
        assert!(
            out.stderr.contains(var),
            "verbose output should contain {var}\n{}",
            out.describe()
        );
    }
    // Stats at exit: the counters, with at least one large allocation (the 4 MiB vector).
    let stats_line = out
        .stderr
        .lines()
        .find(|l| l.contains("large_allocs="))
        .unwrap_or_else(|| panic!("no stats at exit on stderr\n{}", out.describe()));
    let large: u64 = stats_line
        .split("large_allocs=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("large_allocs value");
    assert!(large >= 1, "stats at exit: {stats_line}");
}
