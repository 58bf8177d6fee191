//! The soft limit is a property of the process (issue #19): the global allocator and two
//! per-collection instances (`allocator-api2`) watch one fake cgroup, each with 128 MiB cached,
//! when the cgroup's limit drops under the process's usage. The oldest cached ranges go first,
//! across allocators (not in the order the allocators were made), until usage is under the soft
//! limit, and each allocator's `limit_releases` counts its own.
//!
//! The global allocator of this binary is pagewise. A fake kernel thread keeps the fake
//! `memory.current` at this process's RSS, as the kernel would; the child process configures
//! every allocator from the environment only.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allocator_api2::vec::Vec as AVec;
use common::*;
use pagewise::{PageAlloc, ProcessMemory, Stats};

#[global_allocator]
static GLOBAL: PageAlloc = PageAlloc::new();

const BLOCK: usize = 64 * MIB;

fn rss() -> u64 {
    ProcessMemory::read().map_or(0, |m| m.rss_bytes)
}

fn put(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// Two blocks of 64 MiB, written, both live, then freed: 128 MiB cached by `a`.
fn cache_two(a: &PageAlloc) {
    let mut x: AVec<u8, &PageAlloc> = AVec::with_capacity_in(BLOCK, a);
    let mut y: AVec<u8, &PageAlloc> = AVec::with_capacity_in(BLOCK, a);
    x.resize(BLOCK, 1);
    y.resize(BLOCK, 2);
}

/// The same through the global allocator.
fn cache_two_global() {
    let x = vec![1u8; BLOCK];
    let y = vec![2u8; BLOCK];
    drop((x, y));
}

fn held(s: &Stats) -> u64 {
    s.cached_resident_bytes + s.cached_lazy_bytes
}

fn over_the_limit_at_once(dir: &Path) {
    let (a, b) = (PageAlloc::new(), PageAlloc::new());
    // Engines are adopted in this order (the global allocator's first, at the first allocation
    // of the process), and the background thread visits them in it; the ranges are cached in
    // another order, so that oldest first across engines is not the order of the engines: b's
    // first, then the global allocator's, then a's.
    let _ = (a.stats(), b.stats());
    cache_two(&b);
    std::thread::sleep(Duration::from_millis(20));
    cache_two_global();
    std::thread::sleep(Duration::from_millis(20));
    cache_two(&a);
    let all = || [GLOBAL.stats(), a.stats(), b.stats()];
    for s in all() {
        assert_eq!(held(&s), 2 * BLOCK as u64, "{s}");
        assert_eq!(s.limit_bytes, 0, "{s}");
    }
    // The fake kernel: memory.current follows RSS.
    let stop = Arc::new(AtomicBool::new(false));
    let kernel = {
        let (dir, stop) = (dir.to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                put(&dir, "memory.current", &format!("{}\n", rss()));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    // The limit drops so that the soft limit (90%) is 150 MiB under usage: three 64 MiB ranges
    // must go, the oldest: both of b's and the global allocator's first.
    let soft = rss() - 150 * MIB as u64;
    let max = soft * 10 / 9 + 1;
    let soft = max * 9 / 10;
    put(dir, "memory.max", &format!("{max}\n"));
    let start = Instant::now();
    let released = wait_until(Duration::from_secs(2), || {
        all().iter().map(held).sum::<u64>() <= 3 * BLOCK as u64
    });
    let took = start.elapsed();
    // Nothing more goes once usage is under the soft limit.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    kernel.join().unwrap();
    let [g, sa, sb] = all();
    println!("released within {took:?}\n global: {g}\n a: {sa}\n b: {sb}");
    assert!(released, "not released: global {g}\n a {sa}\n b {sb}");
    for s in [&g, &sa, &sb] {
        assert_eq!(
            s.limit_bytes, soft,
            "every allocator sees the process's limit: {s}"
        );
    }
    assert_eq!((sb.limit_releases, held(&sb)), (2, 0), "b: {sb}");
    assert_eq!(
        (g.limit_releases, held(&g)),
        (1, BLOCK as u64),
        "global: {g}"
    );
    assert_eq!(
        (sa.limit_releases, held(&sa)),
        (0, 2 * BLOCK as u64),
        "a: {sa}"
    );
}

#[test]
fn two_instances_and_the_global_allocator_over_the_limit_at_once() {
    if child_mode().as_deref() == Some("process") {
        let dir = PathBuf::from(std::env::var("PAGEWISE_CGROUP").unwrap());
        return over_the_limit_at_once(&dir);
    }
    if child_mode().is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pagewise-cg-{}-process", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    put(&dir, "cgroup.controllers", "cpu memory pids\n");
    put(&dir, "memory.max", "max\n");
    put(&dir, "memory.high", "max\n");
    put(&dir, "memory.current", "0\n");
    let env = [
        ("PAGEWISE_CGROUP", Some(dir.to_str().unwrap())),
        ("PAGEWISE_RELEASE", Some("retain")),
        ("PAGEWISE_DECAY_MS", Some("never")),
        ("PAGEWISE_PREFETCH", Some("none")),
    ];
    let out = run_child(
        "two_instances_and_the_global_allocator_over_the_limit_at_once",
        "process",
        &env,
        Duration::from_secs(60),
    );
    println!("{}", out.stdout);
    assert!(out.status.success(), "{}", out.describe());
    std::fs::remove_dir_all(&dir).unwrap();
}
