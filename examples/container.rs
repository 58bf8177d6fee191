//! Run with: cargo run --release --example container
//!
//! What the soft limit does in a container (issue #13), with a fake cgroup v2 directory this
//! program writes itself (no real cgroup is created or changed): `memory.max` is 1 GiB, and
//! `memory.current` is kept at this process's RSS plus what a simulated neighbour in the same
//! container uses, rewritten every millisecond by a helper thread, as the kernel would.
//!
//! The program caches 512 MiB of freed buffers (`retain`, decay off, so only the limit can give
//! them back), then the neighbour grows by 500 MiB: usage crosses the soft limit (the default,
//! 90% of the cgroup's limit). It prints RSS over time, then repeats the crossing 10 times and
//! prints the median time from the crossing to the cache being given back; then the same with
//! `Cgroup::None`, where nothing reacts.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// The fake kernel: keeps `memory.current` at RSS + the neighbour's bytes.
fn kernel(dir: PathBuf, neighbour: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let usage = rss() + neighbour.load(Ordering::Relaxed);
        put(&dir, "memory.current", &format!("{usage}\n"));
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

/// One crossing: cache 512 MiB, grow the neighbour, and time until the cache is given back
/// (`None` if it is not within a second). Prints RSS over time if `trace`.
fn crossing(a: &PageAlloc, neighbour: &AtomicU64, trace: bool) -> Option<Duration> {
    neighbour.store(0, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(30));
    fill_cache(a);
    let cached = a.stats().cached_bytes;
    let start = Instant::now();
    neighbour.store(500 * MIB, Ordering::Relaxed);
    let mut released = None;
    let mut next_print = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(1) {
        let t = start.elapsed();
        if released.is_none() && a.stats().cached_bytes < cached {
            released = Some(t);
        }
        if trace && t >= next_print && t < Duration::from_millis(200) {
            println!(
                "  t={:>4} ms  RSS {:>5} MiB  cached {:>4} MiB",
                t.as_millis(),
                rss() / MIB,
                a.stats().cached_bytes / MIB
            );
            next_print += Duration::from_millis(20);
        }
        if released.is_some() && (!trace || t >= Duration::from_millis(200)) {
            break;
        }
        if trace && released.is_none() && t >= Duration::from_millis(200) {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    a.purge();
    released
}

fn main() {
    let dir = std::env::temp_dir().join(format!("pagewise-container-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the fake cgroup");
    put(&dir, "cgroup.controllers", "cpu memory pids\n");
    put(&dir, "memory.max", &format!("{GIB}\n"));
    put(&dir, "memory.high", "max\n");
    put(&dir, "memory.current", "0\n");
    let neighbour = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let k = {
        let (dir, neighbour, stop) = (dir.clone(), neighbour.clone(), stop.clone());
        std::thread::spawn(move || kernel(dir, neighbour, stop))
    };
    let path: &'static std::ffi::CStr = Box::leak(
        CString::new(dir.to_str().unwrap())
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

    println!(
        "fake cgroup {}: memory.max 1 GiB, soft limit 90% = {} MiB",
        dir.display(),
        GIB * 9 / 10 / MIB
    );
    println!("watching the cgroup: 512 MiB cached, then the neighbour grows by 500 MiB at t=0");
    crossing(&watching, &neighbour, true);
    let s = watching.stats();
    println!(
        "  limit_bytes {} MiB, limit_releases {}",
        s.limit_bytes / MIB,
        s.limit_releases
    );

    let mut times: Vec<f64> = (0..10)
        .filter_map(|_| crossing(&watching, &neighbour, false))
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "reaction over 10 crossings: median {median:.1} ms, min {:.1}, max {:.1} ({} of 10 released within 1 s)",
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
        times.len()
    );

    println!("not watching (Cgroup::None): the same crossing");
    let r = crossing(&blind, &neighbour, true);
    println!(
        "  released: {}",
        r.map_or("no, RSS stays".to_string(), |d| format!("{d:?}"))
    );

    stop.store(true, Ordering::Relaxed);
    k.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
