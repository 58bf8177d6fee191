//! Out of memory: in a child process with a low RLIMIT_AS, large allocations return null,
//! `Vec::try_reserve` gets `Err`, a failed realloc leaves the block intact, and the program
//! reports it and keeps working (allocates something smaller). Exit status 0; nothing aborts.
//! One child per release policy (the global allocator reads `PAGEWISE_RELEASE` once).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

use common::*;
use pagewise::{PageAlloc, Prefetch, Release};

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

const TEST: &str = "large_allocations_fail_cleanly_under_rlimit_as";
const HEADROOM: u64 = 512 * MIB as u64;

fn vm_size() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmSize value");
    kb * 1024
}

/// The common start of both children: names the configuration in force, uses the allocator once
/// before the limit (env parse, background thread), then lowers `RLIMIT_AS`.
fn limited_child() -> String {
    let c = GLOBAL.config();
    let what = format!(
        "release={} prefetch={}",
        c.get_release().name(),
        c.get_prefetch().name()
    );
    drop(vec![1u8; 4 * MIB]);
    limit_address_space(&what);
    what
}

fn child_main() {
    let what = limited_child();

    // 1. Plain and zeroed large allocations beyond the limit return null, and a refused
    //    mapping is no cache miss (issue #10: it used to count as one).
    let before = GLOBAL.stats();
    for align in [8usize, 4096, 2 * MIB] {
        let l = Layout::from_size_align(2 * GIB, align).unwrap();
        // SAFETY: non-zero size; null is the expected result, anything else is freed.
        let (p, z) = unsafe { (GLOBAL.alloc(l), GLOBAL.alloc_zeroed(l)) };
        if !p.is_null() {
            // SAFETY: p was allocated with l.
            unsafe { GLOBAL.dealloc(p, l) };
        }
        if !z.is_null() {
            // SAFETY: z was allocated with l.
            unsafe { GLOBAL.dealloc(z, l) };
        }
        assert!(
            p.is_null(),
            "{what}: alloc(2 GiB, align {align}) under a 512 MiB headroom limit succeeded"
        );
        assert!(
            z.is_null(),
            "{what}: alloc_zeroed(2 GiB, align {align}) succeeded"
        );
    }
    let after = GLOBAL.stats();
    assert_eq!(
        (after.cache_misses, after.large_allocs),
        (before.cache_misses, before.large_allocs),
        "{what}: a refused allocation counts as neither a miss nor an allocation: {after}"
    );
    println!("{what}: alloc/alloc_zeroed of 2 GiB returned null");

    // 2. try_reserve reports the failure.
    let mut v: Vec<u8> = Vec::new();
    let e = v
        .try_reserve(2 * GIB)
        .expect_err("try_reserve(2 GiB) should fail");
    println!("{what}: try_reserve(2 GiB) -> Err({e})");
    v.try_reserve_exact(GIB + 1)
        .expect_err("try_reserve_exact(1 GiB) should fail");

    // 3. A failed realloc leaves the old block valid and unchanged.
    let l = Layout::from_size_align(8 * MIB, 4096).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { GLOBAL.alloc(l) };
    assert!(!p.is_null(), "{what}: 8 MiB under the limit should succeed");
    // SAFETY: p is a live 8 MiB block.
    let s = unsafe { std::slice::from_raw_parts_mut(p, 8 * MIB) };
    fill_pattern(s, 77);
    let copied = GLOBAL.stats().copied_reallocs;
    // SAFETY: p is live with layout l.
    let q = unsafe { GLOBAL.realloc(p, l, 2 * GIB) };
    assert!(q.is_null(), "{what}: realloc to 2 GiB should fail");
    assert_eq!(
        GLOBAL.stats().copied_reallocs,
        copied,
        "{what}: a failed realloc copied nothing and must not count as copied"
    );
    assert_eq!(
        check_pattern(s, 77),
        None,
        "{what}: a failed realloc must leave the block intact"
    );
    // SAFETY: p is still live with layout l (realloc failed).
    unsafe { GLOBAL.dealloc(p, l) };
    println!("{what}: failed realloc kept the block");

    // 4. Grow a Vec with try_reserve until it fails: no abort, and we learn how far it got.
    let mut grown: Vec<u64> = Vec::new();
    let mut cap = MIB / 8;
    while grown.try_reserve_exact(cap - grown.len()).is_ok() {
        grown.resize(cap, 0x5A);
        cap *= 2;
    }
    println!(
        "{what}: a Vec grew to {:.0} MiB before try_reserve failed",
        mib((grown.capacity() * 8) as u64)
    );
    drop(grown);

    // 5. Keeps working afterwards.
    let v = vec![3u8; 64 * MIB];
    assert_eq!(first_not(&v, 3), None);
    drop(v);
    let small: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(small[999], "999");
    println!("OOM-RECOVERED {what}");
}

/// Sets RLIMIT_AS to the current address space plus HEADROOM.
fn limit_address_space(what: &str) {
    let limit = vm_size() + HEADROOM;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: rl is a valid rlimit; lowering our own soft limit is always allowed.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    println!("{what}: RLIMIT_AS = {:.0} MiB", mib(limit));
}

/// Freed (cached) address space must not make a later allocation fail: free 3 × 96 MiB, then
/// ask for 300 MiB with 512 MiB of headroom. Fits if the cache is reused or released (and the
/// mmap retried) when the kernel says ENOMEM.
fn cache_child_main() {
    let what = limited_child();
    let bl = Layout::from_size_align(96 * MIB, 4096).unwrap();
    let big = Layout::from_size_align(300 * MIB, 4096).unwrap();
    // SAFETY: sizes are non-zero; each block is freed with its layout.
    let got = unsafe {
        let bs: Vec<*mut u8> = (0..3).map(|_| GLOBAL.alloc(bl)).collect();
        assert!(
            bs.iter().all(|b| !b.is_null()),
            "{what}: 3 x 96 MiB must fit"
        );
        for &b in &bs {
            touch_pages(b, 96 * MIB, 1);
            GLOBAL.dealloc(b, bl);
        }
        let p = GLOBAL.alloc(big);
        let ok = !p.is_null();
        if ok {
            touch_pages(p, 300 * MIB, 2);
            GLOBAL.dealloc(p, big);
        }
        ok
    };
    let s = GLOBAL.stats();
    println!(
        "{what}: after freeing 3 x 96 MiB, a 300 MiB alloc {}; cached_bytes {:.0} MiB, \
         munmap_calls {}",
        if got { "succeeded" } else { "FAILED" },
        mib(s.cached_bytes),
        s.munmap_calls
    );
    assert!(
        got,
        "{what}: 300 MiB should fit in the 512 MiB headroom once the freed 288 MiB is \
         released; the allocator kept freed address space in its cache and returned null \
         instead of releasing it and retrying. {s:?}"
    );
    println!("CACHE-OK {what}");
}

/// Runs `test` in a child for every release policy × {none, populate+hugepage}; collects
/// failures so one report shows them all.
fn every_policy(test: &str, mode: &str, ok_marker: &str) {
    let mut failures = Vec::new();
    for r in Release::ALL {
        for p in [Prefetch::None, Prefetch::PopulateHugePage] {
            let out = run_child(
                test,
                mode,
                &[
                    ("PAGEWISE_RELEASE", Some(r.name())),
                    ("PAGEWISE_PREFETCH", Some(p.name())),
                ],
                Duration::from_secs(120),
            );
            println!("{}", out.stdout.trim_end());
            if !(out.status.success() && out.stdout.contains(ok_marker)) {
                failures.push(format!(
                    "release={} prefetch={}: child failed\n{}",
                    r.name(),
                    p.name(),
                    out.describe()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 10 children failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

const CACHE_TEST: &str = "freed_address_space_is_not_lost_under_rlimit_as";

#[test]
fn freed_address_space_is_not_lost_under_rlimit_as() {
    match child_mode().as_deref() {
        Some("oom-cache") => return cache_child_main(),
        Some(_) => return,
        None => {}
    }
    every_policy(CACHE_TEST, "oom-cache", "CACHE-OK");
}

#[test]
fn large_allocations_fail_cleanly_under_rlimit_as() {
    match child_mode().as_deref() {
        Some("oom") => return child_main(),
        Some(_) => return,
        None => {}
    }
    every_policy(TEST, "oom", "OOM-RECOVERED");
}
