//! Run with: cargo run --release --example container
//!
//! What the soft limit does in a container (issues #13 and #19), with a fake cgroup v2 tree this
//! program writes itself (no real cgroup is created or changed): a `pod` directory holding a
//! `container` directory, which the allocator watches (`Cgroup::Path`). A helper thread rewrites
//! both `memory.current` files every millisecond, as the kernel would: the container's is this
//! process's RSS plus what a simulated neighbour in the same container uses; the pod's adds what
//! a sibling container uses.
//!
//! Each round caches 512 MiB of freed buffers (`retain`, decay off, so only the limit can give
//! them back), waits a random 0–50 ms (so that the change does not fall at the same point of the
//! background thread's cycle every time), makes one change, and times until the cache is given
//! back. Ten rounds each, and the median, for three cases:
//!
//! 1. **limit present at start**: the container's `memory.max` is 1 GiB; the neighbour grows by
//!    500 MiB and usage crosses the soft limit (90% of the limit, the default).
//! 2. **limit appearing later**: no limit anywhere; `memory.max` of 512 MiB is written while
//!    512 MiB are cached (`docker update --memory`, a pod resized in place).
//! 3. **limit on the parent only**: the pod's `memory.max` is 1 GiB, the container has none; the
//!    sibling grows by 500 MiB and the pod's usage crosses 90% of the pod's limit.
//!
//! Then case 1 with `Cgroup::None` (and no other allocator watching), where nothing reacts.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pagewise::{Cgroup, Config, Limit, PageAlloc, Prefetch, ProcessMemory, Release};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const BUFFER: usize = 64 << 20;

fn rss() -> u64 {
    ProcessMemory::read().map_or(0, |m| m.rss_bytes)
}

fn put(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join(format!(".{file}.new"));
    std::fs::write(&tmp, text).expect("write fake cgroup file");
    std::fs::rename(&tmp, dir.join(file)).expect("rename fake cgroup file");
}

/// What the simulated others use: a neighbour in the container, a sibling container in the pod.
#[derive(Default)]
struct Others {
    neighbour: AtomicU64,
    sibling: AtomicU64,
}

/// The fake kernel: keeps the container's `memory.current` at RSS + the neighbour, the pod's at
/// that + the sibling.
fn kernel(pod: PathBuf, container: PathBuf, others: Arc<Others>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mine = rss() + others.neighbour.load(Ordering::Relaxed);
        put(&container, "memory.current", &format!("{mine}\n"));
        let pods = mine + others.sibling.load(Ordering::Relaxed);
        put(&pod, "memory.current", &format!("{pods}\n"));
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Allocates and writes 8 × 64 MiB, then frees them: 512 MiB cached.
fn fill_cache(a: &PageAlloc) {
    let l = Layout::from_size_align(BUFFER, 8).unwrap();
    let bufs: Vec<*mut u8> = (0..8)
        .map(|_| {
            // SAFETY: non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            // SAFETY: p holds BUFFER bytes.
            unsafe { std::ptr::write_bytes(p, 1, BUFFER) };
            p
        })
        .collect();
    for p in bufs {
        // SAFETY: p is live with layout l.
        unsafe { a.dealloc(p, l) };
    }
}

/// A few random milliseconds (0–49) from the clock, for the phase of each change.
fn jitter_ms(round: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = nanos ^ (round + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    (x >> 29) % 50
}

/// One case: its setup (limits, before the cache is filled), the change, and how to undo both.
struct Case<'a> {
    name: &'a str,
    setup: &'a dyn Fn(),
    change: &'a dyn Fn(),
}

/// One round: set up, cache 512 MiB, wait a random phase, change, and time until the cache is
/// given back (`None` if it is not within a second). Prints RSS over time if `trace`.
fn round(a: &PageAlloc, case: &Case, n: u64, trace: bool) -> Option<Duration> {
    (case.setup)();
    std::thread::sleep(Duration::from_millis(40));
    fill_cache(a);
    let cached = a.stats().cached_bytes;
    std::thread::sleep(Duration::from_millis(jitter_ms(n)));
    (case.change)();
    let start = Instant::now();
    let mut released = None;
    let mut next_print = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(1) {
        let t = start.elapsed();
        if released.is_none() && a.stats().cached_bytes < cached {
            released = Some(t);
        }
        if trace && t >= next_print && t < Duration::from_millis(200) {
            println!(
                "  t={:>4} ms  RSS {:>5} MiB  cached {:>4} MiB  soft limit {:>4} MiB",
                t.as_millis(),
                rss() / MIB,
                a.stats().cached_bytes / MIB,
                a.stats().limit_bytes / MIB
            );
            next_print += Duration::from_millis(20);
        }
        let done = if trace {
            t >= Duration::from_millis(200)
        } else {
            released.is_some()
        };
        if done {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    a.purge();
    released
}

/// Ten rounds of `case`: prints the median, min and max reaction.
fn measure(a: &PageAlloc, case: &Case) {
    let mut times: Vec<f64> = (0..10)
        .filter_map(|n| round(a, case, n, false))
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{}: reaction over 10 rounds: median {median:.1} ms, min {:.1}, max {:.1} ({} of 10 \
         released within 1 s)",
        case.name,
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
        times.len()
    );
}

fn main() {
    let pod = std::env::temp_dir().join(format!("pagewise-container-{}", std::process::id()));
    let container = pod.join("container");
    std::fs::create_dir_all(&container).expect("create the fake cgroup");
    for d in [&pod, &container] {
        put(d, "cgroup.controllers", "cpu memory pids\n");
        put(d, "memory.max", "max\n");
        put(d, "memory.high", "max\n");
        put(d, "memory.current", "0\n");
    }
    let others = Arc::new(Others::default());
    let stop = Arc::new(AtomicBool::new(false));
    let k = {
        let (p, c, o, s) = (pod.clone(), container.clone(), others.clone(), stop.clone());
        std::thread::spawn(move || kernel(p, c, o, s))
    };
    let path: &'static std::ffi::CStr = Box::leak(
        CString::new(container.to_str().unwrap())
            .unwrap()
            .into_boxed_c_str(),
    );
    let config = Config::DEFAULT
        .ignore_env()
        .release(Release::Retain)
        .prefetch(Prefetch::HugePage)
        .decay_ms(None)
        .limit(Limit::Percent(90));
    let watching = PageAlloc::new().with_config(config.cgroup(Cgroup::Path(path)));
    let blind = PageAlloc::new().with_config(config.cgroup(Cgroup::None));

    let reset = || {
        others.neighbour.store(0, Ordering::Relaxed);
        others.sibling.store(0, Ordering::Relaxed);
        put(&pod, "memory.max", "max\n");
        put(&container, "memory.max", "max\n");
    };
    let at_start = Case {
        name: "1. limit present at start (container memory.max 1 GiB, neighbour +500 MiB)",
        setup: &|| {
            reset();
            put(&container, "memory.max", &format!("{GIB}\n"));
        },
        change: &|| others.neighbour.store(500 * MIB, Ordering::Relaxed),
    };
    let later = Case {
        name: "2. limit appearing later (container memory.max: max -> 512 MiB)",
        setup: &reset,
        change: &|| put(&container, "memory.max", &format!("{}\n", 512 * MIB)),
    };
    let parent = Case {
        name: "3. limit on the parent only (pod memory.max 1 GiB, sibling +500 MiB)",
        setup: &|| {
            reset();
            put(&pod, "memory.max", &format!("{GIB}\n"));
        },
        change: &|| others.sibling.store(500 * MIB, Ordering::Relaxed),
    };

    println!(
        "fake cgroup tree {}: the allocator watches container/; soft limit 90% of the lowest \
         limit from container/ up to the pod",
        pod.display()
    );
    for case in [&at_start, &later, &parent] {
        println!("{}: 512 MiB cached, the change at t=0", case.name);
        round(&watching, case, 100, true);
        let s = watching.stats();
        println!(
            "  limit_bytes now {} MiB, limit_releases so far {}",
            s.limit_bytes / MIB,
            s.limit_releases
        );
    }
    for case in [&at_start, &later, &parent] {
        measure(&watching, case);
    }

    // The soft limit covers every allocator of the process (issue #19): while `watching` is
    // alive, its limit would give back `blind`'s cache too. Alone, `blind` sees no limit.
    drop(watching);
    println!("not watching (Cgroup::None, the only allocator): case 1 again");
    let r = round(&blind, &at_start, 200, true);
    println!(
        "  released: {}",
        r.map_or("no, RSS stays".to_string(), |d| format!("{d:?}"))
    );

    stop.store(true, Ordering::Relaxed);
    k.join().unwrap();
    let _ = std::fs::remove_dir_all(&pod);
}
