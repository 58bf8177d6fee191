//! Run with: cargo run --release --example release_engine [-- --quick]
//!
//! Measures the release engine on this machine: RSS before and after decay (retain and free),
//! the time from a pressure signal to the release, and the CPU the background thread costs while
//! the program is idle. The pressure signal is a PSI-format file this program writes itself, so
//! no real memory pressure is needed.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::CString;
use std::time::{Duration, Instant};

use pagewise::{Config, PageAlloc, Prefetch, ProcessMemory, Release};

const MIB: u64 = 1 << 20;
const CALM: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
const BUSY: &str = "some avg10=80.00 avg60=40.00 avg300=10.00 total=99999999\nfull avg10=20.00 avg60=10.00 avg300=1.00 total=999999\n";

fn rss() -> ProcessMemory {
    ProcessMemory::read().expect("smaps_rollup")
}

/// CPU time (user + system) this process has used so far.
fn cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Allocates, writes and frees `n` buffers of `size` bytes.
fn burst(a: &PageAlloc, size: usize, n: usize) {
    let layout = Layout::from_size_align(size, 4096).unwrap();
    let blocks: Vec<*mut u8> = (0..n)
        .map(|i| {
            // SAFETY: layout has a non-zero size.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: p is a live block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, i as u8 + 1, size) };
            p
        })
        .collect();
    for p in blocks {
        // SAFETY: p came from `a` with this layout.
        unsafe { a.dealloc(p, layout) };
    }
}

/// Polls RSS until it is within 32 MiB of `target` or `limit` passes; returns the time taken.
fn wait_for_rss(target: u64, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if rss().rss_bytes < target + 32 * MIB {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (size, n) = if quick { (64 << 20, 2) } else { (256 << 20, 4) };
    let dir = std::env::temp_dir().join(format!("pagewise-psi-{}", std::process::id()));
    std::fs::write(&dir, CALM).unwrap();
    let path: &'static std::ffi::CStr = Box::leak(
        CString::new(dir.to_str().unwrap())
            .unwrap()
            .into_boxed_c_str(),
    );
    println!(
        "burst: {n} buffers of {} MiB, written and freed",
        size >> 20
    );

    for (release, decay_ms) in [(Release::Retain, 500u64), (Release::Free, 500)] {
        let a = PageAlloc::new().with_config(
            Config::DEFAULT
                .ignore_env()
                .release(release)
                .prefetch(Prefetch::None)
                .decay_ms(Some(decay_ms))
                .pressure_file(path),
        );
        let before = rss();
        burst(&a, size, n);
        let after_free = rss();
        let released = wait_for_rss(before.rss_bytes, Duration::from_secs(5));
        let after = rss();
        println!(
            "decay {decay_ms} ms, {:>6}: RSS before {:>6.1} MiB, after free {:>6.1} MiB (LazyFree {:>6.1}), back to {:>6.1} MiB after {} (stats: decay_releases={})",
            release.name(),
            before.rss_bytes as f64 / MIB as f64,
            after_free.rss_bytes as f64 / MIB as f64,
            after_free.lazy_free_bytes as f64 / MIB as f64,
            after.rss_bytes as f64 / MIB as f64,
            released.map_or("never (5 s limit)".to_string(), |d| format!("{} ms", d.as_millis())),
            a.stats().decay_releases,
        );
    }

    // Pressure: cache a burst with decay off, then turn the signal on and time the release.
    let a = PageAlloc::new().with_config(
        Config::DEFAULT
            .ignore_env()
            .release(Release::Adaptive)
            .prefetch(Prefetch::None)
            .decay_ms(None)
            .pressure_file(path),
    );
    let before = rss();
    burst(&a, size, n);
    let calm = rss();
    std::fs::write(&dir, BUSY).unwrap();
    let t = wait_for_rss(before.rss_bytes, Duration::from_secs(5));
    println!(
        "adaptive, decay never: after free RSS {:.1} MiB (LazyFree {:.1}); pressure file set busy -> RSS back to {:.1} MiB in {} (stats: pressure_releases={})",
        calm.rss_bytes as f64 / MIB as f64,
        calm.lazy_free_bytes as f64 / MIB as f64,
        rss().rss_bytes as f64 / MIB as f64,
        t.map_or("never (5 s limit)".to_string(), |d| format!("{} ms", d.as_millis())),
        a.stats().pressure_releases,
    );
    std::fs::write(&dir, CALM).unwrap();

    // Background thread CPU while idle: one cached range kept (decay never), nothing else runs.
    let idle = if quick { 2 } else { 10 };
    burst(&a, 4 << 20, 1);
    let c0 = cpu();
    std::thread::sleep(Duration::from_secs(idle));
    let used = cpu() - c0;
    println!(
        "background thread, idle {idle} s with a cached range: {:.2} ms CPU ({:.4}% of one core)",
        used.as_secs_f64() * 1e3,
        used.as_secs_f64() * 100.0 / idle as f64
    );
    std::fs::remove_file(&dir).ok();
}
